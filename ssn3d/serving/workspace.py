"""Where things live: one workspace folder holds datasets, runs and labels.

Set by the operator through environment variables (the app and the CLI read the same ones):

* ``SSN3D_HOME``: the workspace (default: the current directory).
* ``SSN3D_DATA_ROOTS``: extra folders (``os.pathsep``-separated) where real datasets may be read.
* ``SSN3D_MAX_RUNS``: how many training runs may run at once (default: one per GPU, at least 1).

Inside the workspace: ``data/`` (generated datasets; the demo lives in ``data/demo-walkers``),
``runs/`` (one folder per training run) and ``annotations/`` (label stores, one per dataset).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _default_max_runs() -> int:
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # no usable torch/CUDA: one run at a time
        return 1


@dataclass(frozen=True)
class Workspace:
    home: Path
    extra_roots: tuple[Path, ...] = ()
    max_runs: int = 1

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def annotations(self) -> Path:
        return self.home / "annotations"

    @property
    def demo_dataset(self) -> Path:
        return self.data / "demo-walkers"

    @property
    def allowed_roots(self) -> tuple[Path, ...]:
        """Folders whose contents the app may read as datasets."""
        return (self.data.resolve(), *(p.resolve() for p in self.extra_roots))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Workspace:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("SSN3D_HOME") or ".").expanduser().resolve()
        roots = tuple(
            Path(p).expanduser() for p in env.get("SSN3D_DATA_ROOTS", "").split(os.pathsep) if p.strip()
        )
        raw = env.get("SSN3D_MAX_RUNS", "").strip()
        if raw and (not raw.isdigit() or int(raw) < 1):
            raise ValueError(f"SSN3D_MAX_RUNS={raw!r} must be a whole number >= 1.")
        return cls(home=home, extra_roots=roots, max_runs=int(raw) if raw else _default_max_runs())
