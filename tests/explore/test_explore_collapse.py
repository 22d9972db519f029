"""The Train view's collapse policy without Qt: thresholds, the streak of low logged steps,
where the collapse began, and which methods are warned about or monitored."""
from __future__ import annotations

import pytest

from engine.explore.collapse import (COLLAPSE_LOGS, COLLAPSE_RANK, COLLAPSE_STD, CollapseWatch,
                                     shows_collapse_monitor, warns_collapse)


def live(std, rank):
    return {"collapse_std_ratio": std, "collapse_rank_ratio": rank}


def test_three_low_logs_in_a_row_start_the_collapse_at_the_first():
    assert (COLLAPSE_STD, COLLAPSE_RANK, COLLAPSE_LOGS) == (0.1, 0.05, 3)
    watch = CollapseWatch()
    readings = [watch.observe(s, live(std, rank)) for s, std, rank in
                [(10, 0.9, 0.4), (20, 0.05, 0.3), (30, 0.04, 0.3),    # low, low, then healthy: the count starts again
                 (40, 0.8, 0.3), (50, 0.5, 0.02), (60, 0.03, 0.3)]]
    assert [r.low for r in readings] == [False, True, True, False, True, True]
    assert [r.streak for r in readings] == [0, 1, 2, 0, 1, 2]
    assert not any(r.collapsed or r.starts_collapse for r in readings)
    assert watch.collapse_step is None
    third = watch.observe(70, live(0.01, 0.01))        # third low log in a row: the collapse began at step 50
    assert third.collapsed and third.starts_collapse and third.live
    assert (third.collapse_step, third.since, third.step, third.streak) == (50, 50, 70, 3)
    assert third.cause == "std" and (third.std, third.rank) == (0.01, 0.01)
    assert watch.collapse_step == 50
    later = watch.observe(80, live(0.01, 0.01))        # still collapsed, but the warning is raised once
    assert later.collapsed and not later.starts_collapse and later.collapse_step == 50


def test_one_low_evaluation_is_enough_and_reset_forgets():
    watch = CollapseWatch()
    watch.observe(10, live(0.01, 0.01))
    watch.reset()
    assert watch.collapse_step is None and watch.low_logs == 0
    healthy = watch.observe(110, {"knn": 0.5, "feature_std_ratio": 0.9, "feature_rank_ratio": 0.4})
    assert not healthy.live and not healthy.collapsed and watch.collapse_step is None
    low = watch.observe(220, {"knn": 0.1, "feature_std_ratio": 0.5, "feature_rank_ratio": 0.01})
    assert low.starts_collapse and low.collapse_step == 220
    assert low.cause == "rank"                         # the spread alone is fine


def test_a_method_that_is_not_warned_about_never_starts_a_collapse():
    watch = CollapseWatch()
    readings = [watch.observe(s, live(0.03, 0.15), warns=False) for s in (10, 20, 30, 40)]
    assert readings[-1].collapsed and not any(r.starts_collapse for r in readings)
    assert watch.collapse_step is None


def test_missing_metrics_are_not_low():
    reading = CollapseWatch().observe(5, {"collapse_std_ratio": None, "collapse_rank_ratio": 0.5})
    assert reading.live and not reading.low and reading.std is None


@pytest.mark.parametrize("method, warned, shown", [
    ("simclr", True, True), ("byol", True, True), ("swav", True, True), ("simsiam", True, True),
    ("clip", True, False), ("mae", False, False), ("autoencoder", False, False), ("word2vec", False, False),
    ("no such method", False, False), ("", False, False)])
def test_which_methods_are_warned_about_and_monitored(method, warned, shown):
    assert warns_collapse(method) is warned
    assert shows_collapse_monitor(method) is shown
