"""The Train view's collapse policy (Qt-free): when the collapse metrics the loop logs
mean that a joint-embedding method's representation is collapsing, and since which step.

The loop logs, on the l2-normalised projections of a batch, their spread (std ratio,
about 1 when they fill the sphere) and their effective-rank ratio
(``collapse_std_ratio``, ``collapse_rank_ratio`` at logged steps; ``feature_std_ratio``,
``feature_rank_ratio`` on 4,096 items at an evaluation). Either below its threshold for
:data:`COLLAPSE_LOGS` logged steps in a row, or at one evaluation, means every image maps to
nearly the same vector (or to a few directions). The collapse began at the first low log of
that streak.
"""
from __future__ import annotations

from dataclasses import dataclass

COLLAPSE_STD = 0.1
COLLAPSE_RANK = 0.05
COLLAPSE_LOGS = 3
#: The families whose failure mode collapse is: joint-embedding methods. A masked autoencoder's
#: mean-pooled tokens share a large common direction (std ratio ≈ 0.03 while healthy), so the
#: reconstruction methods are plotted but never warned about.
COLLAPSE_FAMILIES = ("siamese", "multimodal")
#: The families whose runs show the collapse monitor: the joint-embedding methods (SimCLR, MoCo,
#: BYOL, SimSiam, SwAV), where collapse is the failure mode to watch. For the others (autoencoders,
#: MAE, CLIP, text) the two ratios say little and the plot would only take room.
COLLAPSE_MONITOR_FAMILIES = ("siamese",)
#: The metric names: live (logged steps) first, then the evaluation's.
COLLAPSE_KEYS = ("collapse_std_ratio", "collapse_rank_ratio", "feature_std_ratio", "feature_rank_ratio")


def _family(method_name: str) -> str | None:
    from ..methods import METHODS
    cls = METHODS.get(method_name or "")
    return None if cls is None else cls.card.family


def warns_collapse(method_name: str) -> bool:
    """Whether a collapse of this method's representation is worth a warning."""
    return _family(method_name) in COLLAPSE_FAMILIES


def shows_collapse_monitor(method_name: str) -> bool:
    """Whether this method's runs show the collapse monitor."""
    return _family(method_name) in COLLAPSE_MONITOR_FAMILIES


@dataclass(frozen=True)
class CollapseReading:
    """One step's collapse metrics, judged."""
    step: int
    live: bool                 #: from a logged step's projections (else an evaluation's features)
    std: float | None          #: the spread (std ratio), None when not logged
    rank: float | None         #: the effective-rank ratio, None when not logged
    low: bool                  #: either is below its threshold
    streak: int                #: low logged steps in a row, this one included (live readings)
    since: int                 #: the step where that streak began
    collapsed: bool            #: the warning condition: COLLAPSE_LOGS low logs in a row, or a low evaluation
    #: This reading raised the warning (the first collapsed reading since the last reset, for a
    #: method that warns); ``collapse_step`` says where the collapse began.
    starts_collapse: bool
    collapse_step: int | None

    @property
    def cause(self) -> str:
        """What is low: "std" (every image maps to nearly one vector) or "rank" (a few directions)."""
        return "std" if self.std is not None and self.std < COLLAPSE_STD else "rank"


class CollapseWatch:
    """Follows one run's collapse metrics step by step (reset for each new run)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.low_logs = 0                        # consecutive logged steps below a threshold
        self.low_since = 0                       # the first of them
        self.collapse_step: int | None = None    # where the collapse began, None while healthy

    def observe(self, step: int, metrics: dict, warns: bool = True) -> CollapseReading:
        """Judge one step's metrics (live or an evaluation's); ``warns``: the run's method is one
        whose collapse is worth a warning (:func:`warns_collapse`)."""
        live = "collapse_std_ratio" in metrics or "collapse_rank_ratio" in metrics
        prefix = "collapse_" if live else "feature_"
        std, rank = metrics.get(prefix + "std_ratio"), metrics.get(prefix + "rank_ratio")
        low = (std is not None and std < COLLAPSE_STD) or (rank is not None and rank < COLLAPSE_RANK)
        if live:
            if low and self.low_logs == 0:
                self.low_since = int(step)
            self.low_logs = self.low_logs + 1 if low else 0
        collapsed = self.low_logs >= COLLAPSE_LOGS if live else low
        starts = collapsed and self.collapse_step is None and warns
        if starts:
            self.collapse_step = self.low_since if live else int(step)
        return CollapseReading(step=int(step), live=live, std=std, rank=rank, low=low, streak=self.low_logs,
                               since=self.low_since, collapsed=collapsed, starts_collapse=starts,
                               collapse_step=self.collapse_step)

