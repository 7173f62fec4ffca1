"""Bad input everywhere a user can hand it over (issue 8): one clear message, exit status 2, no
traceback, nothing saved lost; and the run cap / duplicate-launch lock seen from the security side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from ssn3d.config import Config, ConfigError, config_from_dict, load_config
from ssn3d.data.datasets import build_dataset
from ssn3d.data.datasets.base import DatasetError
from ssn3d.data.images import BadImageError, load_image
from ssn3d.engine.checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint, save_checkpoint
from ssn3d.models import build_model
from ssn3d.runs.folder import RunBusyError
from ssn3d.runs.launch import TooManyRunsError, launch_run
from ssn3d.runs.status import refresh_status
from ssn3d.serving.workspace import Workspace

SMALL = dict(arch="ssn3d", strategy="unsupervised", backbone="none", in_channels=3, num_parts=3, window=3, attn_channels=8,
             part_channels=8, embed_dim=16, weights="none")  # fmt: skip


def one_sentence(message: str) -> bool:
    return "\n" not in message.strip() and message.rstrip().endswith(".") and "Traceback" not in message


class Evil:
    """A pickle payload: unpickling it would run a command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind of bad input, as real files."""
    d = tmp_path_factory.mktemp("bad")
    (d / "a_file").write_text("I am not a folder")
    (d / "empty" / "train" / "0001" / "c1_t0").mkdir(parents=True)
    good = d / "ds" / "train"
    for pid in ("0001", "0002"):
        (good / pid / "c1_t0").mkdir(parents=True)
        Image.new("RGB", (32, 64), (9, 9, 9)).save(good / pid / "c1_t0" / "f0.jpg")
    (good / "0002" / "c1_t0" / "f1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "wrong_type.yaml").write_text("model:\n  num_parts: nine\n")
    a = config_from_dict({"model": SMALL})
    b = config_from_dict({"model": {**SMALL, "num_parts": 4}})
    model_a = build_model(a.model, load_weights=False)
    model_b = build_model(b.model, load_weights=False)
    meta = {"format": FORMAT, "version": VERSION, "epoch": 1}
    save_checkpoint(d / "ok.pt", {**meta, "model": model_a.state_dict(), "config": a.to_dict()})
    save_checkpoint(d / "other_arch.pt", {**meta, "model": model_b.state_dict(), "config": a.to_dict()})
    (d / "truncated.pt").write_bytes((d / "ok.pt").read_bytes()[:2000])
    torch.save({**meta, "model": Evil(d / "PWNED"), "config": {}}, d / "evil.pt")
    (d / "deep_ds").mkdir()
    (d / "deep_ds" / "keypoints.json").write_text("[" * 100000)
    (d / "defaults.yaml").write_text("{}\n")
    (d / "malformed.yaml").write_text("model: [unclosed\n")
    for name, generator in (("walkers_like", "ssn3d.synth.walkers"), ("generated", "ssn3d.synth.walkers")):
        (d / name / "train").mkdir(parents=True)
        (d / name / "dataset.json").write_text(json.dumps({"generator": generator, "layout": "folder"}))
    return d


# --------------------------------------------------------------------------- the command line

CLI_CASES = {
    "dataset root is a file": (["datasets", "info", "folder", "{d}/a_file"], "is not a directory"),
    "dataset root missing": (["datasets", "info", "folder", "{d}/nowhere"], "is not a directory"),
    "empty tracklet": (["datasets", "info", "folder", "{d}/empty"], "holds no frames"),
    "config of wrong type": (
        ["train", "{d}/wrong_type.yaml"],
        "model.num_parts='nine' must be a whole number",
    ),
    "checkpoint of another architecture": (["evaluate", "{d}/other_arch.pt"], "another architecture"),
    "checkpoint with a pickle payload": (
        ["export", "{d}/evil.pt", "--onnx", "{d}/x.onnx"],
        "was not executed",
    ),
    "deeply nested label file": (
        ["synth", "labels", "{d}/deep_ds", "--to", "{d}/l.json"],
        "nested too deeply",
    ),
    "export --frames -3": (
        ["export", "{d}/ok.pt", "--onnx", "{d}/y.onnx", "--frames", "-3"],
        "not a clip length",
    ),
    "export --onnx DIR": (["export", "{d}/ok.pt", "--onnx", "{d}"], "is a folder"),
    "evaluate --out DIR": (["evaluate", "{d}/ok.pt", "--out", "{d}"], "is a folder"),
    "evaluate --device tpu": (["evaluate", "{d}/ok.pt", "--device", "tpu"], "is not a device"),
    "evaluate --topk -1": (["evaluate", "{d}/ok.pt", "--topk", "-1"], "keeps no gallery items"),
    "study random --size 0": (["study", "random", "--quick", "--size", "0"], "--size 0 must be"),
    "study random --batch 0": (["study", "random", "--quick", "--batch", "0"], "--batch 0 must be"),
    "study random --out FILE": (["study", "random", "--quick", "--out", "{d}/a_file"], "is a file"),
    "study pedestrians --data WALKERS": (
        ["study", "pedestrians", "--quick", "--data", "{d}/walkers_like", "--out", "{d}/ped"],
        "holds no Pedestrian-128 crops",
    ),
    "runs status of no run": (["runs", "status", "{d}/nowhere"], "does not exist"),
    "runs cancel of no run": (["runs", "cancel", "{d}/nowhere"], "does not exist"),
    "runs launch of malformed YAML": (
        ["runs", "--root", "{d}/runs", "launch", "{d}/malformed.yaml"],
        "not valid YAML",
    ),
    "train.seed=-1": (["train", "{d}/defaults.yaml", "train.seed=-1"], "train.seed=-1 must be"),
    "train.lr_gamma<0": (["train", "{d}/defaults.yaml", "train.lr_gamma=-0.5"], "must lie in (0, 1]"),
    "synth into a generated dataset": (
        ["synth", "pedestrians", "{d}/generated", "--ids", "2"],
        "pass --force",
    ),
}


@pytest.fixture(scope="module")
def cli_results(bad) -> dict[str, subprocess.CompletedProcess]:
    """Run every case as a real ``python -m ssn3d`` process, all at once (2 cores, torch imports)."""
    env = {**os.environ, "SSN3D_HOME": str(bad)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "ssn3d", *(a.format(d=bad) for a in args)],
            cwd=bad,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _) in CLI_CASES.items()
    }
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=240)
        out[name] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_gives_one_clear_error_and_exit_status_2(cli_results, bad, case):
    result = cli_results[case]
    message = result.stderr.strip()
    assert result.returncode == 2, message
    assert message.startswith("error: ") and one_sentence(message), message
    assert CLI_CASES[case][1] in message
    assert not (bad / "PWNED").exists()  # the pickle payload never ran
    assert not (bad / "runs").exists()  # a malformed config launched nothing
    assert (bad / "generated" / "train").is_dir() and not (bad / "generated" / "query").exists()


# --------------------------------------------------------------------------- the library


def test_dataset_roots_that_are_files_or_hold_empty_tracklets(bad):
    for root, words in ((bad / "a_file", "is not a directory"), (bad / "empty", "holds no frames")):
        with pytest.raises(DatasetError) as err:
            build_dataset("folder", root)
        assert words in str(err.value) and one_sentence(str(err.value))


def test_frames_that_do_not_decode(bad):
    from ssn3d.data.video import read_frames

    frame = bad / "ds" / "train" / "0002" / "c1_t0" / "f1.jpg"
    with pytest.raises(BadImageError) as err:
        load_image(frame)
    assert str(frame) in str(err.value) and one_sentence(str(err.value))
    paths = [str(frame.with_name("f0.jpg")), str(frame)]
    with pytest.raises(DatasetError) as err:
        read_frames(paths, [0, 1], (32, 64), skip_corrupt=False)
    assert "cannot be decoded" in str(err.value) and "skip_corrupt" in str(err.value)
    images, _, _ = read_frames(paths, [0, 1], (32, 64), skip_corrupt=True)  # training goes on without it
    assert len(images) == 2


def test_checkpoints_of_another_architecture_or_damaged(bad):
    model, cfg, _ = load_checkpoint(bad / "ok.pt")
    assert cfg.model.num_parts == 3 and not model.training
    cases = [
        (lambda: load_checkpoint(bad / "other_arch.pt"), "another architecture"),
        (lambda: load_checkpoint(bad / "ok.pt", expect=config_from_dict({"model": {**SMALL, "num_parts": 9}}).model),
         "model.num_parts: 3 != 9"),
        (lambda: load_checkpoint(bad / "truncated.pt"), "cannot be read"),
        (lambda: load_checkpoint(bad / "evil.pt"), "was not executed"),
        (lambda: load_checkpoint(bad / "wrong_type.yaml"), "wrong_type.yaml"),  # not a torch file at all
    ]  # fmt: skip
    for call, words in cases:
        with pytest.raises(CheckpointError) as err:
            call()
        assert words in str(err.value) and str(err.value).count("\n") == 0
    assert not (bad / "PWNED").exists()


@pytest.mark.parametrize(
    "text, words",
    [
        ("model:\n  window: 4\n", "must be odd"),
        ("model:\n  strategy: magic\n", "choose one of"),
        ("train:\n  lr: -1\n", "must be positive"),
        ("train:\n  lr: .inf\n", "finite number"),
        ("train:\n  epochs: 1.5\n", "whole number"),
        ("data:\n  options: [1]\n", "must be a mapping"),
        ("model: 3\n", "model must be a mapping"),
        ("modle:\n  arch: ssn3d\n", "unknown key modle"),
        ("train:\n  device: tpu\n", "choose auto, cpu, cuda"),
        ("model:\n  arch: !!python/object/apply:os.system ['true']\n", "is not valid YAML"),
        ("model: [1, 2\n", "is not valid YAML at line 2"),
        ("- model\n- train\n", "must hold a mapping of sections"),
    ],
)
def test_configs_with_wrong_types_or_values(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_workspace_refuses_a_bad_run_cap():
    for raw in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="SSN3D_MAX_RUNS") as err:
            Workspace.from_env({"SSN3D_MAX_RUNS": raw})
        assert one_sentence(str(err.value))
    assert Workspace.from_env({"SSN3D_MAX_RUNS": "1"}).max_runs == 1


# --------------------------------------------------------------------------- runs: the cap and the lock


def _fake_running(run_dir: Path, proc: subprocess.Popen) -> None:
    """A run folder whose status says "running" for a live process (no training needed)."""
    from ssn3d.runs.status import write_status

    run_dir.mkdir(parents=True)
    now = time.time()
    write_status(
        run_dir, {"state": "running", "pid": proc.pid, "pgid": None, "started": now, "heartbeat": now}
    )


def test_the_run_cap_refuses_a_second_run_and_a_running_run_cannot_be_launched_again(tmp_path):
    ws = Workspace.from_env({"SSN3D_HOME": str(tmp_path), "SSN3D_MAX_RUNS": "1"})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _fake_running(ws.runs / "first", sleeper)
        with pytest.raises(TooManyRunsError, match="allows 1 at once") as err:
            launch_run(ws.runs / "second", config=Config(), workspace=ws)
        assert one_sentence(str(err.value)) and not (ws.runs / "second").exists()
        with pytest.raises(RunBusyError, match="already running"):
            launch_run(ws.runs / "first", config=Config(), workspace=ws, max_runs=5)
        assert refresh_status(ws.runs / "first")["state"] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert refresh_status(ws.runs / "first")["state"] == "failed"  # a dead process no longer holds a slot


def test_a_double_click_starts_one_process_and_the_run_folder_holds_no_secret(tmp_path, monkeypatch):
    """Two launches of the same run at the same moment: one starts, one is refused; the process fails
    fast (its dataset root is a file), and the password in the server's environment is nowhere in the run."""
    secret = "hunter2-correct-horse"
    monkeypatch.setenv("SSN3D_PASSWORD", secret)
    (tmp_path / "not_a_dir").write_text("x")
    ws = Workspace.from_env({"SSN3D_HOME": str(tmp_path), "SSN3D_MAX_RUNS": "4"})
    cfg = config_from_dict(
        {"model": SMALL, "data": {"root": str(tmp_path / "not_a_dir")}, "train": {"device": "cpu"}}
    )
    run, barrier, outcomes = ws.runs / "double", threading.Barrier(2), []

    def click() -> None:
        barrier.wait()
        try:
            outcomes.append(launch_run(run, config=cfg, workspace=ws)["pid"])
        except RunBusyError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    pids = [o for o in outcomes if isinstance(o, int)]
    assert len(pids) == 1 and sum(isinstance(o, RunBusyError) for o in outcomes) == 1
    deadline = time.time() + 120
    while refresh_status(run)["state"] in ("starting", "running") and time.time() < deadline:
        time.sleep(0.5)
    status = refresh_status(run)
    assert status["state"] == "failed"
    written = "".join(p.read_text(errors="replace") for p in run.rglob("*") if p.is_file())
    assert "is not a directory" in written  # the log holds the failure...
    assert secret not in written  # ...and never the password


def test_a_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00model")
    with pytest.raises(ConfigError, match="is not UTF-8 text") as err:
        load_config(path)
    assert one_sentence(str(err.value))
