"""A form generated from a config dataclass.

The fields, their types, ranges, choices and help come from
:func:`engine.config.describe`; validation is :func:`engine.config.problems_of`
(plus the dataclass's own ``__post_init__`` checks), so the form, the CLI and
the stored JSON all agree on what a valid value is.

* ``int`` → ``QSpinBox``; ``float`` → ``QDoubleSpinBox``, or a ``QLineEdit``
  for values that span orders of magnitude (learning rates, weight decay) so
  that ``3e-4`` can be typed; choices → ``QComboBox``; ``bool`` → ``QCheckBox``.
* The spin boxes' arrows stay inside the field's range, but typing is not
  clamped: an out-of-range value stays visible and a red message next to the
  field says what is wrong (clamping silently would hide the mistake).
* Fields marked ``advanced`` live in a collapsed "Advanced" section.
* ``offer`` narrows a choice field to what this machine can do (e.g. only the
  devices that exist); a stored value outside it is shown and flagged.
* :attr:`ConfigForm.validity_changed` tells the owner to enable or disable
  its Start button.
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, fields
from typing import Any

from PySide6.QtCore import QLocale, QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit,
                               QSizePolicy, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from engine.config import ConfigError, describe, parse_value, problems_of

from .theme import error_colour

__all__ = ["ConfigForm", "humanize"]

_INT_LIMIT = 2**31 - 1
_WORDS = {"lr": "learning rate", "knn": "kNN", "p": "probability", "amp": "AMP", "ema": "EMA",
          "dim": "dim", "mlm": "MLM", "nsp": "NSP", "vit": "ViT", "cnn": "CNN", "sgd": "SGD"}
_FLOAT_RE = QRegularExpression(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d*)?\s*$|^\s*[-+]?\s*$")


def humanize(name: str) -> str:
    """``"warmup_epochs"`` → ``"Warmup epochs"``, ``"lr"`` → ``"Learning rate"``."""
    words = [_WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _fmt_float(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.6g}"


def _spans_magnitudes(d: dict) -> bool:
    """Whether a float field is better typed than spun (e.g. lr = 3e-4)."""
    default, lo, hi = d["default"], d["min"], d["max"]
    if isinstance(default, (int, float)) and default and abs(default) < 0.01:
        return True
    if lo is None or hi is None:
        return True
    if lo > 0 and hi / lo >= 1e4:
        return True
    return False


class _IntBox(QSpinBox):
    """A spin box that accepts any typed integer but whose arrows stay in range."""

    def __init__(self, lo: float | None, hi: float | None):
        super().__init__()
        self.setRange(-_INT_LIMIT, _INT_LIMIT)
        self.valid_lo = int(lo) if lo is not None else -_INT_LIMIT
        self.valid_hi = int(min(hi, _INT_LIMIT)) if hi is not None else _INT_LIMIT

    def stepBy(self, steps: int) -> None:
        self.setValue(max(self.valid_lo, min(self.valid_hi, self.value() + steps * self.singleStep())))


class _FloatBox(QDoubleSpinBox):
    def __init__(self, lo: float | None, hi: float | None, decimals: int):
        super().__init__()
        self.setDecimals(decimals)
        self.setRange(-1e12, 1e12)
        self.valid_lo = lo if lo is not None else -1e12
        self.valid_hi = hi if hi is not None else 1e12

    def stepBy(self, steps: int) -> None:
        self.setValue(max(self.valid_lo, min(self.valid_hi, self.value() + steps * self.singleStep())))


class _Field:
    """One row: the editor, its error label, and conversion to and from values."""

    def __init__(self, form: "ConfigForm", d: dict, offered: tuple | None = None):
        self.d = d
        self.name = d["name"]
        self.form = form
        t, choices = d["type"], d["choices"]
        # The choices shown: the declared ones, narrowed to ``offered`` (in the declared order).
        self.offered = None
        if choices is not None and offered is not None:
            self.offered = choices = tuple(c for c in choices if c in offered)
        lo, hi = d["min"], d["max"]
        c_locale = QLocale.c()
        c_locale.setNumberOptions(QLocale.NumberOption.OmitGroupSeparator)
        if t == "bool":
            self.kind = "bool"
            w = QCheckBox()
            w.toggled.connect(form._on_edit)
        elif choices is not None:
            self.kind = "choice"
            w = QComboBox()
            for c in choices:
                w.addItem(str(c), c)
            w.currentIndexChanged.connect(form._on_edit)
        elif t == "int":
            self.kind = "int"
            w = _IntBox(lo, hi)
            w.setLocale(c_locale)
            w.setKeyboardTracking(True)
            span = (hi - lo) if (lo is not None and hi is not None) else 0
            w.setSingleStep(max(1, int(10 ** math.floor(math.log10(span / 50)))) if span >= 500 else 1)
            w.textChanged.connect(form._on_edit)
        elif t == "float" and not _spans_magnitudes(d):
            self.kind = "float-spin"
            decimals = 2
            for v in (d["default"], lo, hi):
                if v:
                    decimals = max(decimals, min(6, 1 - int(math.floor(math.log10(abs(v))))))
            decimals = max(decimals, 3) if (hi or 0) <= 10 else decimals
            w = _FloatBox(lo, hi, decimals)
            w.setLocale(c_locale)
            span = (hi - lo) if (lo is not None and hi is not None) else 1.0
            w.setSingleStep(10 ** math.floor(math.log10(max(span, 1e-9) / 20)))
            w.textChanged.connect(form._on_edit)
        elif t == "float":
            self.kind = "float-text"
            w = QLineEdit()
            w.setValidator(QRegularExpressionValidator(_FLOAT_RE, w))
            w.setPlaceholderText("e.g. 3e-4")
            w.textChanged.connect(form._on_edit)
        else:
            self.kind = "json" if t in ("list", "tuple", "dict") else "text"
            w = QLineEdit()
            w.textChanged.connect(form._on_edit)
        w.setObjectName(f"field_{self.name}")
        w.setToolTip(self._tooltip())
        w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.editor = w
        self.label = QLabel(humanize(self.name))
        self.label.setToolTip(self._tooltip())
        self.label.setBuddy(w)
        self.error = QLabel()
        self.error.setObjectName(f"error_{self.name}")
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cell = QWidget()
        lay = QVBoxLayout(self.cell)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        lay.addWidget(w)
        lay.addWidget(self.error)

    def _tooltip(self) -> str:
        d = self.d
        parts = [d["help"] or humanize(self.name)]
        if d["min"] is not None or d["max"] is not None:
            lo = "−∞" if d["min"] is None else f"{d['min']:g}"
            hi = "∞" if d["max"] is None else f"{d['max']:g}"
            parts.append(f"Range: {lo} … {hi}")
        if self.offered is not None and tuple(self.offered) != tuple(d["choices"]):
            parts.append(f"Offered on this machine: {', '.join(map(str, self.offered))}")
        parts.append(f"Setting: {self.name}  (default {d['default']!r})")
        return "\n".join(parts)

    def text(self) -> str:
        w = self.editor
        if self.kind in ("int", "float-spin"):
            return w.cleanText()
        if self.kind in ("float-text", "text", "json"):
            return w.text()
        if self.kind == "bool":
            return "true" if w.isChecked() else "false"
        return w.currentText()

    def value(self) -> Any:
        """The typed value; :class:`ConfigError` when the text does not parse."""
        if self.kind == "bool":
            return self.editor.isChecked()
        if self.kind == "choice":
            return self.editor.currentData()
        text = self.text().strip()
        if self.kind in ("int", "float-spin", "float-text") and not text:
            raise ConfigError({self.name: "needs a value"})
        if self.kind == "text":
            return self.text()
        value = parse_value(self.form.cls, self.name, text)
        if self.kind == "json" and self.d["type"] == "tuple" and isinstance(value, list):
            value = tuple(value)
        return value

    def set_value(self, value: Any) -> None:
        w = self.editor
        if self.kind == "bool":
            w.setChecked(bool(value))
        elif self.kind == "choice":
            i = w.findData(value)
            if i < 0:  # a stored value no longer offered: show it anyway, it will be flagged
                w.addItem(str(value), value)
                i = w.count() - 1
            w.setCurrentIndex(i)
        elif self.kind == "int":
            w.setValue(int(value))
        elif self.kind == "float-spin":
            w.setValue(float(value))
        elif self.kind == "float-text":
            w.setText(_fmt_float(float(value)))
        elif self.kind == "json":
            w.setText(json.dumps(list(value) if isinstance(value, tuple) else value))
        else:
            w.setText("" if value is None else str(value))

    def show_problem(self, message: str | None, colour: str) -> None:
        if message:
            # problems_of says "must be at least 2, not 1": it reads well after the name;
            # parse errors ("'abc' is not a valid float") read better after a colon.
            joiner = " " if message.startswith(("must", "needs", "is ")) else ": "
            self.error.setText(f"{humanize(self.name)}{joiner}{message}")
            self.error.setStyleSheet(f"color: {colour};")
            self.error.setVisible(True)
            self.editor.setProperty("invalid", True)
        else:
            self.error.clear()
            self.error.setVisible(False)
            self.editor.setProperty("invalid", False)


class ConfigForm(QWidget):
    """Edit an instance of config dataclass ``cls``.

    ``values()`` gives the typed values (``{name: value}``), ``problems()`` the
    current ``{name: message}``, ``config()`` a validated instance. ``offer``
    (``{name: choices}``) narrows choice fields to what can work here.
    """

    changed = Signal()
    validity_changed = Signal(bool)

    def __init__(self, cls: type, values: Any = None, parent: QWidget | None = None, *,
                 hide: tuple[str, ...] = (), offer: dict[str, tuple] | None = None):
        super().__init__(parent)
        self.cls = cls
        self._fields: dict[str, _Field] = {}
        self._problems: dict[str, str] = {}
        self._valid = True
        self._loading = False
        self._hidden_values: dict[str, Any] = {}

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        basic = QFormLayout()
        advanced = QFormLayout()
        for lay in (basic, advanced):
            lay.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            lay.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            lay.setVerticalSpacing(4)
        descs = describe(cls)
        for d in descs:
            if d["name"] in hide:
                self._hidden_values[d["name"]] = d["default"]
                continue
            f = _Field(self, d, (offer or {}).get(d["name"]))
            self._fields[d["name"]] = f
            (advanced if d["advanced"] else basic).addRow(f.label, f.cell)
        outer.addLayout(basic)

        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_box = QWidget()
        self.advanced_box.setLayout(advanced)
        self.advanced_box.setVisible(False)
        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        has_advanced = advanced.rowCount() > 0
        self.advanced_toggle.setVisible(has_advanced)
        outer.addWidget(self.advanced_toggle)
        outer.addWidget(self.advanced_box)

        self.general_error = QLabel()
        self.general_error.setWordWrap(True)
        self.general_error.setVisible(False)
        outer.addWidget(self.general_error)
        outer.addStretch(1)

        self.set_values(values if values is not None else self._defaults())

    # -- public API -----------------------------------------------------------------------
    def field_names(self) -> list[str]:
        return list(self._fields)

    def editor(self, name: str) -> QWidget:
        return self._fields[name].editor

    def error_label(self, name: str) -> QLabel:
        return self._fields[name].error

    def values(self) -> dict[str, Any]:
        """The typed value of every field that parses (hidden fields keep their value)."""
        out = dict(self._hidden_values)
        for name, f in self._fields.items():
            try:
                out[name] = f.value()
            except ConfigError:
                pass
        return out

    def problems(self) -> dict[str, str]:
        return dict(self._problems)

    def is_valid(self) -> bool:
        return not self._problems

    def config(self):
        """A validated instance of the dataclass; :class:`ConfigError` if any field is wrong."""
        if self._problems:
            raise ConfigError(self._problems)
        return self.cls(**self.values())

    def set_values(self, values: Any) -> None:
        """Fill the form from an instance or a dict (missing keys keep their value)."""
        if values is not None and not isinstance(values, dict):
            values = {f.name: getattr(values, f.name) for f in fields(values)}
        self._loading = True
        try:
            for name, value in (values or {}).items():
                if name in self._fields:
                    self._fields[name].set_value(value)
                elif name in self._hidden_values:
                    self._hidden_values[name] = value
        finally:
            self._loading = False
        self.validate()

    def reset(self) -> None:
        self.set_values(self._defaults())

    # -- validation -----------------------------------------------------------------------
    def _defaults(self) -> dict[str, Any]:
        out = {}
        for f in fields(self.cls):
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING:
                out[f.name] = f.default_factory()
        return out

    def _on_edit(self, *_args) -> None:
        if not self._loading:
            self.validate()
            self.changed.emit()

    def validate(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        values: dict[str, Any] = dict(self._hidden_values)
        for name, f in self._fields.items():
            try:
                values[name] = f.value()
            except ConfigError as e:
                problems[name] = e.problems.get(name) or next(iter(e.problems.values()), "is not valid")
                continue
            if f.offered is not None and values[name] not in f.offered:
                problems[name] = (f"is not available on this machine: {values[name]} "
                                  f"(offered: {', '.join(map(str, f.offered))})")
        # problems_of on a bare instance: no __post_init__, so every field is checked
        probe = object.__new__(self.cls)
        defaults = self._defaults()
        for f in fields(self.cls):
            object.__setattr__(probe, f.name, values.get(f.name, defaults.get(f.name)))
        for name, message in problems_of(probe).items():
            problems.setdefault(name, message)
        general = ""
        if not problems:
            try:
                self.cls(**values)
            except ConfigError as e:
                for name, message in e.problems.items():
                    if name in self._fields:
                        problems[name] = message
                    else:
                        general += f"{name}: {message}\n"
            except (ValueError, TypeError) as e:
                general = str(e)
        colour = error_colour(self)
        for name, f in self._fields.items():
            f.show_problem(problems.get(name), colour)
        if general:
            problems["__all__"] = general.strip()
        self.general_error.setText(general.strip())
        self.general_error.setStyleSheet(f"color: {colour};")
        self.general_error.setVisible(bool(general))
        if any(name in problems for name, f in self._fields.items() if f.d["advanced"]):
            self.advanced_toggle.setChecked(True)
        self._problems = problems
        valid = not problems
        if valid != self._valid:
            self._valid = valid
            self.validity_changed.emit(valid)
        return problems

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced_box.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
