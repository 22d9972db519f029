"""The form generated from a config dataclass."""
from __future__ import annotations

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from engine.config import describe
from engine.methods.simclr import SimCLRConfig
from engine.train import TrainConfig
from gui.config_form import ConfigForm


@pytest.fixture
def form(qtbot):
    f = ConfigForm(TrainConfig)
    qtbot.addWidget(f)
    f.show()
    return f


def test_widgets_follow_field_types_and_help(form):
    assert isinstance(form.editor("epochs"), QSpinBox)
    assert isinstance(form.editor("lr"), QLineEdit)               # spans magnitudes: typed
    assert isinstance(form.editor("weight_decay"), QLineEdit)
    assert isinstance(form.editor("warmup_epochs"), QDoubleSpinBox)
    assert isinstance(form.editor("optimizer"), QComboBox)
    assert [form.editor("optimizer").itemData(i) for i in range(3)] == ["adamw", "adam", "sgd"]
    assert isinstance(form.editor("amp"), QCheckBox)
    for d in describe(TrainConfig):
        assert form.editor(d["name"]).toolTip().startswith(d["help"])
    # advanced fields are in the collapsed section
    assert not form.advanced_box.isVisible()
    assert form.advanced_box.isAncestorOf(form.editor("knn_k"))
    assert not form.advanced_box.isAncestorOf(form.editor("epochs"))
    form.advanced_toggle.click()
    assert form.advanced_box.isVisible()


def test_values_are_typed_defaults(form):
    v = form.values()
    assert v == {d["name"]: d["default"] for d in describe(TrainConfig)}
    assert type(v["epochs"]) is int and type(v["lr"]) is float and type(v["amp"]) is bool
    assert form.config() == TrainConfig()


def test_scientific_notation_is_typeable(form, set_field):
    set_field(form, "lr", "3e-4")
    assert form.values()["lr"] == pytest.approx(3e-4)
    assert form.is_valid()
    set_field(form, "lr", "1e")          # half typed
    assert not form.is_valid()
    assert form.error_label("lr").isVisible()
    assert "not a valid float" in form.error_label("lr").text()


def test_out_of_range_shows_message_and_invalidates(form, qtbot, set_field):
    with qtbot.waitSignal(form.validity_changed) as sig:
        set_field(form, "batch_size", 1)
    assert sig.args == [False]
    label = form.error_label("batch_size")
    assert label.isVisible()
    assert label.text() == "Batch size must be at least 2, not 1"
    assert form.problems() == {"batch_size": "must be at least 2, not 1"}
    assert "color" in label.styleSheet()
    with qtbot.waitSignal(form.validity_changed) as sig:
        set_field(form, "batch_size", 64)
    assert sig.args == [True]
    assert not label.isVisible()
    assert form.values()["batch_size"] == 64


def test_spin_arrows_stay_in_range(form):
    box = form.editor("epochs")
    box.setValue(1)
    box.stepDown()
    assert box.value() == 1 and form.is_valid()


def test_advanced_problem_opens_the_section(form, set_field):
    set_field(form, "knn_k", 0)
    assert form.advanced_box.isVisible()
    assert "at least 1" in form.error_label("knn_k").text()


def test_set_values_and_method_config(qtbot, set_field):
    f = ConfigForm(SimCLRConfig, SimCLRConfig(width=8, temperature=0.1))
    qtbot.addWidget(f)
    assert f.values()["width"] == 8
    assert f.values()["temperature"] == pytest.approx(0.1)
    set_field(f, "temperature", "0")
    assert f.problems() == {"temperature": "must be at least 0.01, not 0.0"}


def test_out_of_range_in_the_window_disables_start(window, set_field):
    tv = window.train_view
    window.show_view("train")
    assert tv.start_button.isEnabled()
    set_field(tv.train_form, "epochs", 0)
    assert tv.train_form.error_label("epochs").isVisible()
    assert tv.train_form.error_label("epochs").text() == "Epochs must be at least 1, not 0"
    assert not tv.start_button.isEnabled()
    assert tv.config_problems.isVisible()
    assert not tv.start_run()      # the shortcut path refuses too
    set_field(tv.method_form, "width", 2)   # a second bad field in another form
    set_field(tv.train_form, "epochs", 3)
    assert not tv.start_button.isEnabled()
    set_field(tv.method_form, "width", 16)
    assert tv.start_button.isEnabled()


def _method_names():
    from engine.methods import METHODS
    return list(METHODS)


@pytest.mark.parametrize("method", _method_names())
def test_every_method_config_renders_valid_defaults(qtbot, method):
    """Every registered method gets a form whose defaults are valid and round-trip."""
    from engine.methods import METHODS
    cls = METHODS[method].Config
    f = ConfigForm(cls)
    qtbot.addWidget(f)
    assert f.is_valid(), f.problems()
    assert f.config() == cls()
    assert set(f.field_names()) == {d["name"] for d in describe(cls)}


def test_train_view_switches_between_all_methods(window):
    from engine.methods import METHODS
    from engine.workbench import import_dataset
    # Text methods are offered only text data sets: give them one.
    import_dataset(window.project, "shapes-captions", "captions", n=100)
    tv = window.train_view
    tv.refresh()
    window.show_view("train")
    for name, cls in METHODS.items():
        tv.method_combo.setCurrentIndex(tv.method_combo.findData(name))
        assert tv.method_form.cls is cls.Config
        assert cls.card.title in tv.card.text()
        assert tv.tabs.isTabEnabled(2) == bool(cls.uses_views)
        assert tv.start_button.isEnabled(), (name, tv.config_problems.text())
        cfg = tv.run_config()
        assert cfg.method == name and cfg.method_config == cls.Config()


def test_switching_method_keeps_user_edits_only(window, set_field):
    from engine.methods import METHODS
    tv = window.train_view
    window.show_view("train")
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("simclr"))
    set_field(tv.train_form, "seed", 7)
    other = next(n for n in METHODS if n != "simclr")
    tv.method_combo.setCurrentIndex(tv.method_combo.findData(other))
    assert tv.train_form.values()["seed"] == 7                           # the user's edit survives
    expected = tv._defaults(other)[1]
    assert tv.train_form.values()["epochs"] == expected.epochs           # the method's own default
