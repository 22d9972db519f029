"""Project storage: one SQLite file per project (see DESIGN.md, "Storage").

>>> with Project.open_or_create("demo.pretext") as p:
...     ds = p.add_dataset("digits", "digits", {}, n_items=1797, fingerprint="...")
...     run = p.create_run(ds, "simclr", {"lr": 0.1}, seed=0)
...     p.log_metrics(run, [(0, 0.0, "loss", 4.2)])
"""
from .project import (ArtifactRecord, DatasetRecord, EmbeddingRecord, MetricRow, Project, ProjectError,
                      ProjectionRecord, RESUMABLE_STATUSES, RUN_STATUSES, RunBusyError, RunRecord)
from .schema import APPLICATION_ID, SCHEMA_VERSION
from .tensors import pack_state, unpack_state

__all__ = [
    "APPLICATION_ID", "SCHEMA_VERSION", "RUN_STATUSES", "RESUMABLE_STATUSES", "Project", "ProjectError",
    "RunBusyError", "DatasetRecord", "RunRecord", "MetricRow", "EmbeddingRecord", "ProjectionRecord",
    "ArtifactRecord",
    "pack_state", "unpack_state",
]
