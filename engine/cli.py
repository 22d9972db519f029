"""The command line: ``python main.py <command> --help``.

Every command reads or writes one project file. Bad input gives one clear line
on stderr and a non-zero exit; ``--debug`` shows the traceback as well.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line."""


# --------------------------------------------------------------------------------------
# Output helpers


class ProgressBar:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: int, stream=None, width: int = 30):
        # sys.stderr looked up now, not at import: it may have been replaced since (tests, the GUI).
        self.total, self.stream, self.width = max(1, total), stream or sys.stderr, width
        self.start = time.perf_counter()
        self.tty = self.stream.isatty()
        self._last = 0.0

    def update(self, done: int, text: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        frac = min(1.0, done / self.total)
        filled = int(frac * self.width)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
                f"{text} eta {_duration(eta)}")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


# The numbers that sum up a finished run, in the order shown: image probes, the
# masked language model's, word2vec's (analogies, word similarity, neighbours).
HEADLINE_METRICS = ("knn", "linear", "raw_knn", "raw_linear", "random_knn", "random_linear",
                    "masked_accuracy", "unigram_accuracy", "perplexity", "unigram_perplexity",
                    "nsp_accuracy", "analogy", "analogy_cosmul", "neighbour_purity")


def _headline(metrics: dict) -> dict:
    """The metrics that sum a run up; the final loss where a run has none of them
    (a word2vec run on a corpus without analogy or similarity words)."""
    keys = [k for k in HEADLINE_METRICS if k in metrics] + \
        sorted(k for k in metrics if k.startswith("spearman_"))
    if not keys and "loss" in metrics:
        keys = ["loss"]
    return {k: metrics[k] for k in keys}


def _fmt_metrics(metrics: dict) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in _headline(metrics).items())


def _parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _number_at_least(low, cast=int):
    """An argparse type: a number no smaller than ``low``, refused while parsing
    (before a project is opened or a minute of UMAP is spent)."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if cast is int else ''}number, "
                                             f"got {text!r}") from None
        if not value >= low:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        return value
    return parse


# --nproc 0 would train nothing.
_positive_int = _number_at_least(1)


def _coerce(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


# --------------------------------------------------------------------------------------
# Commands


def _open(args, read_only: bool = False):
    from .store import Project
    path = Path(args.project)
    if not path.exists():
        raise UserError(f"{path}: no such project file (create one with: main.py new {path})")
    return Project.open(path, read_only=read_only)


def _run_to_use(project, run_id: int):
    """The run's record; a one-line error naming the file and the run when it
    does not exist or its row is damaged (so nothing goes on to misread it)."""
    run = project.run(run_id)  # ProjectError "FILE: has no run N"
    if run.status == "damaged":
        raise UserError(f"{project.path}: run {run.id} is damaged: {run.error}; other runs are unaffected")
    return run


def _final_embedding_id(project, run_id: int) -> int:
    from .workbench import final_embeddings
    run = _run_to_use(project, run_id)
    emb = final_embeddings(project, run.id)
    if emb is None:
        raise UserError(f"run {run.id} has no final embeddings yet (status {run.status})")
    return emb.id


def cmd_new(args) -> int:
    from .store import Project
    from .workbench import DEMO_DATASETS, import_dataset
    project = Project.create(Path(args.path))
    if not args.empty:
        for name, kind, params in DEMO_DATASETS:
            import_dataset(project, kind, name, **params)
    print(f"created {args.path}" + ("" if args.empty else " with the built-in datasets digits and shapes"))
    project.close()
    return 0


def cmd_datasets(args) -> int:
    from .data import DATASET_KINDS
    args.project = getattr(args, "project_sub", None) or args.project
    args.json = getattr(args, "json_sub", False) or args.json
    args.name = getattr(args, "name", None)
    if args.action == "kinds":
        for kind in DATASET_KINDS.values():
            params = ", ".join(f"{p.name}={p.default!r}" for p in kind.params)
            print(f"{kind.name:14s} {kind.title} — {kind.description}  [{params}]")
        return 0
    if not args.project:
        raise UserError("datasets needs --project FILE")
    # Listing (with or without the "list" word) only reads; "add" writes.
    project = _open(args, read_only=args.action != "add")
    try:
        if args.action == "add":
            from .workbench import import_dataset
            params = {k: _coerce(v) for k, v in _parse_overrides(args.params).items()}
            bar = ProgressBar(1)

            def progress(done, total):
                bar.total = max(1, total)
                bar.update(done, "files")
            dataset_id, data = import_dataset(project, args.kind, args.name, progress=progress, **params)
            bar.close()
            if (same := getattr(data, "info", {}).get("already_imported")) is not None:
                print(f"dataset {dataset_id} {same!r} already holds this data (same fingerprint): nothing imported")
                return 0
            if getattr(data, "modality", "images") == "text":
                print(f"added dataset {dataset_id} {args.name or data.name!r}: {data.n} sentences, "
                      f"{data.n_tokens} tokens, {len(data.vocab)} words"
                      + (f", {len(data.skipped)} files skipped" if data.skipped else ""))
                for name, why in data.skipped[:20]:
                    print(f"  skipped {name}: {why}")
                return 0
            ignored = data.info.get("ignored_files", [])
            n_ignored = data.info.get("n_ignored_files", len(ignored))
            print(f"added dataset {dataset_id} {args.name or data.name!r}: {data.n} images "
                  f"{data.height}x{data.width}x{data.channels}"
                  + (f", {len(data.class_names or [])} classes" if data.labels is not None else "")
                  + (f", {len(data.skipped)} files skipped" if data.skipped else "")
                  + (f", {n_ignored} files ignored" if n_ignored else ""))
            for name, why in data.skipped[:20]:
                print(f"  skipped {name}: {why}")
            if len(data.skipped) > 20:
                print(f"  ... and {len(data.skipped) - 20} more")
            for name, why in ignored[:20]:
                print(f"  ignored {name}: {why}")
            if n_ignored > 20:
                print(f"  ... and {n_ignored - 20} more ignored")
            return 0
        records = project.datasets()
        if args.json:
            print(json.dumps([{"id": d.id, "name": d.name, "kind": d.kind, "params": d.params,
                               "n_items": d.n_items, "fingerprint": d.fingerprint, "stats": d.stats}
                              for d in records], indent=2, default=str))
        else:
            if not records:
                print("no datasets (add one: main.py datasets add --project P KIND key=value)")
            for d in records:
                print(f"{d.id:4d}  {d.name:20s} {d.kind:14s} {d.n_items:8d} items")
        return 0
    finally:
        project.close()


def _resolve_dataset(project, name: str) -> int:
    """A dataset of the project by id or name; built-in kinds are added on first use."""
    from .data import DATASET_KINDS
    from .store import ProjectError
    from .workbench import import_dataset
    try:
        return project.dataset(int(name) if name.isdigit() else name).id
    except ProjectError:
        kind = DATASET_KINDS.get(name)
        if kind is not None and kind.builtin and not project.read_only:
            dataset_id, _ = import_dataset(project, name, name)
            return dataset_id
        known = ", ".join(d.name for d in project.datasets()) or "none"
        raise UserError(f"{project.path}: no dataset {name!r} (datasets here: {known}; "
                        "add one with: main.py datasets add)") from None


def _follow(events, quiet: bool = False) -> int:
    """Print a run's events as a progress bar; return the exit code."""
    from .train import Evaluation, Failed, Finished, Started, Step
    bar = None
    status = 1
    rate = "img/s"
    last_loss = None
    for ev in events:
        if isinstance(ev, Started):
            bar = ProgressBar(ev.total_steps)
            rate = ev.rate
            if not quiet:
                print(f"run {ev.run_id}: training on {ev.device}, {ev.n_train} {ev.items}, "
                      f"{ev.total_steps} steps" + (f", resuming at step {ev.start_step}" if ev.start_step else ""),
                      file=sys.stderr)
        elif isinstance(ev, Step):
            last_loss = ev.loss
            if bar and not quiet:
                bar.update(ev.step, f"epoch {ev.epoch:.2f} loss {ev.loss:.4f} {ev.images_per_s:.0f} {rate}")
        elif isinstance(ev, Evaluation) and not quiet:
            if bar:
                bar.update(ev.step, "", force=True)
                bar.close()
            if ev.metrics:
                print(f"epoch {ev.epoch:g}: " + (_fmt_metrics(ev.metrics) or
                                                 " ".join(f"{k}={v:.4g}" for k, v in ev.metrics.items())),
                      file=sys.stderr)
        elif isinstance(ev, Finished):
            if bar and not quiet:
                bar.close()
            # The run's headline numbers, or its final loss where it has none of them.
            final = _fmt_metrics({**({"loss": last_loss} if last_loss is not None else {}), **ev.metrics})
            print(f"run {ev.run_id} {ev.status} at step {ev.step}" + (f": {final}" if final else ""))
            status = 0
        elif isinstance(ev, Failed):
            if bar and not quiet:
                bar.close()
            print(f"error: run {ev.run_id} failed: {ev.error}", file=sys.stderr)
            status = 1
    return status


class StopOnSignals:
    """Ctrl+C (SIGINT) and SIGTERM while a run trains: the first asks the loop to stop
    at the next step (it saves a checkpoint and marks the run stopped); a second
    aborts at once, leaving the run interrupted. Python's own Ctrl+C raises
    KeyboardInterrupt wherever the loop happens to be, which ends the training
    generator before it can save anything (the run was left "running")."""

    def __init__(self, control):
        self.control = control
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():     # only there can Python set handlers
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame) -> None:
        # Nothing is printed here: the handler may interrupt a write to stderr.
        self.received.append(signum)
        if len(self.received) > 1:
            raise KeyboardInterrupt
        self.control.stop()

    def exit_code(self) -> int:
        """128 + the signal, as a shell reports it: 130 for Ctrl+C, 143 for SIGTERM."""
        return 128 + (self.received[-1] if self.received else signal.SIGINT)


def _data_warning(project, dataset_id: int, method: str) -> str | None:
    """The method's own word on the data set's images (MAE on 8×8 digits), or None."""
    from .methods import get_method
    stats = project.dataset(dataset_id).stats
    size = stats.get("size") if isinstance(stats, dict) else None
    if not size:                  # a text corpus has no image size
        return None
    return get_method(method).data_warning(int(size[0]), int(size[1]))


def cmd_train(args) -> int:
    from . import workbench
    from .train import RunControl
    overrides = _parse_overrides(args.overrides)
    for key in ("epochs", "device", "seed", "batch_size"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = str(value)
    control = RunControl()
    with StopOnSignals(control) as signals:
        project = _open(args)
        try:
            dataset_id = _resolve_dataset(project, args.dataset)
            if signals.received:            # stopped before anything was recorded
                return signals.exit_code()
            run_id = workbench.create_run(project, dataset_id, args.method, overrides, name=args.name or "")
            print(f"run {run_id}: {args.method} on {project.dataset(dataset_id).name}", file=sys.stderr)
            warning = _data_warning(project, dataset_id, args.method)
            if warning:
                print(f"note: {warning}", file=sys.stderr)
            if args.nproc > 1:
                project.close()
                from .distributed import launch
                return launch(args.project, run_id, args.nproc, quiet=args.quiet)
            return _train_until_signal(project, run_id, args.quiet, signals)
        finally:
            project.close()


def _train_until_signal(project, run_id: int, quiet: bool, signals: StopOnSignals) -> int:
    """Train run ``run_id``; on a signal, stop cleanly at a checkpoint (or abort on a
    second one) and exit with 128 + the signal."""
    from .workbench import run_training
    resume_hint = f"resume with: main.py resume --project {project.path} --run {run_id}"
    training = run_training(project, run_id, signals.control)

    def announced():
        told = False
        for ev in training:
            if signals.received and not told:
                told = True
                print("\nstopping at the next step and saving a checkpoint (Ctrl+C again to abort)…",
                      file=sys.stderr)
            yield ev

    try:
        code = _follow(announced(), quiet)
    except KeyboardInterrupt:
        training.close()              # ends the loop now: it lets go of the run, which reads interrupted
        print(f"\naborted: run {run_id} is left interrupted at its last checkpoint; {resume_hint}",
              file=sys.stderr)
        return signals.exit_code()
    if signals.received:
        if project.run(run_id).status != "finished":      # the signal may come during the final evaluation
            print(resume_hint, file=sys.stderr)
        return signals.exit_code()
    return code


def cmd_resume(args) -> int:
    from .train import RunConfig, RunControl, check_runnable
    from .workbench import load_dataset
    control = RunControl()
    with StopOnSignals(control) as signals:
        project = _open(args)
        try:
            run = _run_to_use(project, args.run)   # refuses a damaged run in one line
            if run.status == "finished":
                raise UserError(f"run {run.id} already finished")
            if run.owner is not None:       # a quick answer; the claim in the loop is what makes it safe
                raise UserError(f"{project.path}: run {run.id} is being trained by {run.owner}; "
                                "stop it there first (Ctrl+C, or Stop in the app)")
            check_runnable(RunConfig.from_dict(run.config), load_dataset(project, run.dataset_id))
            if args.nproc > 1:
                project.close()
                from .distributed import launch
                return launch(args.project, run.id, args.nproc, quiet=args.quiet)
            return _train_until_signal(project, run.id, args.quiet, signals)
        finally:
            project.close()


def cmd_delete(args) -> int:
    """Delete a run and everything it holds; refused while a live process trains it."""
    project = _open(args)
    try:
        run = project.run(args.run)
        project.delete_run(run.id)
        print(f"deleted run {run.id} ({run.name}, {run.status})")
        return 0
    finally:
        project.close()


def cmd_worker(args) -> int:
    """One torchrun process of a distributed run (started by ``train --nproc``)."""
    from . import distributed
    from .store import Project
    from .workbench import run_training
    dist = distributed.init_from_env()
    project = Project.open(Path(args.project), read_only=not dist.is_main)
    try:
        events = run_training(project, args.run, dist=dist)
        code = _follow(events, quiet=args.quiet or not dist.is_main)
    finally:
        project.close()
        distributed.shutdown()
    return code


def cmd_runs(args) -> int:
    project = _open(args, read_only=True)
    try:
        runs = project.runs()
        rows = []
        for r in runs:
            latest = project.latest_metrics(r.id)
            final = _headline(latest)
            if "loss" in latest:
                final["loss"] = latest["loss"]
            rows.append({"id": r.id, "name": r.name, "method": r.method, "dataset_id": r.dataset_id,
                         "status": r.status, "seed": r.seed, "device": r.device,
                         "created_at": r.created_at, "finished_at": r.finished_at,
                         "error": (r.error or "").split("\n")[0] or None, "metrics": final})
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        elif not rows:
            print("no runs yet (start one: main.py train --project P --dataset digits --method simclr)")
        else:
            for row in rows:
                print(f"{row['id']:4d}  {row['status']:9s} {row['method']:22s} {row['name'][:30]:30s} "
                      f"{_fmt_metrics(row['metrics'])}" + (f"  [{row['error']}]" if row["error"] else ""))
        return 0
    finally:
        project.close()


def _label_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--labels-per-class takes whole numbers separated by commas (e.g. 1,10,100), got {text!r}")
    if not counts or min(counts) < 1:
        raise UserError(f"--labels-per-class needs counts of at least 1, got {text!r}")
    return counts


def _eval_label_efficiency(args, project) -> int:
    """``eval --labels-per-class``: the few-label curve (engine/label_efficiency.py)."""
    from .label_efficiency import MODES, label_efficiency
    from .selection import select as select_items
    counts = _label_counts(args.labels_per_class)
    modes = [m.strip() for m in (args.modes or ",".join(MODES)).split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"unknown mode(s) {', '.join(bad) or '(none)'} for --modes; choose from {', '.join(MODES)}")
    if args.select_csv and not args.select:
        raise UserError("--select-csv writes the items --select chooses: add --select random|kcenter|typiclust")
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    bar = None if args.json else ProgressBar(len(set(counts)) * args.seeds)
    try:
        result = label_efficiency(project, args.run, per_class=counts, seeds=args.seeds,
                                  select=args.select or "random", modes=modes,
                                  progress=(lambda d, n, t: bar.update(d, t)) if bar else None)
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        if bar:
            bar.close()
    if args.select_csv:
        # The items a labeller would get for the largest count, seed 0, from the train embedding.
        from .selection import export_selection_csv
        from .workbench import final_embeddings, load_dataset
        run = project.run(args.run)
        data = load_dataset(project, run.dataset_id)
        ids, feats = project.load_embeddings(final_embeddings(project, run.id).id)
        labels = np.asarray(data.labels)[ids]
        pool = np.flatnonzero((np.asarray(data.split)[ids] == 0) & (labels >= 0))
        n = max(counts) * len(np.unique(labels[pool]))
        picked = ids[pool[select_items(feats[pool], n, args.select or "random", 0)]]
        names = data.item_names or [str(i) for i in range(len(data.split))]
        path = export_selection_csv(args.select_csv, names, picked)
        result["select_csv"] = str(path)
        if not args.json:
            print(f"{len(picked)} selected items ({args.select or 'random'}, seed 0) written to {path}",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    shown = result["modes"]
    print(f"run {result['run']}: accuracy with k labels per class, mean ± std over {args.seeds} seed(s), "
          f"selection {result['select']}" + ("" if result["class_balanced"] else " (not class-balanced)"))
    print(f"{'k':>5s}  " + "  ".join(f"{m:>15s}" for m in shown))
    for row in result["label_efficiency"]:
        print(f"{row['per_class']:5d}  " + "  ".join(f"{row[m]:8.4f} ± {row['std'][m]:.3f}" .rjust(15)
                                                     for m in shown))
    return 0


def cmd_eval(args) -> int:
    from . import evaluate
    from .workbench import labelled_embeddings
    project = _open(args)
    try:
        if args.labels_per_class is not None:
            return _eval_label_efficiency(args, project)
        if args.select or args.select_csv or args.modes:
            raise UserError("--select, --select-csv and --modes go with --labels-per-class")
        run = project.run(args.run)
        emb, data, ids, feats = labelled_embeddings(project, run)
        split = data.split[ids]
        labels = data.labels[ids]
        tr, te = (split == 0) & (labels >= 0), (split == 1) & (labels >= 0)    # -1: no label
        metrics = evaluate.evaluate_features(feats[tr], labels[tr], feats[te], labels[te], k=args.k)
        if args.store:
            last = max((m.step for m in project.metrics(run.id)), default=0)
            project.log_metrics(run.id, [(last, float(emb.epoch or 0), f"eval_{k}", v)
                                         for k, v in metrics.items()])
        if args.json:
            print(json.dumps({"run": run.id, "embedding": emb.id, **metrics}, indent=2))
        else:
            print(f"run {run.id}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        return 0
    finally:
        project.close()


def cmd_embed(args) -> int:
    from .tasks.feed import ImageFeed
    from .train import embed_images
    from .workbench import load_dataset, load_trained_method
    project = _open(args)
    try:
        method, device = load_trained_method(project, args.run)
        dataset_id = _resolve_dataset(project, args.dataset) if args.dataset else project.run(args.run).dataset_id
        data = load_dataset(project, dataset_id)
        feats = embed_images(method, ImageFeed(data.images, device), device)
        split = f"dataset:{dataset_id}"
        emb_id = project.save_embeddings(args.run, split, np.arange(len(feats)), feats)
        print(f"embedding set {emb_id}: {feats.shape[0]} x {feats.shape[1]} from run {args.run} on dataset {dataset_id}")
        return 0
    finally:
        project.close()


def cmd_map(args) -> int:
    from .workbench import compute_map
    project = _open(args)
    try:
        emb_id = args.embedding or _final_embedding_id(project, args.run)
        t0 = time.perf_counter()
        params = {} if args.kind == "pca" else {"n_neighbors": args.neighbors, "min_dist": args.min_dist}
        if args.kind == "umap":
            print("computing UMAP (the first one in a process compiles for up to a minute)…", file=sys.stderr)
        proj_id = compute_map(project, emb_id, args.kind, **params)
        print(f"projection {proj_id}: {args.kind} of embedding set {emb_id} in {time.perf_counter() - t0:.1f} s")
        return 0
    finally:
        project.close()


def cmd_export(args) -> int:
    from .workbench import export_embeddings, export_weights
    out = Path(args.out)
    # Write only where the user's folder already is: a typo must not leave new folders behind.
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: there is no folder {out.parent} (create it first)")
    project = _open(args, read_only=True)
    try:
        if args.format in ("word2vec", "word2vec-bin", "weights", "encoder"):
            if not args.run:
                raise UserError(f"--format {args.format} needs --run")
            run = _run_to_use(project, args.run)
            if args.format == "encoder":
                from .workbench import export_encoder
                for path in export_encoder(project, run.id, out):
                    print(f"wrote {path}")
                return 0
            if args.format == "weights":
                path = export_weights(project, run.id, out)
            else:
                from .workbench import export_word_vectors
                path = export_word_vectors(project, run.id, out, binary=args.format == "word2vec-bin")
            print(f"wrote {path}")
            return 0
        emb_id = args.embedding or _final_embedding_id(project, args.run)
        for path in export_embeddings(project, emb_id, out, args.format):
            print(f"wrote {path}")
        return 0
    finally:
        project.close()


def cmd_words(args) -> int:
    """Queries on a text run's word vectors: neighbours, analogies, odd-one-out."""
    from .text_eval import SCORE_MODES
    from .workbench import run_word_vectors
    project = _open(args, read_only=True)
    try:
        wv = run_word_vectors(project, args.run)
        query = " ".join(args.query).strip()
        scores = args.scores
        try:
            if args.odd:
                words = query.replace(",", " ").split()
                result = {"odd_one_out": wv.odd_one_out(words, scores=scores)}
                text = result["odd_one_out"]
            elif "::" in query:
                left, right = (p.strip() for p in query.split("::", 1))
                a, b = (w.strip() for w in left.split(":"))
                c = right.split(":")[0].strip()
                rows = wv.analogy(a, b, c, k=args.k, method=args.method, scores=scores)
                result = {"analogy": [a, b, c], "answers": rows}
                text = "\n".join(f"{w:20s} {s:.4f}" for w, s in rows)
            else:
                rows = (wv.neighbours(query, args.k, scores=scores) if " " not in query
                        else wv.phrase_neighbours(query, args.k, scores=scores))
                result = {"query": query, "neighbours": rows}
                text = "\n".join(f"{w:20s} {s:.4f}" for w, s in rows)
        except KeyError as e:
            raise UserError(f"run {args.run}: {e.args[0]}") from None
        except ValueError as e:
            raise UserError(f"{e} (analogies are written a:b::c:?)") from None
        result["scores"] = scores
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(text)
            if not args.odd:        # what the numbers are, on stderr: stdout stays one answer a line
                print(f"(scores: {SCORE_MODES[scores][0]}; two random words score "
                      f"{wv.random_pair_score(scores):.2f} on average)", file=sys.stderr)
        return 0
    finally:
        project.close()


def cmd_search(args) -> int:
    from . import zero_shot
    # Only a stored zero-shot accuracy writes; a text search just reads.
    project = _open(args, read_only=not args.zero_shot or args.no_store)
    try:
        dataset = _resolve_dataset(project, args.dataset) if args.dataset else None
        if args.zero_shot:
            res = zero_shot.zero_shot(project, args.run, dataset, args.template or None,
                                      args.attribute, store=not args.no_store)
            if args.json:
                print(json.dumps(res, indent=2))
            else:
                print(f"run {args.run}: zero-shot accuracy on {res['dataset']} ({res['attribute']}, "
                      f"{res['n']} images) = {res['accuracy']:.4f}")
                for name, acc in res["per_class"].items():
                    print(f"  {name:20s} {acc:.4f}")
            return 0
        if not args.text:
            raise UserError("search needs --text \"a query\" or --zero-shot")
        hits = zero_shot.search_images(project, args.run, args.text, args.k, dataset)
        if args.json:
            print(json.dumps(hits, indent=2))
        else:
            for rank, h in enumerate(hits, 1):
                caption = h["caption"].replace("\n", " / ")
                print(f"{rank:3d}  {h['score']:.4f}  #{h['index']:<6d} {h['name']}  {caption}")
        return 0
    finally:
        project.close()


# --------------------------------------------------------------------------------------
# Parser


def cmd_methods(args) -> int:
    from .methods import METHODS
    for name, m in METHODS.items():
        print(f"{name:22s} {m.card.title} ({m.card.family}): {m.card.learns}")
        if args.verbose:
            print(f"{'':22s} loss: {m.card.loss}\n{'':22s} paper: {m.card.paper}")
            print(f"{'':22s} trains on {m.modality}" + "".join(f"; {c}" for c in m.capabilities()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # No torch import here: `--help` must answer at once.
    p = argparse.ArgumentParser(prog="main.py", description="Pretext: a workbench for self-supervised "
                                "learning. With no command, opens the desktop app.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="command")

    def with_project(sp):
        sp.add_argument("--project", "-p", required=True, help="the .pretext project file")
        return sp

    sp = sub.add_parser("new", help="create a project file (with the built-in demo datasets)")
    sp.add_argument("path")
    sp.add_argument("--empty", action="store_true", help="no demo datasets")
    sp.set_defaults(func=cmd_new)

    ds = sub.add_parser("datasets", help="list, add or describe datasets",
                        description="list the project's datasets (default), add one, or show the kinds")
    ds.add_argument("--project", "-p", help="the .pretext project file")
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(func=cmd_datasets, action="list")
    ds_sub = ds.add_subparsers(dest="action", metavar="action")
    sp = ds_sub.add_parser("list", help="the project's datasets")
    sp.add_argument("--project", "-p", dest="project_sub")
    sp.add_argument("--json", action="store_true", dest="json_sub")
    sp = ds_sub.add_parser("add", help="import a dataset: add KIND key=value ... "
                           "(e.g. add image-folder path=photos/ size=32)")
    sp.add_argument("--project", "-p", dest="project_sub")
    sp.add_argument("kind", help="dataset kind (see: datasets kinds)")
    sp.add_argument("params", nargs="*", help="key=value parameters of the kind")
    sp.add_argument("--name", help="name in the project (default: the kind's)")
    ds_sub.add_parser("kinds", help="the kinds of dataset that can be imported")

    sp = sub.add_parser("methods", help="list the methods with what each learns")
    sp.add_argument("--verbose", "-v", action="store_true", help="also the loss and the paper")
    sp.set_defaults(func=cmd_methods)

    sp = with_project(sub.add_parser("train", help="train a method on a dataset"))
    sp.add_argument("--dataset", "-d", required=True, help="dataset name or id (built-ins are added on use)")
    sp.add_argument("--method", "-m", required=True, help="method name (list them: main.py methods)")
    sp.add_argument("--epochs", type=int)
    sp.add_argument("--batch-size", dest="batch_size", type=int)
    sp.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    sp.add_argument("--seed", type=int)
    sp.add_argument("--name", help="a name for the run")
    sp.add_argument("--nproc", type=_positive_int, default=1, help="processes under torchrun (DDP)")
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. lr=0.01 "
                    "temperature=0.1 views.flip_p=0)")
    sp.set_defaults(func=cmd_train)

    sp = with_project(sub.add_parser("resume", help="continue a stopped or failed run from its checkpoint"))
    sp.add_argument("--run", "-r", type=int, required=True)
    sp.add_argument("--nproc", type=_positive_int, default=1)
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_resume)

    sp = with_project(sub.add_parser("delete", help="delete a run with its metrics, checkpoints and "
                                     "embeddings (not while it trains)"))
    sp.add_argument("--run", "-r", type=int, required=True)
    sp.set_defaults(func=cmd_delete)

    sp = with_project(sub.add_parser("worker", help=argparse.SUPPRESS))
    # "--run-id", not "--run": torchrun's parser would take "--run" for its "--run-path".
    sp.add_argument("--run-id", dest="run", type=int, required=True)
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_worker)

    sp = with_project(sub.add_parser("runs", help="list runs with status and final metrics"))
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_runs)

    sp = with_project(sub.add_parser("eval", help="kNN and linear probe on a run's final embeddings"))
    sp.add_argument("--run", "-r", type=int, required=True)
    sp.add_argument("--k", type=int, default=200)
    sp.add_argument("--store", action="store_true", help="store the numbers as metrics (eval_*)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--labels-per-class", dest="labels_per_class", metavar="K,K,...",
                    help="few-label accuracy instead: probe / finetune / scratch / raw with K labels per "
                    "class (e.g. 1,10,100), stored as label_eff/* metrics")
    sp.add_argument("--seeds", type=int, default=5, help="labelled subsets per count (with --labels-per-class)")
    sp.add_argument("--select", choices=("random", "kcenter", "typiclust"),
                    help="how the labelled items are chosen (kcenter, typiclust: from the embedding, "
                    "not class-balanced)")
    sp.add_argument("--modes", help="comma-separated subset of probe,finetune,scratch,raw (default: all)")
    sp.add_argument("--select-csv", dest="select_csv", metavar="FILE",
                    help="write the file names of the selected items (largest count, seed 0) as CSV")
    sp.set_defaults(func=cmd_eval)

    sp = with_project(sub.add_parser("embed", help="embed a dataset with a run's trained encoder"))
    sp.add_argument("--run", "-r", type=int, required=True)
    sp.add_argument("--dataset", "-d", help="default: the run's own dataset")
    sp.set_defaults(func=cmd_embed)

    sp = with_project(sub.add_parser("map", help="2-D map (UMAP or PCA) of a run's embeddings"))
    sp.add_argument("--run", "-r", type=int)
    sp.add_argument("--embedding", type=int, help="an embedding set id instead of the run's final one")
    sp.add_argument("--kind", choices=("umap", "pca"), default="umap")
    sp.add_argument("--neighbors", type=_number_at_least(2), default=15, help="UMAP's n_neighbors (at least 2)")
    sp.add_argument("--min-dist", dest="min_dist", type=_number_at_least(0.0, float), default=0.1,
                    help="UMAP's min_dist (0 or more)")
    sp.set_defaults(func=cmd_map)

    sp = with_project(sub.add_parser("search", help="a CLIP run: text → top-k images, or zero-shot accuracy"))
    sp.add_argument("--run", "-r", type=int, required=True)
    sp.add_argument("--text", "-t", help="the query, e.g. \"a small red circle\"")
    sp.add_argument("-k", type=int, default=10, help="how many images")
    sp.add_argument("--dataset", "-d", help="search or classify this dataset (default: the run's)")
    sp.add_argument("--zero-shot", dest="zero_shot", action="store_true",
                    help="classify the dataset's test images by their class names")
    sp.add_argument("--attribute", help="classify by this attribute (e.g. colour) instead of the labels")
    sp.add_argument("--template", action="append", help="a prompt with {} for the class name "
                    "(repeat to average several; default: the run's)")
    sp.add_argument("--no-store", dest="no_store", action="store_true", help="do not store the accuracy")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_search)

    sp = with_project(sub.add_parser("export", help="embeddings (npy, csv, TensorBoard tsv), weights or "
                                     "the encoder alone"))
    sp.add_argument("--run", "-r", type=int)
    sp.add_argument("--embedding", type=int)
    sp.add_argument("--format", "-f", choices=("npy", "csv", "tsv", "weights", "encoder", "word2vec",
                                               "word2vec-bin"),
                    default="npy", help="encoder: an image run's encoder network alone (safetensors + JSON; "
                    "a ResNet in torchvision's layout), --out a .safetensors file or a folder; "
                    "word2vec / word2vec-bin: a text run's vectors in the word2vec text or binary format")
    sp.add_argument("--out", "-o", required=True)
    sp.set_defaults(func=cmd_export)

    sp = with_project(sub.add_parser("words", help="word neighbours, analogies (a:b::c:?) and odd-one-out "
                                     "over a text run"))
    sp.add_argument("--run", "-r", type=int, required=True)
    sp.add_argument("query", nargs="+", help="a word, a phrase, an analogy man:king::woman:? or, with "
                    "--odd, a list of words")
    sp.add_argument("--odd", action="store_true", help="which word does not belong with the others")
    sp.add_argument("-k", type=int, default=10, help="answers to show")
    sp.add_argument("--method", choices=("add", "mul"), default="add", help="analogies: 3CosAdd or 3CosMul")
    sp.add_argument("--scores", choices=("raw", "centred", "abtt"), default="centred",
                    help="cosines of the vectors as trained (raw), after subtracting their mean (centred, "
                    "the default: raw cosines of a small corpus are all near 1) or also without the top "
                    "principal direction (abtt, all-but-the-top)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_words)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at the first option, so key=value
    # items after an option (train ... --epochs 2 lr=0.1) arrive here: put them back.
    target = "overrides" if hasattr(args, "overrides") else "params" if hasattr(args, "params") else None
    if extra and target and all("=" in e and not e.startswith("-") for e in extra):
        setattr(args, target, list(getattr(args, target) or []) + extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    if args.command in ("map", "export") and not (args.run or args.embedding):
        parser.error(f"{args.command} needs --run or --embedding")
    from .config import ConfigError
    from .data import DataError
    from .store import ProjectError
    try:
        return args.func(args)
    except KeyboardInterrupt:
        # A Ctrl+C outside a run's own handling (a second one while the process closes
        # after a clean stop, or during a command that trains nothing): no traceback.
        print("\ninterrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except (UserError, ProjectError, DataError, ConfigError, ValueError, RuntimeError, OSError) as exc:
        if args.debug:
            raise
        # The message alone, on one line: a class name (ValueError:, JSONDecodeError:)
        # tells a user nothing; --debug shows the traceback.
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, ConfigError):
            message = f"bad setting: {message}"
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE

if __name__ == "__main__":
    sys.exit(main())
