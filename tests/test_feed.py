"""Streamed training batches (issue 13): the same batches as in memory, a cache that fills in
the first epoch, and baselines that wait for the end of the run on big data."""
import numpy as np
import pytest
import torch

from engine import workbench
from engine.data import ImageData
from engine.data.encoded import EncodedImages, MemoryItems, encode_array
from engine.loop import make_task
from engine.tasks import images as image_task
from engine.tasks.feed import ImageFeed
from engine.train import Evaluation, Finished, Step, default_run_config


def _encoded(data: ImageData) -> ImageData:
    """The same data set with its images kept as PNG bytes, decoded on demand."""
    from dataclasses import replace
    items = MemoryItems([encode_array(a) for a in data.images])
    return replace(data, images=EncodedImages(items, data.height, data.channels))


@pytest.fixture
def digits(project):
    return workbench.load_dataset(project, "digits")


def test_feed_streams_then_serves_from_its_cache(digits):
    enc = _encoded(digits)
    feed = ImageFeed(enc.images, torch.device("cpu"), cache_mb=64, workers=2)
    assert feed.streamed and not feed.complete
    batches = [np.arange(i, min(digits.n, i + 300)) for i in range(0, digits.n, 300)]
    streamed = list(feed.stream(batches))
    assert feed.complete                                     # one pass filled the cache
    want = torch.from_numpy(digits.images).permute(0, 3, 1, 2)
    for b, x in zip(batches, streamed):
        assert torch.equal(x, want[b])
    assert torch.equal(feed.take([5, 3]), want[[5, 3]])
    nocache = ImageFeed(enc.images, torch.device("cpu"), cache_mb=0, workers=2)
    assert nocache.cache is None
    assert torch.equal(torch.cat(list(nocache.chunks(512))), want) and not nocache.complete


def test_streamed_training_takes_the_same_steps_as_in_memory(digits):
    """Same seed, same batches, same views: the losses of a streamed run (two decoding
    worker processes, no cache) equal those of the decoded set in memory."""
    losses = {}
    for name, data, extra in (("memory", digits, {}), ("streamed", _encoded(digits), {"cache_mb": "0"})):
        cfg = default_run_config("simclr", data, {"width": "4", "batch_size": "128", **extra})
        task = make_task(cfg, data)
        task.setup(None)
        batches = task.batches(0)
        losses[name] = [task.step(s, batches[s], task.learning_rate(s))[0] for s in range(3)]
        task.close()
    assert losses["streamed"] == pytest.approx(losses["memory"], rel=1e-6)


def test_big_data_baselines_come_after_the_run_with_the_same_values(project, monkeypatch):
    """No baseline before the first step on big data: they follow the final evaluation,
    computed with the untrained weights kept aside, and equal what an early one gives."""
    overrides = {"epochs": "1", "batch_size": "256", "width": "4"}
    early = workbench.create_run(project, "digits", "simclr", overrides)
    list(workbench.run_training(project, early))
    monkeypatch.setattr(image_task, "EARLY_BASELINE_BYTES", 0)
    monkeypatch.setattr(image_task, "earlier_raw_baselines", lambda *a: {})   # computed afresh
    late = workbench.create_run(project, "digits", "simclr", overrides)
    events = list(workbench.run_training(project, late))
    first_step = next(i for i, e in enumerate(events) if isinstance(e, Step))
    assert not any(isinstance(e, Evaluation) and e.step == 0 for e in events[:first_step])
    baseline = [e for e in events[first_step:] if isinstance(e, Evaluation) and e.step == 0]
    assert len(baseline) == 1 and isinstance(events[-1], Finished)
    metrics = baseline[0].metrics
    want = {k: v for k, v in project.latest_metrics(early).items() if k.startswith(("raw_", "random_"))}
    assert set(want) == {"raw_knn", "raw_linear", "random_knn", "random_linear"}
    assert {k: metrics[k] for k in want} == pytest.approx(want)
    stored = {k: [m.step for m in project.metrics(late, k)] for k in want}
    assert stored == {k: [0] for k in want}
    # The trained network is back in place after the baseline: the final embeddings are its own.
    assert project.latest_metrics(late)["knn"] == project.latest_metrics(early)["knn"]
