"""What each kind of training brings to the one loop in :mod:`engine.loop`.

A task builds its method, optimiser and data, cuts an epoch into batches, takes
one step, evaluates, and says which embeddings a finished run keeps. The loop
does everything else (resume, pause and stop, logging, checkpoints, the
evaluation schedule, failures, the run's status). See :class:`.base.Task`.
"""
