"""Fault injection with real processes: a labeling process and a training run under random SIGKILLs and
file-size limits, for a bounded, seeded number of rounds. Afterwards every acknowledged label and every
checkpointed step must still be there and readable, and the run must resume.

Run with ``-s`` to see the table of faults and outcomes (recorded in benchmarks/RESULTS-security.md).
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny import TRAINING, write_tiny_config

from ssn3d.engine.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from ssn3d.labels.store import AnnotationStore
from ssn3d.runs.folder import RunPaths
from ssn3d.runs.metrics import read_metrics

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

LABELER = """
import resource, signal, sys
import ssn3d.labels.store as ann
ann.JOURNAL_LIMIT = 16  # fold often, so that kills and limits also land on folds
path, start, count, limit, ignore = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
# Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk; with the
# default action the kernel kills the writer at the limit, in the middle of its record
signal.signal(signal.SIGXFSZ, signal.SIG_IGN if ignore == "1" else signal.SIG_DFL)
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
store = ann.AnnotationStore(path)
for i in range(start, start + count):
    points = [[(i * 7 + j) % 500, (i * 3 + 2 * j) % 300, 2] for j in range(9)]
    try:
        store.set(f"w{i:05d}.jpg", points)
    except ann.AnnotationError:
        print("refused", i, flush=True)
        continue
    print("ok", i, flush=True)
"""


def points(i: int) -> np.ndarray:
    return np.array([[(i * 7 + j) % 500, (i * 3 + 2 * j) % 300, 2] for j in range(9)], dtype=np.float32)


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def limited(nbytes: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child before exec: the limit survives exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


# `python -m ssn3d` with SIGXFSZ's default action restored (Python ignores it): killed at the limit
KILLED_AT_LIMIT = (
    "import runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
    "sys.argv = ['ssn3d', *sys.argv[1:]]; runpy.run_module('ssn3d', run_name='__main__')"
)


def print_table(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    for row in rows:
        print(" | ".join(str(c) for c in row))


def test_every_acknowledged_label_survives_kills_and_size_limits(tmp_path: Path) -> None:
    rng = random.Random(11)
    path = tmp_path / "ds.json"
    acknowledged: set[int] = set()
    outcomes: Counter = Counter()
    start = 0
    for _ in range(9):
        fault = rng.choice(["sigkill", "fsize-sigxfsz", "fsize-efbig"])
        limit = 0
        if fault != "sigkill":
            limit = max(file_size(path), file_size(path.with_name("ds.json.journal"))) + rng.randint(
                100, 3000
            )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LABELER,
                str(path),
                str(start),
                "400",
                str(limit),
                str(int(fault == "fsize-efbig")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=ENV,
        )
        if fault == "sigkill":
            time.sleep(rng.uniform(0.3, 1.2))  # the interpreter start takes most of the first 0.3 s
            proc.kill()
        out, _ = proc.communicate(timeout=120)
        acked = [int(line.split()[1]) for line in out.splitlines() if line.startswith("ok ")]
        refused = sum(line.startswith("refused") for line in out.splitlines())
        acknowledged.update(acked)
        start += 400

        reader = AnnotationStore(path)
        frames = reader.frames()  # a fresh reader meets whatever the fault left, and repairs it
        missing = [i for i in acknowledged if f"w{i:05d}.jpg" not in frames]
        assert not missing, f"{fault}: acknowledged labels lost: {missing[:5]}"
        for i in acknowledged:
            np.testing.assert_array_equal(frames[f"w{i:05d}.jpg"], points(i))
        outcomes[fault, "rounds"] += 1
        outcomes[fault, "acknowledged"] += len(acked)
        outcomes[fault, "refused"] += refused
        outcomes[fault, "killed"] += proc.returncode < 0
        outcomes[fault, "bytes repaired"] += reader.repaired_bytes
    assert (
        outcomes["sigkill", "rounds"]
        and outcomes["fsize-sigxfsz", "rounds"]
        and outcomes["fsize-efbig", "rounds"]
    )
    store = AnnotationStore(path)
    store.set("final.jpg", points(0))  # still writable after everything
    assert len(store.frames()) >= len(acknowledged) + 1
    kinds = ("sigkill", "fsize-sigxfsz", "fsize-efbig")
    keys = ("rounds", "killed", "acknowledged", "refused", "bytes repaired")
    print_table("labels: fault | " + " | ".join(keys), [(k, *(outcomes[k, c] for c in keys)) for k in kinds])


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(RunPaths(run).metrics).records if r.get("kind") == "train"]


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(read_checkpoint(path)["step"])
    except (CheckpointError, FileNotFoundError):
        return None


def test_every_checkpointed_step_survives_kills_and_size_limits_and_the_run_resumes(
    tiny_walkers: Path, tmp_path: Path
) -> None:
    rng = random.Random(5)
    config = write_tiny_config(
        tmp_path / "tiny.yaml",
        TRAINING,
        {
            "model": {"strategy": "unsupervised"},
            "train": {"epochs": 10000, "iters_per_epoch": 2, "ckpt_every": 1},
            "data": {"root": str(tiny_walkers)},
        },
    )
    run = tmp_path / "run"
    paths = RunPaths(run)
    train = ["train", "--no-progress"]
    done = 0  # the highest step seen in a complete checkpoint
    rows = []
    later = ["fsize-sigxfsz", "fsize-efbig", "sigkill"]
    rng.shuffle(later)
    for round_, fault in enumerate(["sigkill", *later]):  # the first round makes the first checkpoints
        args = train + ([str(config), "--run-dir", str(run)] if round_ == 0 else ["--resume", str(run)])
        python = (
            [sys.executable, "-c", KILLED_AT_LIMIT]
            if fault == "fsize-sigxfsz"
            else [sys.executable, "-m", "ssn3d"]
        )
        pre = None if fault == "sigkill" else limited(file_size(paths.last) // 2)  # the next save cannot fit
        proc = subprocess.Popen(
            [*python, *args],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pre,  # noqa: PLW1509 - only setrlimit and signal, before exec
            start_new_session=True,
        )
        if fault == "sigkill":
            deadline = time.monotonic() + 120
            while (checkpoint_step(paths.last) or 0) <= done + 1:  # at least one new checkpoint
                assert time.monotonic() < deadline and proc.poll() is None, "no new checkpoint"
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 0.6))  # a kill between or in the middle of checkpoint saves
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
        _, _, meta = load_checkpoint(paths.last)  # whole, verified, with its stale temporaries cleaned
        assert meta["step"] >= done, f"{fault}: checkpointed step {done} lost (now {meta['step']})"
        assert not list(paths.checkpoints.glob(".*.tmp"))
        rows.append((round_, fault, proc.returncode, done, meta["step"]))
        done = meta["step"]
    final = subprocess.run(
        [sys.executable, "-m", "ssn3d", *train, "--resume", str(run), f"train.max_steps={done + 2}"],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert load_checkpoint(paths.last)[2]["step"] == done + 2
    assert train_steps(run) == list(range(1, done + 3))  # no gap, no duplicate
    rows.append(("final", "none", final.returncode, done, done + 2))
    print_table("training: round | fault | exit | checkpointed step before | after", rows)
