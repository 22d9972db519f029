"""The text side of the app: the Words view on a word2vec run of the shapes captions,
text data sets in the Datasets view, the Train view for text methods, and the Map
view on a text run."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

COLOURS = {"red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"}
SHAPES = {"circle", "square", "triangle", "star", "cross"}


@pytest.fixture
def text_run(project):
    """A finished word2vec run on the shapes captions (one thread: the same vectors every time)."""
    from engine.workbench import create_run, import_dataset, run_training
    import_dataset(project, "shapes-captions", "captions", n=600)
    run_id = create_run(project, "captions", "word2vec",
                        {"epochs": "10", "sample": "0", "dim": "24", "threads": "1", "words_per_step": "2000"},
                        name="w2v captions")
    events = list(run_training(project, run_id))
    assert type(events[-1]).__name__ == "Finished", events[-1]
    return run_id


def _open_words(window, qtbot, run_id):
    wv = window.words_view
    with qtbot.waitSignal(wv.run_loaded, timeout=30_000):
        window.show_view("words")
        wv.show_run(run_id)
    return wv


def test_words_view_queries_and_map(window, project, qtbot, text_run, monkeypatch):
    window.train_view.runs_changed.emit()
    wv = _open_words(window, qtbot, text_run)
    assert wv.run_combo.currentData() == text_run
    # Only text runs are offered.
    assert wv.run_combo.count() == 1

    # Completion over the run's vocabulary.
    words = wv.completer_model.stringList()
    assert "red" in words and "circle" in words
    wv.completer.setCompletionPrefix("tri")
    assert wv.completer.currentCompletion() == "triangle"

    # Neighbours: a colour's nearest words are colours, with cosine scores in the list.
    result = wv.query_neighbours("red")
    assert result[0][0] in COLOURS, result
    assert sum(w in COLOURS for w, _ in result[:5]) >= 4, result
    assert wv.neighbour_tree.topLevelItemCount() == len(result)
    first = wv.neighbour_tree.topLevelItem(0)
    assert first.text(0) == result[0][0] and abs(float(first.text(1)) - result[0][1]) < 1e-3
    assert all(-1.0 <= s <= 1.0 for _, s in result)
    assert [s for _, s in result] == sorted((s for _, s in result), reverse=True)
    # An unknown word says so instead of failing.
    assert wv.query_neighbours("zebra") == []
    assert "not in the vocabulary" in wv.neighbour_note.text()

    # Analogy red : circle :: blue : ? → a shape (3CosAdd and 3CosMul, five answers each).
    for e, w in zip(wv.analogy_edits, ("red", "circle", "blue")):
        e.setText(w)
    answers = wv.query_analogy()
    assert len(answers["add"]) == 5 and len(answers["mul"]) == 5
    assert answers["add"][0][0] in SHAPES and answers["mul"][0][0] in SHAPES, answers
    assert not {"red", "circle", "blue"} & {w for w, _ in answers["add"]}
    assert wv.analogy_tree.topLevelItemCount() == 5

    # Odd one out.
    wv.odd_edit.setText("red blue green circle")
    assert wv.query_odd() == "circle"
    assert "circle" in wv.odd_result.text()

    # The word map: the most frequent words drawn as text, hover names a point, click queries it.
    assert wv.coords is not None and len(wv.coords) == len(wv.map_words)
    assert {"red", "circle"} <= set(wv.label_words())
    i = wv.map_words.index("green")
    wv.hover_point(i)
    assert wv.hover_label.isVisible() and "green" in wv.hover_label.text()
    assert wv.point_at(wv.scene_pos_of(i)) == i
    wv.click_word(i)
    assert wv.word_edit.text() == "green" and wv.last_neighbours[0][0] in COLOURS

    # UMAP on request, in the background (a stand-in for umap-learn: no numba compilation here).
    def fake_umap(project_, embedding_id, progress=None):
        coords = np.random.default_rng(0).normal(size=(len(wv.map_words), 2)).astype(np.float32)
        return embedding_id, project_.save_projection(embedding_id, "umap", {}, coords), coords

    monkeypatch.setattr("gui.views.words_view.compute_umap", fake_umap)
    with qtbot.waitSignal(wv.map_ready, timeout=10_000) as ready:
        wv.kind_combo.setCurrentIndex(wv.kind_combo.findData("umap"))
    assert ready.args == ["umap"] and wv.kind == "umap" and len(wv.label_words()) == len(wv.map_words)

    # No masked language model run: fill-mask stays disabled, with a hint.
    assert not wv.fill_button.isEnabled() and "masked language model" in wv.fill_note.text()

    # A run whose model can fill in [MASK] enables the panel; the answer comes from a worker.
    class FakeMLM:
        def fill_mask(self, text, k=5):
            assert text == "a small [MASK] circle" and k == 5
            return [[("red", 0.6), ("blue", 0.3)]]

    wv._on_loaded(dataclasses.replace(wv.info, model=FakeMLM()))
    assert wv.fill_button.isEnabled()
    wv.mask_edit.setText("a small [mask] circle")
    wv.query_fill_mask()
    qtbot.waitUntil(lambda: wv.last_fill is not None, timeout=5_000)
    assert wv.fill_tree.topLevelItemCount() == 2
    assert wv.fill_tree.topLevelItem(0).text(0) == "red" and wv.fill_tree.topLevelItem(0).text(1) == "60.0%"


def test_text_dataset_shows_sentences(window, project, qtbot):
    from engine.workbench import import_dataset
    ds_id, data = import_dataset(project, "shapes-captions", "captions", n=300)
    window.datasets_view.refresh()
    dv = window.datasets_view
    with qtbot.waitSignal(dv.dataset_loaded, timeout=30_000):
        window.show_view("datasets")
        dv.show_dataset(ds_id)
    assert dv.items_stack.currentWidget() is dv.sentences
    assert dv.sentence_model.rowCount() == data.n == 300
    index = dv.sentence_model.index(7)
    assert dv.sentence_model.data(index) == data.sentences[7]
    stats = dv.stats.toPlainText()
    assert "Vocabulary" in stats and f"{data.n_tokens:,}" in stats and "red" in stats
    assert "sentences" in dv.count_label.text()
    assert not dv.tabs.isTabEnabled(dv.preview_tab)
    # The held-out filter.
    dv.show_combo.setCurrentIndex(2)
    assert dv.sentence_model.rowCount() == int((data.split == 1).sum()) > 0
    # The import menu lists the text kinds, and their form builds (a fraction stays a fraction).
    titles = [a.text() for a in dv.import_menu.actions()]
    assert any("Text corpus" in t for t in titles) and any("Shapes captions" in t for t in titles)
    dlg = dv.open_import_dialog("text")
    assert dlg.values()["heldout"] == pytest.approx(0.02)
    assert "path" in dlg.problem.text()
    dlg.reject()
    # Back to an image data set: the grid again.
    with qtbot.waitSignal(dv.dataset_loaded, timeout=30_000):
        dv.show_dataset(project.dataset("digits").id)
    assert dv.items_stack.currentWidget() is dv.grid and dv.model.rowCount() == 1797


def test_train_view_for_text_methods(window, project, qtbot):
    from engine.workbench import import_dataset
    import_dataset(project, "shapes-captions", "captions", n=100)
    tv = window.train_view
    tv.refresh()
    window.show_view("train")
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("simclr"))
    names = [tv.dataset_combo.itemText(i) for i in range(tv.dataset_combo.count())]
    assert any(n.startswith("digits") for n in names) and not any(n.startswith("captions") for n in names)
    views_tab = [tv.tabs.tabText(i) for i in range(tv.tabs.count())].index("Augmented views")
    assert tv.tabs.isTabVisible(views_tab)
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("word2vec"))
    names = [tv.dataset_combo.itemText(i) for i in range(tv.dataset_combo.count())]
    assert names and all(n.startswith("captions") for n in names), names
    assert not tv.tabs.isTabVisible(views_tab)
    assert "batch_size" not in tv.train_form.field_names()      # word2vec has its own SGD
    assert tv.start_button.isEnabled(), tv.config_problems.text()
    # A short run through the window: throughput in words/s, the run listed in the Words view.
    tv.train_form.set_values({"epochs": 2})
    tv.method_form.set_values({"sample": 0, "min_count": 1, "threads": 1, "words_per_step": 200, "dim": 8})
    assert tv.start_run()
    # (idle comes after the worker's queued events; `busy` turns false a moment before them)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=30_000)
    assert tv.throughput_label.text().endswith("words/s"), tv.throughput_label.text()
    assert "training words" in tv.run_label.text() or "finished" in tv.run_label.text()
    assert project.run(tv.run_id).status == "finished"
    window.show_view("words")
    assert window.words_view.run_combo.findData(tv.run_id) >= 0


def test_map_view_on_a_text_run(window, project, qtbot, text_run):
    mv = window.map_view
    mv.auto_umap = False                    # no numba compilation in a test
    with qtbot.waitSignal(mv.map_ready, timeout=30_000):
        window.show_map(text_run)
    assert mv.shows_words
    words = mv.info.data.item_names
    ids = mv.info.ids
    i = [words[int(k)] for k in ids].index("red")
    mv.hover_point(i)                       # used to read data.images: must not crash
    assert mv.hover_card.isVisible() and "red" in mv.hover_text.text()
    assert not mv.hover_image.isVisible()
    mv.select_point(i)
    listed = [mv.neighbour_list.item(k).text().split()[0] for k in range(mv.neighbour_list.count())]
    assert listed and listed[0] in COLOURS, listed
    assert np.isfinite(mv.neighbour_sims).all()


def test_words_view_scores_choice_and_bars(window, project, qtbot, text_run):
    """Centred scores by default, said on screen; raw and all-but-the-top on request, the same
    numbers as the engine's; bars drawn from the random-pair average to the best score shown."""
    from engine.text_eval import DEFAULT_SCORES
    from engine.workbench import run_word_vectors
    from gui.views.words_view import _bar
    engine_wv = run_word_vectors(project, text_run)
    wv = _open_words(window, qtbot, text_run)
    assert DEFAULT_SCORES == "centred" and wv.scores_mode() == "centred"
    result = wv.query_neighbours("red")
    assert result == engine_wv.neighbours("red", wv.k_spin.value(), scores="centred")
    assert wv.neighbour_tree.headerItem().text(1) == "centred cosine"
    assert "Scores: centred cosine" in wv.scores_note.text()

    # The bars follow the spread: the best is full, the last is shorter, none grows down the list.
    bars = [len(wv.neighbour_tree.topLevelItem(i).text(2)) for i in range(len(result))]
    assert bars[0] == 10 and bars[-1] < bars[0] and bars == sorted(bars, reverse=True)
    lo, hi = wv.bar_span
    baseline = engine_wv.random_pair_score("centred")
    assert hi == result[0][1] and lo == min(baseline, result[-1][1])
    assert f"{baseline:.3f}" in wv.scores_note.text()
    assert _bar(0.5, 0.0, 1.0) == "█████" and _bar(0.2, 0.2, 0.8) == "" and _bar(0.9, 0.9, 0.9) == "█" * 10

    # Choosing raw cosine redraws the answers on screen with the engine's raw numbers.
    for e, w in zip(wv.analogy_edits, ("red", "circle", "blue")):
        e.setText(w)
    wv.query_analogy()
    wv.scores_combo.setCurrentIndex(wv.scores_combo.findData("raw"))
    raw = engine_wv.neighbours("red", wv.k_spin.value(), scores="raw")
    assert wv.last_neighbours == raw
    assert float(wv.neighbour_tree.topLevelItem(0).text(1)) == pytest.approx(raw[0][1], abs=1e-3)
    assert wv.neighbour_tree.headerItem().text(1) == "raw cosine" and "Scores: raw cosine" in wv.scores_note.text()
    assert wv.last_analogy["add"] == engine_wv.analogy("red", "circle", "blue", 5, scores="raw")
    assert "raw cosine" in wv.analogy_note.text()
    wv.scores_combo.setCurrentIndex(wv.scores_combo.findData("abtt"))
    assert wv.last_neighbours == engine_wv.neighbours("red", wv.k_spin.value(), scores="abtt")
    wv.odd_edit.setText("red blue green circle")
    assert wv.query_odd() == engine_wv.odd_one_out(["red", "blue", "green", "circle"], scores="abtt")
    assert "all-but-the-top" in wv.odd_result.text()
