"""The training loop in-process: a valid run folder, labels from the store, signals, exact resume, configs."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from tiny import TRAINING, tiny_overrides

from ssn3d.cli.train import split_args
from ssn3d.config import ConfigError, load_config
from ssn3d.data.datasets import build_dataset
from ssn3d.data.synth.labels import noisy_keypoints, pick_labeled_frames
from ssn3d.engine.checkpoint import CheckpointError, load_checkpoint
from ssn3d.engine.session import build_optimizer, channels_last_2d
from ssn3d.engine.train import main, train_one_epoch
from ssn3d.labels.store import AnnotationStore
from ssn3d.models import build_model
from ssn3d.runs.folder import RunPaths
from ssn3d.runs.metrics import read_metrics
from ssn3d.runs.status import read_status
from ssn3d.serving.workspace import Workspace

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
MODEL = tiny_overrides()
TINY = tiny_overrides(TRAINING, {"data": {"seq_len": 4}})


def tiny_cfg(root: Path, *overrides: str):
    return load_config(None, [*TINY, f"data.root={root}", *overrides])


def train_lines(run: Path) -> list[dict]:
    return [r for r in read_metrics(run).records if r["kind"] == "train"]


def test_semi_run_writes_a_valid_run_folder(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace, caplog
) -> None:
    ds = build_dataset("folder", tiny_walkers)
    gt = AnnotationStore(ds.ground_truth_path).frames()
    labels = AnnotationStore(tmp_path / "labels.json")
    labels.update(pick_labeled_frames(gt, ds.train, per_tracklet=2, root=ds.root))
    cfg = tiny_cfg(tiny_walkers, "train.epochs=2", f"data.annotations={labels.path}")
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="ssn3d"):
        assert main(cfg, run) == "done"
    assert f"{2 * len(ds.train)} labeled frames" in caplog.text  # two per training tracklet anchor SSN
    paths = RunPaths(run)
    assert load_config(paths.config) == cfg
    status = read_status(run)
    assert status["state"] == "done" and status["progress"] == 1.0 and status["pid"] == os.getpid()
    assert status["step"] == status["total_steps"] == 4  # 4 training ids / P=2 -> 2 steps per epoch
    lines = train_lines(run)
    assert [r["step"] for r in lines] == [1, 2, 3, 4] and [r["epoch"] for r in lines] == [0, 0, 1, 1]
    for r in lines:
        assert set(r) >= {"loss", "triplet", "ssn", "lr", "clips_per_s"}
        assert r["loss"] == pytest.approx(r["triplet"] + 0.1 * r["ssn"], rel=1e-5)
    evals = [r for r in read_metrics(run).records if r["kind"] == "eval"]
    assert len(evals) == 1 and set(evals[0]) >= {"mAP", "top1", "top5", "top10", "mINP"}
    for ckpt in (paths.last, paths.best):
        raw = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert raw["step"] == 4 and set(raw) >= {"optimizer", "scheduler", "rng", "sampler", "config"}
    _, _, meta = load_checkpoint(paths.best)
    assert meta["best_map"] == pytest.approx(evals[0]["mAP"])


def test_semi_without_labels_says_so_and_trains_unsupervised(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace, caplog
) -> None:
    cfg = tiny_cfg(tiny_walkers, "train.max_steps=1")
    with caplog.at_level(logging.WARNING, logger="ssn3d"):
        assert main(cfg, tmp_path / "run") == "done"
    assert "trains unsupervised" in caplog.text
    assert str(workspace.annotations) in caplog.text  # names the label file it looked for


def test_supervised_without_labels_fails_with_the_reason_in_the_status(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    cfg = tiny_cfg(tiny_walkers, "model.strategy=supervised", "train.max_steps=1")
    with pytest.raises(ConfigError, match="supervised"):
        main(cfg, tmp_path / "run")
    status = read_status(tmp_path / "run")
    assert status["state"] == "failed" and "supervised" in status["error"]
    assert "ConfigError" in (tmp_path / "run" / status["traceback"]).read_text()


@pytest.mark.parametrize(
    "overrides",
    [
        ("model.strategy=supervised",),
        ("model.arch=temporal_pooling",),
        ("model.arch=conv3d",),
        ("model.shared_classifier=false",),
    ],
    ids=["supervised-noisy-labels", "temporal-pooling", "conv3d", "non-shared"],
)
def test_strategies_and_baselines_are_config_choices(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace, overrides: tuple[str, ...]
) -> None:
    gt = AnnotationStore(tiny_walkers / "keypoints.json").frames()  # every frame, train and test
    noisy = AnnotationStore(tmp_path / "detector.json")  # what a pose detector would give (paper: OpenPose)
    noisy.update(noisy_keypoints(gt, sigma_px=1.0, dropout=0.2, seed=0), source="detector")
    cfg = tiny_cfg(tiny_walkers, *overrides, "train.max_steps=2", f"data.annotations={noisy.path}")
    run = tmp_path / "run"
    assert main(cfg, run) == "done"
    assert [r["step"] for r in train_lines(run)] == [1, 2]
    ssn = [r["ssn"] for r in train_lines(run)]
    assert all(v == 0 for v in ssn) == (cfg.model.arch != "ssn3d" or cfg.model.strategy == "supervised")
    evals = [r for r in read_metrics(run).records if r["kind"] == "eval"]
    assert len(evals) == 1
    # the logged mAP is the trained model's: evaluating last.pt (saved right after) gives the same numbers
    from ssn3d.engine.evaluate import evaluate

    model, saved_cfg, _ = load_checkpoint(RunPaths(run).last)
    again = evaluate(model, build_dataset("folder", tiny_walkers), saved_cfg, device=torch.device("cpu"))
    assert again["metrics"]["mAP"] == pytest.approx(evals[0]["mAP"], abs=1e-6)
    assert again["metrics"]["top1"] == pytest.approx(evals[0]["top1"], abs=1e-6)


def test_sigterm_finishes_the_step_saves_last_and_marks_cancelled(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    cfg = tiny_cfg(tiny_walkers, "train.epochs=5")
    run = tmp_path / "run"

    def progress(p: dict) -> None:
        if p["step"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during the loop, like `kill PID`

    assert main(cfg, run, progress=progress) == "cancelled"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
    status = read_status(run)
    assert status["state"] == "cancelled" and "SIGTERM" in status["error"]
    _, _, meta = load_checkpoint(RunPaths(run).last)
    assert meta["step"] == 3 and meta["epoch"] == 1 and meta["batch_in_epoch"] == 1
    assert [r["step"] for r in train_lines(run)] == [1, 2, 3]


def test_resume_continues_exactly_where_it_stopped(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    base = ("model.strategy=unsupervised", "train.iters_per_epoch=3", "train.epochs=2")
    assert main(tiny_cfg(tiny_walkers, *base), tmp_path / "straight") == "done"
    cut = tmp_path / "cut"
    assert main(tiny_cfg(tiny_walkers, *base, "train.max_steps=2"), cut) == "done"  # stops mid-epoch
    with open(RunPaths(cut).metrics, "a") as fh:  # a line written after the checkpoint, then a kill
        fh.write('{"kind": "train", "step": 3, "loss": 99.0}\n{"kind": "tra')
    assert main(tiny_cfg(tiny_walkers, *base, "train.max_steps=0"), cut, resume=True) == "done"
    straight, resumed = train_lines(tmp_path / "straight"), train_lines(cut)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, resumed):  # same batches, clips, optimizer moments and RNG: same losses
        assert (a["step"], a["epoch"]) == (b["step"], b["epoch"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
    assert read_status(cut)["resumed"] is True


def test_resume_with_another_architecture_is_refused(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    run = tmp_path / "run"
    assert main(tiny_cfg(tiny_walkers, "train.max_steps=1"), run) == "done"
    with pytest.raises(CheckpointError, match="another architecture"):
        main(tiny_cfg(tiny_walkers, "model.part_channels=8"), run, resume=True)


def test_cli_refuses_to_overwrite_a_run_and_resume_needs_a_checkpoint(
    tiny_walkers: Path, tmp_path: Path
) -> None:
    from ssn3d.__main__ import main as cli

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"root": str(tiny_walkers)}}))
    assert cli(["train", str(cfg), "--run-dir", str(run)]) == 2
    assert cli(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert (run / "metrics.jsonl").read_text().count("\n") == 1  # untouched


def test_split_args() -> None:
    assert split_args(["a.yaml", "train.epochs=3", "x.y=z"]) == ("a.yaml", ["train.epochs=3", "x.y=z"])
    assert split_args(["train.max_steps=6"]) == (None, ["train.max_steps=6"])
    with pytest.raises(ConfigError, match="two config files"):
        split_args(["a.yaml", "b.yaml"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.root and cfg.train.epochs > 0
    if path.stem in ("mars", "ilidsvid", "dukev", "prid2011"):  # the paper's recipe
        t, d = cfg.train, cfg.data
        assert (t.lr, t.weight_decay, t.lr_step, t.lr_gamma, t.epochs) == (3e-4, 5e-4, 50, 0.1, 150)
        assert (d.num_ids, d.num_instances, d.seq_len, d.stride, d.height, d.width) == (8, 4, 4, 8, 256, 128)
        assert cfg.loss.ssn_lambda == (0.05 if path.stem == "dukev" else 0.1)


def test_channels_last_applies_to_the_2d_convolutions_only_and_keeps_outputs() -> None:
    cfg = load_config(None, MODEL)
    torch.manual_seed(0)
    model = build_model(cfg.model, load_weights=False).eval()
    clips = torch.randn(2, 4, 3, 64, 32)
    with torch.no_grad():
        want = model(clips)
        channels_last_2d(model)  # model.to(memory_format=channels_last) raises on the 5-D Conv3d weights
        got = model(clips)
    assert model.backbone.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_with_bf16_autocast_and_channels_last(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    cfg = tiny_cfg(
        tiny_walkers, "train.device=cuda", "train.amp=true", "train.channels_last=true", "train.max_steps=3"
    )
    run = tmp_path / "run"
    assert main(cfg, run) == "done"
    lines = train_lines(run)
    assert [r["step"] for r in lines] == [1, 2, 3]
    # bf16 autocast computes the same first step as float32 on the CPU (same init, same batch), up to bf16 rounding
    cpu = tmp_path / "cpu"
    assert main(tiny_cfg(tiny_walkers, "train.device=cpu", "train.max_steps=1"), cpu) == "done"
    first = train_lines(cpu)[0]
    assert lines[0]["triplet"] == pytest.approx(first["triplet"], rel=0.05, abs=0.01)
    assert lines[0]["ssn"] == pytest.approx(first["ssn"], rel=0.02)
    assert main(tiny_cfg(tiny_walkers, "train.device=cuda", "train.max_steps=5"), run, resume=True) == "done"
    assert [r["step"] for r in train_lines(run)] == [1, 2, 3, 4, 5]
    model, _, _ = load_checkpoint(RunPaths(run).last)  # CUDA tensors saved, loaded on the CPU
    assert next(model.parameters()).device.type == "cpu"


# ----------------------------------------------------------------------------- collapse guard

COLLAPSE = "SSN has not separated the parts"


def _unsupervised_run(root: Path, tmp_path: Path, caplog, *overrides: str) -> dict:
    cfg = tiny_cfg(
        root, "model.strategy=unsupervised", f"data.annotations={tmp_path / 'none.json'}", *overrides
    )
    with caplog.at_level(logging.WARNING, logger="ssn3d"):
        assert main(cfg, tmp_path / "run") == "done"
    return read_status(tmp_path / "run")


def test_a_run_whose_ssn_cannot_separate_warns_once_in_the_log_and_the_status(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace, caplog
) -> None:
    # lambda 0: nothing teaches SSN to tell parts apart (its L_SSN climbs above log N on the walkers)
    status = _unsupervised_run(
        tiny_walkers, tmp_path, caplog, "loss.ssn_lambda=0", "train.lr=0.01", "train.epochs=4"
    )
    assert len(status["warnings"]) == 1 and status["warnings"][0].startswith(COLLAPSE)
    assert "L_SSN" in status["warnings"][0] and "chance level 2.197" in status["warnings"][0]
    assert caplog.text.count(COLLAPSE) == 1


def test_a_run_whose_ssn_separates_gets_no_warning(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace, caplog
) -> None:
    status = _unsupervised_run(
        tiny_walkers, tmp_path, caplog, "loss.ssn_lambda=5", "train.lr=0.005", "train.epochs=6"
    )
    ssn = [r["ssn"] for r in train_lines(tmp_path / "run")]
    assert min(ssn[-3:]) < 0.9 * math.log(9)  # it did separate
    assert "warnings" not in status and COLLAPSE not in caplog.text


def test_lr_decays_once_after_lr_step_epochs_and_the_schedule_resumes() -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "mars.yaml", MODEL)
    model = build_model(cfg.model, load_weights=False)
    opt, sched = build_optimizer(model, cfg)
    lrs = []
    for _ in range(cfg.train.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[0] == lrs[49] == pytest.approx(3e-4)
    assert lrs[50] == lrs[149] == pytest.approx(3e-5)  # once: a StepLR(50) would be 3e-6 from epoch 100
    opt2, sched2 = build_optimizer(model, cfg)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.last_epoch == 150 and sched2.get_last_lr() == sched.get_last_lr()


def test_anchors_reach_the_model_in_a_training_batch(
    tiny_walkers: Path, tmp_path: Path, workspace: Workspace
) -> None:
    from ssn3d.engine.distributed import DistInfo
    from ssn3d.engine.train_data import TrainData, load_dataset, load_labels
    from ssn3d.engine.train_state import StopRequest, TrainState
    from ssn3d.losses import BatchHardTriplet

    ds = build_dataset("folder", tiny_walkers)
    gt = AnnotationStore(ds.ground_truth_path).frames()
    labels = AnnotationStore(tmp_path / "labels.json")
    labels.update(pick_labeled_frames(gt, ds.train, per_tracklet=2, root=ds.root))
    cfg = tiny_cfg(tiny_walkers, "train.max_steps=2", f"data.annotations={labels.path}")
    dataset = load_dataset(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, load_weights=False)
    seen: list[torch.Tensor] = []  # the anchor masks SSN receives
    model.ssn[0].register_forward_pre_hook(lambda m, args: seen.append(args[2]) if len(args) > 2 else None)
    data = TrainData(cfg, dataset, load_labels(cfg, dataset), DistInfo(), pin_memory=False)
    data.set_epoch(0)
    opt, _ = build_optimizer(model, cfg)
    logs: list[dict] = []
    train_one_epoch(
        model, data, opt, BatchHardTriplet(0.3), cfg, TrainState(),
        device=torch.device("cpu"), info=DistInfo(), total_steps=2, stop=StopRequest(), on_log=logs.append,
    )  # fmt: skip
    masks = [m for m in seen if m is not None]
    # per step: the clips (some frames labeled by chance) and the batch's labeled frames beside them, 2 per tracklet
    beside = [m for m in masks if m.shape[0] == 2 * 4]  # 4 tracklets per batch (P=2 x K=2)
    assert len(beside) == 2 and all(
        int(m.sum()) >= 8 * 9 // 2 for m in beside
    )  # most labeled parts are visible
    assert len(logs) == 2 and all(v["ssn"] > 0 for v in logs)


# --------------------------------------------------------------------------- the alignment levers (NOT in the paper)

LEVERS = {  # config overrides -> the name of the term it adds to the loss
    "position_ce": ("loss.position_ce=1",),
    "position_ce_sigma": ("loss.position_ce=1", "loss.position_sigma=1"),
    "temporal_stability": ("loss.temporal_stability=1",),
    "flip_consistency": ("loss.flip_consistency=1",),
    "background": ("model.background_class=true", "loss.background=1"),
}


@pytest.fixture
def semi_labels(tiny_walkers: Path, tmp_path: Path) -> Path:
    ds = build_dataset("folder", tiny_walkers)
    labels = AnnotationStore(tmp_path / "labels.json")
    labels.update(pick_labeled_frames(AnnotationStore(ds.ground_truth_path).frames(), ds.train, per_tracklet=2,
                                      root=ds.root))  # fmt: skip
    return labels.path


def _setup(root: Path, labels: Path, *overrides: str):
    """A tiny semi config, its seeded model, optimizer and training data at epoch 0."""
    from ssn3d.engine.distributed import DistInfo
    from ssn3d.engine.train_data import TrainData, load_dataset, load_labels

    cfg = tiny_cfg(root, "train.max_steps=1", f"data.annotations={labels}", *overrides)
    dataset = load_dataset(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, load_weights=False)
    data = TrainData(cfg, dataset, load_labels(cfg, dataset), DistInfo(), pin_memory=False)
    data.set_epoch(0)
    return cfg, model, data


def _one_step(root: Path, labels: Path, *overrides: str) -> tuple[dict, torch.nn.Module]:
    """One real training step through train_one_epoch; its logged losses and the trained model."""
    from ssn3d.engine.distributed import DistInfo
    from ssn3d.engine.train_state import StopRequest, TrainState
    from ssn3d.losses import BatchHardTriplet

    cfg, model, data = _setup(root, labels, *overrides)
    opt, _ = build_optimizer(model, cfg)
    logs: list[dict] = []
    train_one_epoch(
        model, data, opt, BatchHardTriplet(0.3), cfg, TrainState(),
        device=torch.device("cpu"), info=DistInfo(), total_steps=1, stop=StopRequest(), on_log=logs.append,
    )  # fmt: skip
    return logs[0], model


def _model_out(model: torch.nn.Module, batch: dict, mirror: bool = False):
    return model(batch["clip"], batch["keypoints"], batch["anchor_frames"], batch["anchor_keypoints"],
                 mirror_anchors=mirror)  # fmt: skip


def test_default_loss_is_eq6_to_the_bit(tiny_walkers: Path, semi_labels: Path, workspace: Workspace) -> None:
    """Every lever off: the logged step loss is L_tri + lambda L_SSN of the paper, computed by hand."""
    from ssn3d.losses import BatchHardTriplet, ssn_loss

    log, _ = _one_step(tiny_walkers, semi_labels)
    assert set(log) == {"loss", "triplet", "ssn", "clips_per_s", "lr"}  # no extra term is logged
    cfg, model, data = _setup(tiny_walkers, semi_labels)
    batch = next(iter(data.loader))
    out = model(batch["clip"], batch["keypoints"], batch["anchor_frames"], batch["anchor_keypoints"])
    triplet = BatchHardTriplet(0.3)(out.embedding.float(), batch["pids"])
    ssn = ssn_loss(out.ssn_logits, "mean", anchor_logits=out.anchor_logits)
    assert log["loss"] == (triplet + 0.1 * ssn).item() and log["ssn"] == ssn.item()


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_each_lever_adds_its_logged_term_to_the_loss(
    lever: str, tiny_walkers: Path, semi_labels: Path, workspace: Workspace
) -> None:
    default, _ = _one_step(tiny_walkers, semi_labels)
    log, _ = _one_step(tiny_walkers, semi_labels, *LEVERS[lever])
    term = "position_ce" if lever.startswith("position_ce") else lever
    assert log[term] > 0 and log["loss"] != default["loss"]
    assert log["loss"] == pytest.approx(log["triplet"] + 0.1 * log["ssn"] + log[term], rel=1e-5)


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_each_lever_reaches_the_attention_and_backbone_not_the_head(
    lever: str, tiny_walkers: Path, semi_labels: Path, workspace: Workspace
) -> None:
    """The term alone, backpropagated from a real batch: SSN's classifier and the backbone learn from it."""
    from ssn3d.alignment_losses import AlignmentTerms

    cfg, model, data = _setup(tiny_walkers, semi_labels, *LEVERS[lever])
    terms = AlignmentTerms(cfg.loss)
    out = _model_out(model, next(iter(data.loader)), mirror=terms.needs_mirror)
    (term,) = terms(out).values()
    term.backward()

    def moved(prefix: str) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
                   if n.startswith(prefix))  # fmt: skip

    assert moved("ssn.0.classifier.conv") and moved("ssn.0.classifier.fc") and moved("backbone.")
    assert not moved("parts3d.") and not moved("fusion.")  # the embedding head is the triplet's
    if lever == "background":
        assert model.ssn[0].classifier.fc.weight.grad[9].abs().sum() > 0  # the "no part" output learns


def test_labeled_warmup_takes_l_ssn_from_the_labeled_frames_only(
    tiny_walkers: Path, semi_labels: Path, workspace: Workspace
) -> None:
    from ssn3d.losses import ssn_loss

    default, _ = _one_step(tiny_walkers, semi_labels)
    warm, _ = _one_step(tiny_walkers, semi_labels, "train.labeled_warmup=0.5")
    cfg, model, data = _setup(tiny_walkers, semi_labels)
    out = _model_out(model, next(iter(data.loader)))
    assert warm["triplet"] == default["triplet"]  # the same forward pass
    assert warm["ssn"] == pytest.approx(ssn_loss(out.anchor_logits).item()) and warm["ssn"] != default["ssn"]


def test_attention_lr_multiplier_scales_the_classifiers_first_adam_step(
    tiny_walkers: Path, semi_labels: Path, workspace: Workspace
) -> None:
    """Adam's first step moves every parameter by about lr: the attention classifier's by lr x mult."""
    cfg, before, _ = _setup(tiny_walkers, semi_labels)
    _, plain = _one_step(tiny_walkers, semi_labels)
    _, fast = _one_step(tiny_walkers, semi_labels, "train.attn_lr_mult=3")
    opt, _ = build_optimizer(fast, load_config(None, [*TINY, "train.attn_lr_mult=3"]))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([3e-4, 9e-4])

    def step(model: torch.nn.Module, prefix: str) -> float:
        old = dict(before.named_parameters())
        return max(
            float((p.detach() - old[n]).abs().max())
            for n, p in model.named_parameters()
            if n.startswith(prefix)
        )

    assert step(fast, "ssn.") == pytest.approx(3 * step(plain, "ssn."), rel=0.02)
    assert step(fast, "backbone.") == pytest.approx(step(plain, "backbone."), rel=0.02)


def test_a_lever_run_logs_each_term_and_its_checkpoint_evaluates(
    tiny_walkers: Path, semi_labels: Path, tmp_path: Path, workspace: Workspace
) -> None:
    levers = ("loss.position_ce=0.5", "model.background_class=true", "loss.background=0.1")
    cfg = tiny_cfg(tiny_walkers, "train.max_steps=2", f"data.annotations={semi_labels}", *levers)
    run = tmp_path / "run"
    assert main(cfg, run) == "done"
    records = read_metrics(run).records
    train = [r for r in records if r["kind"] == "train"]
    assert train and all(r["position_ce"] > 0 and r["background"] > 0 for r in train)
    assert any(r["kind"] == "eval" and "pck@0.1" in r for r in records)  # attention of the first N outputs
    model, loaded, _ = load_checkpoint(RunPaths(run).last)
    assert loaded.model.background_class and model.ssn[0].classifier.fc.out_features == 10


# --------------------------------------------------------------------------- logged numbers against a recorded run

LOG_REFERENCE = Path(__file__).resolve().parent / "data" / "train_log_reference.json"
LOG_CASE = ("train.max_steps=4", "train.log_every=2", "loss.position_ce=1", "model.background_class=true",
            "loss.background=1")  # fmt: skip


def logged_losses(root: Path, labels: Path, *overrides: str) -> list[dict]:
    """The on_log lines (clips_per_s dropped) of 4 seeded steps of train_one_epoch, two per line."""
    from ssn3d.engine.distributed import DistInfo
    from ssn3d.engine.train_state import StopRequest, TrainState
    from ssn3d.losses import BatchHardTriplet

    cfg, model, data = _setup(root, labels, *LOG_CASE, *overrides)
    opt, _ = build_optimizer(model, cfg)
    state, logs, steps = TrainState(), [], []
    for epoch in range(2):  # 2 steps per epoch
        state.epoch, state.batch_in_epoch = epoch, 0
        data.set_epoch(epoch)
        train_one_epoch(
            model, data, opt, BatchHardTriplet(0.3), cfg, state, device=torch.device("cpu"), info=DistInfo(),
            total_steps=4, stop=StopRequest(), on_log=logs.append, on_step=lambda st, v: steps.append(dict(v)),
        )  # fmt: skip
    assert len(steps) == 4 and all("loss" in v for v in steps)  # progress always has a loss to show
    assert data.clips.uint8 is bool(cfg.data.uint8_batches)  # the loop switched the items it asked for
    return [{k: v for k, v in line.items() if k != "clips_per_s"} for line in logs]


@pytest.mark.parametrize("items", ["float32", "uint8"])
def test_logged_losses_equal_the_run_recorded_before_the_step_lost_its_host_syncs(
    items: str, tiny_walkers: Path, semi_labels: Path
) -> None:
    """Device accumulators read at log steps, the bmm eq. (3), uint8 batches normalized in the loop:
    the same metrics lines as the float32, unfold, per-step .item() run (1e-5)."""
    want = json.loads(LOG_REFERENCE.read_text(encoding="utf-8"))
    got = logged_losses(tiny_walkers, semi_labels, f"data.uint8_batches={items == 'uint8'}")
    assert [sorted(line) for line in got] == [sorted(line) for line in want]
    for g, w in zip(got, want):
        for key, value in w.items():
            assert g[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
