"""What to label next: unsure frames and jumping tracklets rank first, labeled frames never come back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssn3d.labels.next import frame_entropy, frame_jumps, rank_maps, subsample, suggest_labels
from ssn3d.labels.store import AnnotationStore

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo_model.pt"
N, H, W = 9, 8, 4


def peaked(cells: list[tuple[int, int]], sharpness: float = 0.99) -> np.ndarray:
    """(T, N, H, W) maps, every part of frame t peaked on cell (col, row) = cells[t] (part i one row lower)."""
    maps = np.full((len(cells), N, H, W), (1.0 - sharpness) / (H * W - 1))
    for t, (col, row) in enumerate(cells):
        for i in range(N):
            maps[t, i, (row + i) % H, col] = sharpness
    return maps


def keys(tracklet: str, t: int) -> list[str]:
    return [f"train/{tracklet}/{j:06d}.jpg" for j in range(t)]


def full_label() -> np.ndarray:
    kps = np.zeros((N, 3), np.float32)
    kps[:, :2], kps[:, 2] = 5.0, 2
    return kps


def test_uniform_frame_ranks_above_peaked_frame() -> None:
    uniform = np.full((1, N, H, W), 1.0 / (H * W))
    sharp = peaked([(1, 2)])
    np.testing.assert_allclose(frame_entropy(uniform), [1.0])
    assert frame_entropy(sharp)[0] < 0.1
    s = rank_maps([(keys("0001/c1_t00", 1), sharp), (keys("0002/c1_t00", 1), uniform)], {})
    assert [f.key for f in s.frames] == ["train/0002/c1_t00/000000.jpg", "train/0001/c1_t00/000000.jpg"]
    assert s.frames[0].score > s.frames[1].score
    assert s.next_frame == "train/0002/c1_t00/000000.jpg"
    assert "spread out" in s.frames[0].reason


def test_jumping_tracklet_ranks_above_stable_one() -> None:
    stable = peaked([(1, 2)] * 4)
    jumping = peaked([(0, 0), (3, 0), (0, 0), (3, 0)])  # every part hops 3 cells per frame
    np.testing.assert_allclose(frame_jumps(stable), 0.0)
    np.testing.assert_allclose(frame_jumps(jumping), 3.0)
    np.testing.assert_allclose(frame_entropy(stable), frame_entropy(jumping))  # only the jumps differ
    s = rank_maps([(keys("0001/c1_t00", 4), stable), (keys("0001/c2_t00", 4), jumping)], {})
    assert [t.name for t in s.tracklets] == ["train/0001/c2_t00", "train/0001/c1_t00"]
    assert {f.key.split("/")[2] for f in s.frames[:4]} == {"c2_t00"}
    assert "peaks jump" in s.frames[0].reason


def test_labeled_frames_are_never_suggested_and_full_tracklets_wait() -> None:
    jumping = peaked([(0, 0), (3, 0), (0, 0), (3, 0)])
    stable = peaked([(1, 2)] * 4)
    a, b = keys("0001/c1_t00", 4), keys("0002/c1_t00", 4)
    half = np.zeros((N, 3), np.float32)
    half[0] = (3.0, 4.0, 2)  # one part placed: begun, not done
    labels = {a[0]: full_label(), a[1]: full_label(), b[2]: half}
    s = rank_maps([(a, jumping), (b, stable)], labels)
    suggested = [f.key for f in s.frames]
    assert not set(labels) & set(suggested)
    assert len(suggested) == 8 - 3
    assert {t.name: t.labeled for t in s.tracklets} == {"train/0001/c1_t00": 2, "train/0002/c1_t00": 0}
    assert s.frames[0].key in a  # the jumping tracklet is the least sure...
    assert s.next_frame in b  # ...but it has its two labels, so the next one goes to the other
    assert s.pick(3)[:2] == [k for k in suggested if k in b][:2]
    assert sorted(s.pick(10)) == sorted(suggested)
    labels.update({k: full_label() for k in a + b})
    done = rank_maps([(a, jumping), (b, stable)], labels)
    assert done.frames == [] and done.next_frame is None


def test_a_batch_spreads_over_tracklets_before_taking_a_second_frame() -> None:
    maps = [peaked([(0, 0), (3, 0), (0, 0)]), peaked([(0, 0), (2, 0), (0, 0)]), peaked([(1, 1)] * 3)]
    names = ["0001/c1_t00", "0001/c2_t00", "0002/c1_t00"]
    s = rank_maps([(keys(n, 3), m) for n, m in zip(names, maps)], {})
    first = s.pick(3)
    assert len({k.rsplit("/", 1)[0] for k in first}) == 3
    assert first[0] == s.next_frame == s.frames[0].key


def test_subsample_keeps_ends_and_bounds() -> None:
    assert subsample(5, 16) == [0, 1, 2, 3, 4]
    picks = subsample(100, 8)
    assert len(picks) == 8 and picks[0] == 0 and picks[-1] == 99
    with pytest.raises(ValueError, match="max_frames"):
        subsample(10, 0)


def test_suggest_labels_runs_the_model_on_subsampled_frames(tiny_walkers, tmp_path: Path) -> None:
    from ssn3d.data.datasets import build_dataset
    from ssn3d.engine.inference import FeatureExtractor

    dataset = build_dataset("folder", str(tiny_walkers))
    first = dataset.relpath(dataset.train[0].paths[0])
    store = AnnotationStore(tmp_path / "labels.json")
    store.set(first, full_label())
    calls: list[tuple[int, int]] = []
    s = suggest_labels(
        FeatureExtractor.from_checkpoint(DEMO),
        dataset,
        store,
        max_frames=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    n = len(dataset.train)
    assert calls[-1] == (n, n) and len(calls) == n
    assert len(s.tracklets) == n and len(s.frames) == 3 * n - 1
    ranked = s.ranking()
    assert first not in [k for k, _, _ in ranked] and all(0.0 <= score < 1.0 for _, score, _ in ranked)
    assert s.next_frame.rsplit("/", 1)[0] != first.rsplit("/", 1)[0]  # tracklets without a label first
    with pytest.raises(ValueError, match="split"):
        suggest_labels(FeatureExtractor.from_checkpoint(DEMO), dataset, {}, split="validation")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssn3d", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_ranks_demo_frames_and_skips_labeled_ones(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    made = run_cli("synth", "demo", str(data), "--quiet")
    assert made.returncode == 0, made.stderr
    store = tmp_path / "labels.json"
    labeled = "train/0001/c1_t00/000003.jpg"
    AnnotationStore(store).set(labeled, full_label())
    out = run_cli(
        "labels",
        "next",
        str(DEMO),
        "--data",
        str(data),
        "--labels",
        str(store),
        "--top",
        "5",
        "--threads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert labeled not in out.stdout
    assert lines[-1].startswith("label next: train/")
    bad = run_cli("labels", "next", str(DEMO), "--data", str(tmp_path / "missing"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr
