"""The Words view: what a text run learned about words.

* **Neighbours**: type a word (completion over the run's vocabulary) and see the
  words of largest cosine similarity, with their scores.
* **Scores**: raw cosines of trained word vectors are all close to 1 on a small
  corpus (every word shares one large direction), so the view scores on
  centred vectors by default, or all-but-the-top, or raw cosine (the engine's
  ``remove_common_directions``); it says which is shown, and draws the score
  bars from the random-pair average to the best score shown, not on 0..1.
* **Analogy** a : b :: c : ?, answered by 3CosAdd and 3CosMul side by side (top 5).
* **Odd one out**: which of a few words does not belong with the others.
* **Word map**: the run's stored embeddings of its most frequent words in 2-D
  (the stored PCA at once, UMAP on request in the background, as in the Map
  view). The most frequent words are drawn as text, the rest as points; a
  label that would overlap a more frequent word's is left out until zooming
  in makes room. Hovering names a point, clicking asks for its neighbours.
* **Fill mask**: for runs of a method that can fill in ``[MASK]`` (a masked
  language model), the likeliest tokens with their probabilities.

Loading a run (its vectors, its map, its model) happens on a worker thread.
The queries themselves are a matrix-vector product over the vocabulary and run
on the GUI thread; filling a mask runs the Transformer, on a worker. What is loaded
lives in :mod:`engine.explore.words`, Qt-free.
"""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QStringListModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import (QComboBox, QCompleter, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSpinBox, QSplitter, QTabWidget,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from engine.explore.map import compute_umap
from engine.explore.words import WordsRun, fill_mask, load_words_run, text_runs
from engine.text_eval import DEFAULT_SCORES, SCORE_MODES

from ..scatter import ScatterHost, ScatterMap, projection_combo
from ..theme import accent, error_colour, is_dark
from ..run_view import RunView
from ..widgets import ElidedLabel
from ..tasks import Task

N_NEIGHBOURS = 12
N_ANALOGY = 5
#: Words drawn as text on the map; the rest are points (hundreds of text items stay fast).
MAP_LABELS = 300


# ---------------------------------------------------------------------------------- widgets


def _result_tree(headers: list[str]) -> QTreeWidget:
    t = QTreeWidget()
    t.setHeaderLabels(headers)
    t.setRootIsDecorated(False)
    t.setUniformRowHeights(True)
    t.setAlternatingRowColors(True)
    t.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for c in range(1, len(headers)):
        t.header().setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    return t


def _bar(score: float, lo: float = 0.0, hi: float = 1.0, width: int = 10) -> str:
    """A score as a row of blocks: none at ``lo``, ``width`` at ``hi`` (how close, at a glance)."""
    fraction = (score - lo) / (hi - lo) if hi > lo else 1.0
    return "█" * max(0, round(width * min(1.0, fraction)))


def bar_range(scores: list[float], baseline: float) -> tuple[float, float]:
    """Where the bars of ``scores`` start and end: from what two random words score on
    average (or the lowest score shown, if lower) to the best score shown. On 0..1 the
    bars of raw cosines of a small corpus would all be full."""
    if not scores:
        return 0.0, 1.0
    hi = max(scores)
    lo = min(min(scores), baseline) if np.isfinite(baseline) else min(scores)
    return lo, hi


class WordsView(ScatterHost, RunView):
    """Neighbours, analogies, odd-one-out, a word map and fill-mask for text runs."""

    #: a run finished loading: its id
    run_loaded = Signal(int)
    #: the word map was drawn: "pca" or "umap"
    map_ready = Signal(str)

    no_runs_placeholder = "no finished text runs yet"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.info: WordsRun | None = None
        self.wv = None
        self.model = None
        self.kind = ""
        self.map_words: list[str] = []            # the map's words (self.coords: their places, as drawn)
        self.last_neighbours: list[tuple[str, float]] = []
        self.last_analogy: dict[str, list[tuple[str, float]]] = {}
        self.last_odd: str | None = None
        self.bar_span: tuple[float, float] = (0.0, 1.0)   # the scores the neighbour bars start and end at
        self.last_fill: list | None = None
        self._labels: list[pg.TextItem] = []
        # A newer load replaces the one on its way; UMAP and fill-mask run one at a time.
        self.load_task = Task(self, "pretext-words-load", done=self._on_loaded, error=self._on_load_error,
                              supersede=True)
        self.umap_task = Task(self, "pretext-words-umap", done=self._on_umap,
                              error=lambda m, _d: self.map_status.setText(f"UMAP failed: {m}"),
                              finished=lambda: self.umap_progress.setVisible(False))
        self.fill_task = Task(self, "pretext-fill-mask", done=self._on_filled,
                              error=lambda m, _d: self._error(self.fill_note, m),
                              finished=lambda: self.fill_button.setEnabled(self.model is not None))
        self._build()
        self._set_enabled(False)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self._make_run_combo(22).setToolTip("A finished text run (word2vec, masked language model)")
        self.status = ElidedLabel("")
        self.scores_combo = QComboBox()
        for mode in ("centred", "abtt", "raw"):
            self.scores_combo.addItem(SCORE_MODES[mode][0], mode)
            self.scores_combo.setItemData(self.scores_combo.count() - 1, SCORE_MODES[mode][1].capitalize(),
                                          Qt.ItemDataRole.ToolTipRole)
        self.scores_combo.setCurrentIndex(self.scores_combo.findData(DEFAULT_SCORES))
        self.scores_combo.setToolTip(
            "How neighbours, analogies and odd-one-out score words. Trained vectors share one large "
            "direction, so raw cosines are all near 1 on a small corpus. Centred (the default) subtracts "
            "the mean vector; all-but-the-top (Mu & Viswanath 2018) also removes the top principal "
            "direction, which on a vocabulary of a few dozen words can be a real distinction.")
        self.scores_combo.currentIndexChanged.connect(self._on_scores_chosen)
        bar.addWidget(QLabel("Run"))
        bar.addWidget(self.run_combo, 1)
        bar.addWidget(QLabel("Scores"))
        bar.addWidget(self.scores_combo)
        bar.addWidget(self.status, 2)
        root.addLayout(bar)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 4, 0)

        # Neighbours: always visible, the main query.
        nb = QGroupBox("Nearest neighbours")
        nv = QVBoxLayout(nb)
        row = QHBoxLayout()
        self.word_edit = QLineEdit()
        self.word_edit.setPlaceholderText("a word, e.g. red")
        self.word_edit.setClearButtonEnabled(True)
        self.word_edit.returnPressed.connect(self.query_neighbours)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 100)
        self.k_spin.setValue(N_NEIGHBOURS)
        self.k_spin.setToolTip("How many neighbours")
        self.find_button = QPushButton("Find")
        self.find_button.setToolTip("The words of largest cosine similarity (Return)")
        self.find_button.clicked.connect(self.query_neighbours)
        row.addWidget(self.word_edit, 1)
        row.addWidget(self.k_spin)
        row.addWidget(self.find_button)
        nv.addLayout(row)
        self.neighbour_tree = _result_tree(["word", SCORE_MODES[DEFAULT_SCORES][0], ""])
        self.neighbour_tree.setToolTip("Double-click a word to see its own neighbours")
        self.neighbour_tree.itemDoubleClicked.connect(lambda it, _c: self.query_neighbours(it.text(0)))
        nv.addWidget(self.neighbour_tree, 1)
        self.neighbour_note = QLabel("")
        self.neighbour_note.setWordWrap(True)
        self.neighbour_note.setVisible(False)
        nv.addWidget(self.neighbour_note)
        self.scores_note = QLabel("")
        self.scores_note.setWordWrap(True)
        self.scores_note.setEnabled(False)          # drawn greyed: a legend, not a result
        nv.addWidget(self.scores_note)
        lv.addWidget(nb, 1)

        self.tools = QTabWidget()
        self.tools.setDocumentMode(True)
        # Analogy a : b :: c : ?
        an = QWidget()
        av = QVBoxLayout(an)
        av.setContentsMargins(4, 4, 4, 4)
        arow = QHBoxLayout()
        self.analogy_edits = []
        for i, (hint, sep) in enumerate((("man", ":"), ("king", "::"), ("woman", ": ?"))):
            e = QLineEdit()
            e.setPlaceholderText(hint)
            e.returnPressed.connect(self.query_analogy)
            self.analogy_edits.append(e)
            arow.addWidget(e, 1)
            arow.addWidget(QLabel(sep))
        self.analogy_button = QPushButton("Solve")
        self.analogy_button.setToolTip("a is to b as c is to ? — by 3CosAdd (argmax cos(x, b − a + c)) and "
                                       "3CosMul (Levy & Goldberg 2014)")
        self.analogy_button.clicked.connect(self.query_analogy)
        arow.addWidget(self.analogy_button)
        av.addLayout(arow)
        self.analogy_tree = _result_tree(["3CosAdd", "score", "3CosMul", "score"])
        self.analogy_tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        av.addWidget(self.analogy_tree, 1)
        self.analogy_note = QLabel("")
        self.analogy_note.setWordWrap(True)
        av.addWidget(self.analogy_note)
        self.tools.addTab(an, "Analogy")
        # Odd one out
        od = QWidget()
        ov = QVBoxLayout(od)
        ov.setContentsMargins(4, 4, 4, 4)
        orow = QHBoxLayout()
        self.odd_edit = QLineEdit()
        self.odd_edit.setPlaceholderText("three or more words, e.g. red blue green circle")
        self.odd_edit.returnPressed.connect(self.query_odd)
        self.odd_button = QPushButton("Which one?")
        self.odd_button.setToolTip("The word least similar to the mean of the others")
        self.odd_button.clicked.connect(self.query_odd)
        orow.addWidget(self.odd_edit, 1)
        orow.addWidget(self.odd_button)
        ov.addLayout(orow)
        self.odd_result = QLabel("")
        self.odd_result.setWordWrap(True)
        self.odd_result.setTextFormat(Qt.TextFormat.RichText)
        self.odd_result.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        ov.addWidget(self.odd_result, 1)
        self.tools.addTab(od, "Odd one out")
        # Fill mask
        fm = QWidget()
        fv = QVBoxLayout(fm)
        fv.setContentsMargins(4, 4, 4, 4)
        frow = QHBoxLayout()
        self.mask_edit = QLineEdit()
        self.mask_edit.setPlaceholderText("a small [MASK] circle at the top")
        self.mask_edit.returnPressed.connect(self.query_fill_mask)
        self.fill_button = QPushButton("Fill")
        self.fill_button.setToolTip("The likeliest tokens for each [MASK], with their probabilities")
        self.fill_button.clicked.connect(self.query_fill_mask)
        frow.addWidget(self.mask_edit, 1)
        frow.addWidget(self.fill_button)
        fv.addLayout(frow)
        self.fill_tree = _result_tree(["token", "probability", ""])
        fv.addWidget(self.fill_tree, 1)
        self.fill_note = QLabel("")
        self.fill_note.setWordWrap(True)
        fv.addWidget(self.fill_note)
        self.tools.addTab(fm, "Fill mask")
        lv.addWidget(self.tools, 1)
        split.addWidget(left)

        # The word map.
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(4, 0, 0, 0)
        mrow = QHBoxLayout()
        self.kind_combo = projection_combo()
        self.kind_combo.currentIndexChanged.connect(self._on_kind_chosen)
        self.labels_spin = QSpinBox()
        self.labels_spin.setRange(0, 5000)
        self.labels_spin.setSingleStep(50)
        self.labels_spin.setValue(MAP_LABELS)
        self.labels_spin.setToolTip("The most frequent words drawn as text (the others are points)")
        self.labels_spin.valueChanged.connect(lambda *_: self._draw_labels())
        self.umap_progress = QProgressBar()
        self.umap_progress.setRange(0, 0)
        self.umap_progress.setMaximumWidth(120)
        self.umap_progress.setVisible(False)
        self.map_status = ElidedLabel("")
        mrow.addWidget(QLabel("Word map"))
        mrow.addWidget(self.kind_combo)
        mrow.addWidget(QLabel("labels"))
        mrow.addWidget(self.labels_spin)
        mrow.addWidget(self.umap_progress)
        mrow.addWidget(self.map_status, 1)
        rv.addLayout(mrow)
        self.plot = ScatterMap()
        self.plot.describe = self._card_of
        self.plot.point_clicked.connect(self.click_word)
        self.highlight = self.plot.add_rings(12)
        self.hover_label = self.plot.card.text        # the hovered word (shown on the card)
        # Re-decide which labels fit after the view moves (a pan or a zoom), once it settles.
        self._declutter_timer = QTimer(self)
        self._declutter_timer.setSingleShot(True)
        self._declutter_timer.setInterval(60)
        self._declutter_timer.timeout.connect(self.declutter_labels)
        self.plot.vb.sigRangeChanged.connect(lambda *_: self._declutter_timer.start())
        rv.addWidget(self.plot, 1)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([470, 760])
        root.addWidget(split, 1)

        self.completer_model = QStringListModel(self)
        self.completer = QCompleter(self.completer_model, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setModelSorting(QCompleter.ModelSorting.UnsortedModel)
        self.completer.setMaxVisibleItems(12)
        self.word_edit.setCompleter(self.completer)
        for e in self.analogy_edits:
            e.setCompleter(self.completer)
        # Choosing a completion runs the query, as Return would.
        self.completer.activated.connect(lambda *_: self.word_edit.hasFocus() and self.query_neighbours())

    def _set_enabled(self, on: bool) -> None:
        for w in (self.word_edit, self.k_spin, self.find_button, self.odd_edit, self.odd_button,
                  self.analogy_button, self.kind_combo, self.labels_spin, *self.analogy_edits):
            w.setEnabled(on)

    def _set_fill_enabled(self, on: bool, hint: str) -> None:
        for w in (self.mask_edit, self.fill_button):
            w.setEnabled(on)
        self.fill_note.setText(hint)

    def changeEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if ev.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            if self.coords is not None:           # the colours follow the palette
                self._draw_points()
                self._draw_labels()
        super().changeEvent(ev)

    # ------------------------------------------------------------------ project and runs
    def set_project(self, project) -> None:
        self.info = None
        super().set_project(project)

    def runs_to_list(self, project) -> list:
        return text_runs(project)

    def refresh(self) -> None:
        """Re-list the finished text runs (keeps the current one)."""
        super().refresh()
        self.run_combo.setEnabled(self.run_combo.count() > 0)

    def show_no_runs(self) -> None:
        self._clear()
        self.status.setText("No finished text runs: import a text corpus in the Datasets view (e.g. "
                            "Shapes captions) and train word2vec on it in the Train view."
                            if self.project is not None else "Open a project to explore its text runs.")

    def load_run(self, run_id: int) -> None:
        """Load text run ``run_id`` on a worker thread (``run_loaded`` says when)."""
        loading = self.load_task.awaits(self.project, run_id)
        if run_id == self.run_id and (loading or self.info is not None):
            return
        self.run_id = run_id
        self._clear()
        self.status.setText(f"Loading run #{run_id}…")
        self.load_task.start(load_words_run, self.project, run_id)

    def _clear(self) -> None:
        self.info, self.wv, self.model = None, None, None
        self.coords, self.map_words, self.kind = None, [], ""
        self.completer_model.setStringList([])
        self.scatter.setData([], [])
        self.highlight.setData([], [])
        for t in self._labels:
            self.plot.removeItem(t)
        self._labels = []
        self.neighbour_tree.clear()
        self.analogy_tree.clear()
        self.fill_tree.clear()
        self.odd_result.setText("")
        self.scores_note.setText("")
        self._note("")
        self.analogy_note.setText("")
        self.map_status.setText("")
        self._set_enabled(False)
        self._set_fill_enabled(False, "")
        self.hide_hover()

    def _on_load_error(self, message: str, details: str) -> None:
        self.status.setText(f"Could not load the run: {message}")

    def _on_loaded(self, info: WordsRun) -> None:
        if info.run_id != self.run_id:
            return            # another run was picked meanwhile
        self.info = info
        self.wv = info.wv
        self.model = info.model
        run = info.run
        if self.wv is not None:
            self.completer_model.setStringList(self.wv.words)
            self.status.setText(f"Run #{run.id} {run.method}: {len(self.wv):,} words, "
                                f"{self.wv.vectors.shape[1]}-d vectors")
            self._set_enabled(True)
            if not self.word_edit.text():
                self.word_edit.setPlaceholderText(f"a word, e.g. {self._example_word()}")
        else:
            self.status.setText(f"Run #{run.id} {run.method}: no word vectors (neighbours, analogies "
                                "and the map need a word2vec run)")
            self.map_status.setText("This run has no word vectors to map.")
        if self.model is not None:
            self._set_fill_enabled(True, "Type a sentence with [MASK] where a word is missing.")
            if self.tools.currentIndex() != 2 and self.wv is None:
                self.tools.setCurrentIndex(2)
        else:
            self._set_fill_enabled(False, "Fill-mask needs a masked language model run: train the masked "
                                          "language model on a text corpus in the Train view, then pick "
                                          "that run here.")
        if info.map is not None:
            m = info.map
            self.map_words = m.words
            want = "umap" if "umap" in m.projections else "pca"
            self._draw(want)
        self.run_loaded.emit(info.run_id)

    def _example_word(self) -> str:
        """A frequent word that is not a stop word, for the placeholder."""
        for w in self.wv.words[:50]:
            if len(w) > 3 and w.isalpha():
                return w
        return self.wv.words[0]

    # ------------------------------------------------------------------ queries
    def _error(self, label: QLabel, text: str) -> None:
        label.setText(f"<span style='color:{error_colour(self)}'>{html.escape(text)}</span>")
        label.setVisible(True)

    def _note(self, text: str) -> None:
        """The line under the neighbours, shown only when it has something to say."""
        self.neighbour_note.setText(text)
        self.neighbour_note.setVisible(bool(text))

    def scores_mode(self) -> str:
        """How the queries score words: "centred", "abtt" or "raw" (the selector's choice)."""
        return self.scores_combo.currentData()

    def _on_scores_chosen(self, *_) -> None:
        """Show the answers on screen again, scored the new way."""
        self.neighbour_tree.headerItem().setText(1, SCORE_MODES[self.scores_mode()][0])
        if self.wv is None:
            return
        if self.neighbour_tree.topLevelItemCount() and self.word_edit.text().strip():
            self.query_neighbours()
        if self.analogy_tree.topLevelItemCount():
            self.query_analogy()
        if self.last_odd is not None and self.odd_edit.text().strip():
            self.query_odd()

    def query_neighbours(self, word: str | None = None) -> list[tuple[str, float]]:
        """The neighbours of ``word`` (or of the typed word), shown in the list and on the map."""
        if self.wv is None:
            return []
        if isinstance(word, str):
            self.word_edit.setText(word)
        word = self.word_edit.text().strip()
        if not word:
            return []
        self.neighbour_tree.clear()
        self.scores_note.setText("")
        self._note("")
        if word not in self.wv and word.lower() in self.wv:
            word = word.lower()
        mode = self.scores_mode()
        try:
            if word in self.wv:
                result = self.wv.neighbours(word, self.k_spin.value(), scores=mode)
            else:
                # A phrase: the neighbours of the mean of its words' unit vectors.
                result = self.wv.phrase_neighbours(word.lower(), self.k_spin.value(), scores=mode)
                self._note(f"Neighbours of the phrase “{word}” (the mean of its words' vectors).")
        except (KeyError, ValueError) as exc:
            self._error(self.neighbour_note, f"“{word}” is not in the vocabulary of this run"
                        if isinstance(exc, KeyError) else str(exc))
            self.last_neighbours = []
            self._highlight([], [])
            return []
        self.last_neighbours = result
        baseline = self.wv.random_pair_score(mode)
        self.bar_span = bar_range([s for _, s in result], baseline)
        for w, s in result:
            it = QTreeWidgetItem([w, f"{s:.3f}", _bar(s, *self.bar_span)])
            it.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            it.setForeground(2, accent(self))
            self.neighbour_tree.addTopLevelItem(it)
        label, meaning = SCORE_MODES[mode]
        lo, hi = self.bar_span
        flat = (" The scores hardly differ: the vectors share one large direction (try centred cosine)."
                if hi - lo < 0.01 else "")
        self.scores_note.setText(f"Scores: {label} ({meaning}). Bars run from {lo:.3f} to {hi:.3f}, the best "
                                 f"shown; two random words score {baseline:.3f} on average.{flat}")
        self._highlight([word] if word in self.wv else [], [w for w, _ in result])
        return result

    def query_analogy(self) -> dict[str, list[tuple[str, float]]]:
        """a : b :: c : ? by 3CosAdd and 3CosMul."""
        if self.wv is None:
            return {}
        a, b, c = (e.text().strip() for e in self.analogy_edits)
        self.analogy_tree.clear()
        self.analogy_note.setText("")
        if not (a and b and c):
            self._error(self.analogy_note, "Fill in the three words: a is to b as c is to ?")
            return {}
        mode = self.scores_mode()
        try:
            add = self.wv.analogy(a, b, c, N_ANALOGY, method="add", scores=mode)
            mul = self.wv.analogy(a, b, c, N_ANALOGY, method="mul", scores=mode)
        except KeyError as exc:
            self._error(self.analogy_note, str(exc).strip("'\""))
            return {}
        self.last_analogy = {"add": add, "mul": mul}
        for (wa, sa), (wm, sm) in zip(add, mul):
            it = QTreeWidgetItem([wa, f"{sa:.3f}", wm, f"{sm:.3f}"])
            for col in (1, 3):
                it.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.analogy_tree.addTopLevelItem(it)
        self.analogy_note.setText(f"{html.escape(a)} : {html.escape(b)} :: {html.escape(c)} : "
                                  f"<b>{html.escape(add[0][0]) if add else '?'}</b>  (query words excluded; "
                                  f"on {SCORE_MODES[mode][0]}: 3CosAdd scores are cosines with b − a + c, "
                                  "3CosMul's are ratios of them)")
        self._highlight([a, b, c], [add[0][0]] if add else [])
        return self.last_analogy

    def query_odd(self) -> str | None:
        if self.wv is None:
            return None
        words = self.odd_edit.text().replace(",", " ").split()
        self.last_odd = None
        try:
            odd = self.wv.odd_one_out(words, scores=self.scores_mode())
        except (KeyError, ValueError) as exc:
            self._error(self.odd_result, str(exc).strip("'\""))
            return None
        self.last_odd = odd
        shown = " ".join(f"<b><u>{html.escape(w)}</u></b>" if w == odd else html.escape(w) for w in words)
        self.odd_result.setText(f"<p style='font-size:large'>{shown}</p><p><b>{html.escape(odd)}</b> is the "
                                "odd one out: the least similar to the mean of the others "
                                f"({SCORE_MODES[self.scores_mode()][0]}).</p>")
        self._highlight([odd], [w for w in words if w != odd])
        return odd

    def query_fill_mask(self) -> None:
        """Fill in the [MASK]s of the typed sentence (on a worker; ``last_fill`` holds the answer)."""
        if self.model is None:
            return
        text = self.mask_edit.text().strip()
        if "[MASK]" not in text.upper():
            self._error(self.fill_note, "Put [MASK] where a word is missing.")
            return
        text = text.replace("[mask]", "[MASK]")
        if self.fill_task.busy:
            return
        self.fill_note.setText("Thinking…")
        self.fill_button.setEnabled(False)
        self.fill_task.start(fill_mask, self.model, text, 5)

    def _on_filled(self, result) -> None:
        self.last_fill = result
        self.fill_tree.clear()
        for n, options in enumerate(result):
            head = QTreeWidgetItem([f"[MASK] {n + 1}" if len(result) > 1 else "[MASK]", "", ""])
            f = head.font(0)
            f.setBold(True)
            head.setFont(0, f)
            if len(result) > 1:
                self.fill_tree.addTopLevelItem(head)
            for tok, p in options:
                it = QTreeWidgetItem([tok, f"{p:.1%}", _bar(p)])         # a probability: 0..1
                it.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                it.setForeground(2, accent(self))
                self.fill_tree.addTopLevelItem(it)
        self.fill_note.setText("The likeliest tokens for each [MASK], from both sides of the sentence.")

    # ------------------------------------------------------------------ the word map
    def _on_kind_chosen(self, *_):
        kind = self.kind_combo.currentData()
        if self.info is None or self.info.map is None or kind == self.kind:
            return
        if kind in self.info.map.projections:
            self._draw(kind)
        elif kind == "umap":
            self.start_umap()

    def start_umap(self) -> None:
        """Compute (and store) the UMAP map of the run's words in the background."""
        if self.info is None or self.info.map is None:
            return
        if self.umap_task.busy:
            return
        self.umap_progress.setVisible(True)
        self.map_status.setText("Computing UMAP in the background (the first map of a session takes a while)…")
        self.umap_task.start(compute_umap, self.project, self.info.map.embedding_id)

    def _on_umap(self, result) -> None:
        emb_id, proj_id, coords = result
        if self.info is None or self.info.map is None or emb_id != self.info.map.embedding_id:
            return
        self.info.map.projections["umap"] = (proj_id, coords)
        if self.kind_combo.currentData() == "umap":
            self._draw("umap")

    def _draw(self, kind: str) -> None:
        from engine.maps import normalise_coords
        coords = np.asarray(self.info.map.projections[kind][1], np.float32)
        self.coords = normalise_coords(coords)
        self.kind = kind
        self._draw_points()
        self._draw_labels()
        self._highlight([], [])
        self.plot.vb.autoRange(padding=0.08)
        self.declutter_labels()            # for the new range at once (the timer would lag behind)
        self.kind_combo.blockSignals(True)
        self.kind_combo.setCurrentIndex(self.kind_combo.findData(kind))
        self.kind_combo.blockSignals(False)
        n = len(self.coords)
        self.map_status.setText(f"{kind.upper()} of the {n:,} most frequent words · hover a point to name "
                                "it, click it for its neighbours")
        self.map_ready.emit(kind)

    def _draw_points(self) -> None:
        colour = QColor(accent(self))
        colour.setAlpha(150)
        n = len(self.coords)
        self.scatter.setData(x=self.coords[:, 0], y=self.coords[:, 1], size=5 if n < 5000 else 3,
                             brush=pg.mkBrush(colour), pen=None, data=np.arange(n))

    def _draw_labels(self) -> None:
        """The most frequent words as text items, anchored at their points."""
        for t in self._labels:
            self.plot.removeItem(t)
        self._labels = []
        if self.coords is None:
            return
        fg = self.palette().color(self.palette().ColorRole.Text)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        n = min(self.labels_spin.value(), len(self.coords))
        for i in range(n):
            t = pg.TextItem(self.map_words[i], color=fg, anchor=(0.5, 1.0))
            t.setFont(font)
            t.setPos(float(self.coords[i, 0]), float(self.coords[i, 1]))
            t.setZValue(-1)                # under the highlight rings
            self.plot.addItem(t)
            self._labels.append(t)
        self.declutter_labels()

    def declutter_labels(self) -> None:
        """Show a word's label only where it does not cover a more frequent word's label.

        Labels are placed in frequency order on a grid of screen cells; a label whose
        rectangle meets a taken cell is hidden (its point stays, and hover names it)."""
        if not self._labels or self.coords is None:
            return
        vb = self.plot.vb
        px, py = vb.viewPixelSize()
        if not px or not py:
            return
        (x0, _), (_, y1) = vb.viewRange()
        fm = QFontMetrics(self._labels[0].textItem.font())
        h = fm.height()
        cell = 6
        taken: set[tuple[int, int]] = set()
        for i, t in enumerate(self._labels):
            # Screen position of the label's bottom centre (the anchor), y growing downwards.
            sx = (self.coords[i, 0] - x0) / px
            sy = (y1 - self.coords[i, 1]) / py
            w = fm.horizontalAdvance(self.map_words[i]) + 4
            cells = {(cx, cy) for cx in range(int((sx - w / 2) // cell), int((sx + w / 2) // cell) + 1)
                     for cy in range(int((sy - h) // cell), int(sy // cell) + 1)}
            free = not (cells & taken)
            t.setVisible(free)
            if free:
                taken |= cells

    def label_words(self, visible_only: bool = False) -> list[str]:
        """The words drawn as text on the map (``visible_only``: those not hidden by decluttering)."""
        return [t.textItem.toPlainText() for t in self._labels if t.isVisible() or not visible_only]

    def _highlight(self, queries: list[str], answers: list[str]) -> None:
        if self.coords is None:
            return
        index = {w: i for i, w in enumerate(self.map_words)}
        q = [index[w] for w in queries if w in index]
        a = [index[w] for w in answers if w in index]
        pen_colour = QColor("white") if is_dark(self) else QColor("black")
        self.plot.set_rings(self.highlight, q + a, sizes=[15] * len(q) + [10] * len(a),
                            pens=[pg.mkPen(QColor(error_colour(self)), width=2)] * len(q)
                            + [pg.mkPen(pen_colour, width=1.5)] * len(a))

    def _card_of(self, i: int) -> tuple[str, None]:
        """The hover card of map point ``i``: its word, frequency rank and count."""
        count = int(self.info.map.counts[i])
        return (f"<b>{html.escape(self.map_words[i])}</b><br>"
                f"<small>#{i + 1} most frequent · {count:,}×</small>", None)

    def click_word(self, i: int) -> None:
        """Ask for the neighbours of map point ``i``."""
        self.query_neighbours(self.map_words[i])

    # ------------------------------------------------------------------ closing
    def workers(self) -> list:
        """The workers the main window cancels when it closes."""
        tasks = (self.load_task, self.umap_task, self.fill_task)
        return [t.worker for t in tasks if t.worker is not None]

