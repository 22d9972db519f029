"""Config dataclasses that describe themselves.

Every method, the training loop and the view pipeline keep their settings in a
dataclass whose fields are declared with :func:`param`. The metadata (help
text, range, choices) lets the GUI render a form and the CLI accept
``key=value`` overrides, and :func:`check` gives one readable message per bad
value so the form can show it next to the field.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import MISSING, field, fields
from typing import Any


class ConfigError(ValueError):
    """A config value is out of range or of the wrong type.

    ``problems`` maps field name to a sentence a person can act on.
    """

    def __init__(self, problems: dict[str, str]):
        self.problems = dict(problems)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.problems.items()))


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: tuple | list | None = None, advanced: bool = False) -> Any:
    """Declare a config field with the metadata a form and a validator need."""
    meta = {"help": help, "min": min, "max": max,
            "choices": tuple(choices) if choices is not None else None, "advanced": advanced}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def field_type(cls_or_obj, f: dataclasses.Field) -> type:
    """The concrete Python type of a field (resolving string annotations)."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    hints = typing.get_type_hints(cls)
    t = hints.get(f.name, str)
    origin = typing.get_origin(t)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        t = args[0] if args else str
    return typing.get_origin(t) or t


def problems_of(cfg) -> dict[str, str]:
    """Check every field against its metadata; return {field: message}."""
    out: dict[str, str] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        meta = f.metadata
        t = field_type(cfg, f)
        if t is bool:
            if not isinstance(value, bool):
                out[f.name] = f"must be true or false, not {value!r}"
            continue
        if t in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                out[f.name] = f"must be a number, not {value!r}"
                continue
            if not math.isfinite(value):
                # NaN compares False with any bound, so it would pass the range check below.
                out[f.name] = f"must be a finite number, not {value}"
                continue
            if t is int and int(value) != value:
                out[f.name] = f"must be a whole number, not {value!r}"
                continue
            lo, hi = meta.get("min"), meta.get("max")
            if lo is not None and value < lo:
                out[f.name] = f"must be at least {lo}, not {value}"
            elif hi is not None and value > hi:
                out[f.name] = f"must be at most {hi}, not {value}"
        if t in (list, tuple, dict) and not _finite_json(value):
            out[f.name] = f"must hold only finite numbers, not {value!r}"
            continue
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            out[f.name] = f"must be one of {', '.join(map(str, choices))}, not {value!r}"
    return out


def _finite_json(value: Any) -> bool:
    """Whether a list/dict setting holds no NaN or infinity (JSON cannot store them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite_json(v) for v in value)
    if isinstance(value, dict):
        return all(_finite_json(v) for v in value.values())
    return True


def check(cfg) -> None:
    """Raise :class:`ConfigError` listing every bad field of ``cfg``."""
    bad = problems_of(cfg)
    if bad:
        raise ConfigError(bad)


def parse_value(cls, name: str, text: str) -> Any:
    """Turn the text a user typed for field ``name`` into the field's type."""
    f = {f.name: f for f in fields(cls)}.get(name)
    if f is None:
        known = ", ".join(x.name for x in fields(cls))
        raise ConfigError({name: f"is not a setting of {cls.__name__} (known: {known})"})
    t = field_type(cls, f)
    try:
        if t is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if t is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if t is float:
            return float(text)
        if t in (list, tuple, dict):
            return json.loads(text)
    except ValueError:
        raise ConfigError({name: f"{text!r} is not a valid {t.__name__}"}) from None
    return text


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict[str, Any] | None, *, strict: bool = True):
    """Build ``cls`` from a dict (e.g. stored JSON); unknown keys are an error
    when ``strict`` (a typo in an override), ignored otherwise (an older file)."""
    data = dict(data or {})
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown and strict:
        raise ConfigError({k: f"is not a setting of {cls.__name__}" for k in sorted(unknown)})
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            value = data[f.name]
            if field_type(cls, f) is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            kwargs[f.name] = value
    cfg = cls(**kwargs)
    check(cfg)
    return cfg


def with_overrides(cfg, overrides: dict[str, str]):
    """A copy of ``cfg`` with textual overrides applied and validated."""
    values = to_dict(cfg)
    for k, v in overrides.items():
        values[k] = parse_value(type(cfg), k, v) if isinstance(v, str) else v
    return from_dict(type(cfg), values)


def describe(cls) -> list[dict[str, Any]]:
    """Field descriptions for building a form: name, type, default, help, range."""
    out = []
    for f in fields(cls):
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        out.append({"name": f.name, "type": field_type(cls, f).__name__, "default": default,
                    "help": f.metadata.get("help", ""), "min": f.metadata.get("min"),
                    "max": f.metadata.get("max"), "choices": f.metadata.get("choices"),
                    "advanced": f.metadata.get("advanced", False)})
    return out
