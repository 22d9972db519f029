from dataclasses import dataclass

import pytest

from engine.config import ConfigError, check, describe, from_dict, param, parse_value, problems_of, with_overrides


@dataclass
class Demo:
    lr: float = param(0.1, "learning rate", min=0.0, max=1.0)
    steps: int = param(5, "steps", min=1)
    kind: str = param("a", "kind", choices=("a", "b"))
    flag: bool = param(False, "flag")


def test_valid_defaults_and_describe():
    check(Demo())
    rows = {r["name"]: r for r in describe(Demo)}
    assert rows["lr"]["type"] == "float" and rows["lr"]["max"] == 1.0
    assert rows["kind"]["choices"] == ("a", "b")


def test_every_problem_is_reported_with_a_reason():
    bad = problems_of(Demo(lr=2.0, steps=0, kind="c", flag="yes"))
    assert set(bad) == {"lr", "steps", "kind", "flag"}
    assert "at most 1.0" in bad["lr"] and "at least 1" in bad["steps"]


def test_text_overrides_are_typed_and_validated():
    cfg = with_overrides(Demo(), {"lr": "1e-3", "steps": "7", "flag": "true", "kind": "b"})
    assert (cfg.lr, cfg.steps, cfg.flag, cfg.kind) == (1e-3, 7, True, "b")
    with pytest.raises(ConfigError) as err:
        with_overrides(Demo(), {"lr": "fast"})
    assert "lr" in err.value.problems
    with pytest.raises(ConfigError):
        parse_value(Demo, "nope", "1")


def test_from_dict_strictness():
    with pytest.raises(ConfigError):
        from_dict(Demo, {"typo": 1})
    assert from_dict(Demo, {"typo": 1, "steps": 3}, strict=False).steps == 3
