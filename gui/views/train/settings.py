"""The Train view's settings: the data set and method pickers, the method's card, the forms.

The forms are generated from the engine's config dataclasses (:class:`~gui.config_form.ConfigForm`)
with the defaults for the chosen method and data set. Text methods only get text data sets.
"""
from __future__ import annotations

import functools
import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QScrollArea, QSizePolicy,
                               QTabWidget, QVBoxLayout, QWidget)

from ...config_form import ConfigForm
from ...theme import error_colour


@functools.lru_cache(maxsize=1)
def available_devices() -> tuple[str, ...]:
    """The devices this machine can train on, for the device picker: "auto" and "cpu",
    then "cuda" and "mps" only where torch finds them (a run on a missing device fails)."""
    import torch
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return tuple(devices)


def _scroll(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(widget)
    return area


class TrainSettings:
    """TrainView's left side: what to train, and the RunConfig it describes.

    Reads from the view: ``project``, ``refresh()``, ``schedule_estimate()``, ``_show_error()``,
    ``_style_for_modality()`` and ``_update_buttons()``."""

    def _init_settings(self) -> None:
        self._forms_valid = True
        self._building = False
        self._method_cls = None
        self._shown_defaults: dict[str, dict] = {}

    def _build_settings(self) -> QWidget:
        """The left side: the pickers, the card, the forms' tabs and what is wrong in them."""
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 4, 0)
        pick = QFormLayout()
        self.dataset_combo = QComboBox()
        self.dataset_combo.setToolTip("The data set to train on (add more in the Project view)")
        self.dataset_combo.currentIndexChanged.connect(self._on_dataset_changed)
        self.method_combo = QComboBox()
        self.method_combo.setToolTip("The self-supervised method")
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional, e.g. simclr τ=0.1")
        pick.addRow("Data set", self.dataset_combo)
        pick.addRow("Method", self.method_combo)
        pick.addRow("Run name", self.name_edit)
        lv.addLayout(pick)

        self.card = QLabel()
        self.card.setWordWrap(True)
        self.card.setOpenExternalLinks(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.card.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        card_box = QGroupBox("About the method")
        cb = QVBoxLayout(card_box)
        cb.setContentsMargins(6, 4, 6, 4)
        cb.addWidget(self.card)
        lv.addWidget(card_box)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.train_form: ConfigForm | None = None
        self.method_form: ConfigForm | None = None
        self.views_form: ConfigForm | None = None
        lv.addWidget(self.tabs, 1)
        self.config_problems = QLabel()
        self.config_problems.setWordWrap(True)
        self.config_problems.setVisible(False)
        lv.addWidget(self.config_problems)
        return left

    # ------------------------------------------------------------------ forms
    def _dataset_record(self):
        ds_id = self.dataset_combo.currentData()
        if self.project is None or ds_id is None:
            return None
        try:
            return self.project.dataset(ds_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            return None

    def _on_dataset_changed(self) -> None:
        if not self._building:
            self._rebuild_forms(keep_train=True)

    def _on_method_changed(self) -> None:
        if not self._building:
            # The data sets on offer depend on the method's modality.
            before = self.dataset_combo.currentData()
            self._building = True
            try:
                self.refresh()
            finally:
                self._building = False
            self._rebuild_forms(keep_train=before == self.dataset_combo.currentData())

    def method_modality(self) -> str:
        """"images" or "text": what the chosen method trains on."""
        from engine.methods import METHODS
        cls = METHODS.get(self.method_combo.currentData() or "")
        return cls.modality if cls is not None else "images"

    @property
    def is_text(self) -> bool:
        return self.method_modality() == "text"

    def _defaults(self, method: str):
        """The engine's defaults for ``method`` on the chosen data set.

        ``default_run_config`` wants the data only for its name, image size and
        channel count; the data set record's stats carry those, so the data
        itself is not loaded on the GUI thread."""
        from types import SimpleNamespace

        from engine.methods import get_method
        from engine.train import default_run_config
        rec = self._dataset_record()
        stats = rec.stats if rec is not None and isinstance(rec.stats, dict) else {}
        size = stats.get("size") or [32, 32]
        from engine.workbench import kind_modality
        shape = SimpleNamespace(name=str(stats.get("name") or (rec.name if rec else "")),
                                height=int(size[0]), width=int(size[1]),
                                channels=int(stats.get("channels") or 3),
                                modality=kind_modality(rec.kind) if rec is not None else "images")
        cfg = default_run_config(method, shape)
        return get_method(method), cfg.train, cfg.method_config, cfg.views

    def _rebuild_forms(self, keep_train: bool = False) -> None:
        """New forms for the chosen method and data set. With ``keep_train``, the
        training and view settings the user changed survive; everything else
        takes the new method's and data set's defaults."""
        method = self.method_combo.currentData()
        if method is None:
            return
        from engine import config as cfgmod
        m, train, method_cfg, views = self._defaults(method)
        edits: dict[str, dict] = {"train": {}, "views": {}}
        if keep_train and self.train_form is not None:
            for key, form in (("train", self.train_form), ("views", self.views_form)):
                shown = self._shown_defaults.get(key, {})
                edits[key] = {k: v for k, v in form.values().items() if k in shown and v != shown[k]}
        self._shown_defaults = {"train": cfgmod.to_dict(train), "views": cfgmod.to_dict(views)}
        self._method_cls = m
        self.tabs.clear()
        hide = m.ignores_settings          # training settings the method does not read
        # Only the devices that exist here are offered (a run on a missing one fails at once).
        self.train_form = ConfigForm(type(train), train, hide=hide, offer={"device": available_devices()})
        self.train_form.set_values(edits["train"])
        self.method_form = ConfigForm(m.Config, method_cfg)
        self.views_form = ConfigForm(type(views), views)
        self.views_form.set_values(edits["views"])
        self.tabs.addTab(_scroll(self.train_form), "Training")
        self.tabs.addTab(_scroll(self.method_form), f"{m.card.title} settings")
        i = self.tabs.addTab(_scroll(self.views_form), "Augmented views")
        # Methods without views (text methods, PCA, autoencoders) do not show the tab at all.
        self.tabs.setTabVisible(i, m.uses_views)
        self.tabs.setTabEnabled(i, m.uses_views)
        self.tabs.setTabToolTip(i, "How the two views of an image are made")
        self._style_for_modality()
        for form in (self.train_form, self.method_form, self.views_form):
            form.validity_changed.connect(self._on_validity)
            form.changed.connect(self.schedule_estimate)
        self._show_card(m)
        self._on_validity()
        self.schedule_estimate()

    def forms(self) -> dict[str, ConfigForm]:
        return {"train": self.train_form, "method": self.method_form, "views": self.views_form}

    def _on_validity(self, *_):
        bad = []
        for key, form in self.forms().items():
            if form is None:
                continue
            if key == "views" and self._method_cls is not None and not self._method_cls.uses_views:
                continue
            for name, msg in form.problems().items():
                bad.append(f"{name} {msg}")
        self._forms_valid = not bad
        if bad:
            self.config_problems.setText("Fix before starting: " + "; ".join(bad))
            self.config_problems.setStyleSheet(f"color: {error_colour(self)};")
        self.config_problems.setVisible(bool(bad))
        self._update_buttons()

    def _show_card(self, m) -> None:
        c = m.card
        link = f' <a href="{html.escape(c.url)}">paper</a>' if c.url else ""
        needs = f"<br><i>Needs:</i> {html.escape(c.needs)}" if c.needs else ""
        warning = self._data_warning(m)
        warn = f"<br><span style='color:#b35c00'>⚠ {html.escape(warning)}</span>" if warning else ""
        self.card.setText(
            f"<b>{html.escape(c.title)}</b> <span style='color:gray'>· {html.escape(c.family)}</span><br>"
            f"<i>Learns:</i> {html.escape(c.learns)}<br>"
            f"<i>Loss:</i> <span style='font-family: monospace'>{html.escape(c.loss)}</span>{needs}{warn}<br>"
            f"<small>{html.escape(c.paper)}{link}</small>")

    def _data_warning(self, m) -> str | None:
        """The method's own word on the chosen images (MAE on 8×8 digits), or None."""
        rec = self._dataset_record()
        size = rec.stats.get("size") if rec is not None and isinstance(rec.stats, dict) else None
        if not size:                  # a text corpus has no image size
            return None
        return m.data_warning(int(size[0]), int(size[1]))

    def run_config(self):
        """The RunConfig the forms describe (ConfigError if a field is wrong)."""
        from engine.train import RunConfig
        method = self.method_combo.currentData()
        views = self.views_form.config() if self._method_cls.uses_views else self._defaults(method)[3]
        # (a method without views still stores the default view config, as the CLI does)
        return RunConfig(method=method, train=self.train_form.config(),
                         method_config=self.method_form.config(), views=views)

    def _checked_run_config(self):
        """The RunConfig the forms describe, or None once a dialog has said what is wrong."""
        try:
            return self.run_config()
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self._show_error("The settings are not valid", str(exc), "")
            return None
