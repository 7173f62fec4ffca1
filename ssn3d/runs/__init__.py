"""One room for a run folder's life: its files, its status, its writer's lock, its processes.

Nothing here imports torch, so the app lists and launches runs without loading it.

* ``ssn3d.runs.folder``: the layout (``RunPaths``), run names, the owner file, the log tail
* ``ssn3d.runs.status``: what ``status.json`` holds, ``StatusWriter``, ``refresh_status``, ``list_runs``
* ``ssn3d.runs.metrics``: ``metrics.jsonl``: append, incremental read, truncate on resume
* ``ssn3d.runs.lock``: the one writer's ``flock`` (``acquire_run_lock``)
* ``ssn3d.runs.process``: detached processes, liveness, signals
* ``ssn3d.runs.launch``: ``launch_run``, ``resume_run``, ``cancel_run``, the resume checks
* ``ssn3d.runs.prepare``: a new run's config from the app's form, and the checks it would fail at its start

What training saves to continue exactly (optimizer, sampler, RNG) is the training loop's:
``ssn3d.engine.train_state``. Where an evaluation report lives: ``ssn3d.engine.evaluations``.
"""
