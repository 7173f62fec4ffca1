"""Configs: YAML + key=value overrides + validation with messages that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssn3d.config import ConfigError, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_papers_recipe() -> None:
    cfg = load_config()
    assert (cfg.model.num_parts, cfg.model.window, cfg.model.attn_channels, cfg.model.embed_dim) == (
        9,
        3,
        512,
        1024,
    )
    assert (cfg.data.height, cfg.data.width, cfg.data.seq_len, cfg.data.stride) == (256, 128, 4, 8)
    assert (cfg.data.num_ids, cfg.data.num_instances) == (8, 4)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs, cfg.train.lr_step) == (
        3e-4,
        5e-4,
        150,
        50,
    )
    assert cfg.loss.ssn_lambda == 0.1


def test_yaml_then_overrides(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  num_parts: 6\n  strategy: unsupervised\ntrain:\n  epochs: 3\n")
    cfg = load_config(p, ["train.epochs=5", "model.shared_classifier=false", "data.options={gallery: rest}"])
    assert cfg.model.num_parts == 6 and cfg.train.epochs == 5 and cfg.model.shared_classifier is False
    assert cfg.data.options == {"gallery": "rest"}
    save_config(cfg, tmp_path / "out.yaml")
    again = load_config(tmp_path / "out.yaml")
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (
            ["model.strategy=weakly"],
            "model.strategy='weakly' is not allowed; choose one of: unsupervised, semi, supervised",
        ),
        (["model.num_partz=3"], "unknown key model.num_partz"),
        (["train.epochs=many"], "train.epochs='many' must be a whole number"),
        (["model.window=4"], "model.window=4 must be odd"),
        (["data.num_ids=1"], "data.num_ids=1"),
        (["loss.margin=-1"], "loss.margin"),
        (["train.device=tpu"], "train.device='tpu'"),
        (["model.shared_classifier=maybe"], "model.shared_classifier='maybe' must be true or false"),
        (["epochs"], "override 'epochs' must look like section.key=value"),
        (["model.strategy=supervised", "model.shared_classifier=false"], "supervised"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert needle in str(e.value)


def test_bad_file_messages_name_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(p)
    p.write_text("model:\n  arch: resnet\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: model.arch='resnet'"):
        load_config(p)


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.seed=-1", "train.seed=-1 must be"),
        ("train.seed=4294967296", "2**32 - 1"),
        ("train.lr_gamma=-0.5", "must lie in (0, 1]"),
        ("train.lr_gamma=0", "must lie in (0, 1]"),
        ("train.lr_gamma=1.5", "must lie in (0, 1]"),
    ],
)
def test_seed_and_lr_gamma_out_of_range_are_refused(override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(None, [override])
    assert load_config(None, ["train.lr_gamma=1", "train.seed=0"]).train.lr_gamma == 1.0  # constant lr


@pytest.mark.parametrize("strategy", ["semi", "supervised"])
def test_keypoint_strategies_refuse_n_other_than_the_keypoint_parts(strategy: str) -> None:
    with pytest.raises(ConfigError, match="model.num_parts=4 does not fit model.strategy") as e:
        load_config(None, ["model.num_parts=4", f"model.strategy={strategy}"])
    assert "\n" not in str(e.value) and str(e.value).count(". ") == 0  # one sentence
    assert load_config(None, ["model.num_parts=9", f"model.strategy={strategy}"]).model.num_parts == 9


def test_unsupervised_and_baselines_keep_any_n() -> None:
    assert load_config(None, ["model.num_parts=4", "model.strategy=unsupervised"]).model.num_parts == 4
    assert load_config(None, ["model.num_parts=4", "model.arch=conv3d"]).model.num_parts == 4


def test_recipes_use_the_papers_loss_balance_and_one_decay() -> None:
    for name in ("mars", "ilidsvid", "dukev", "prid2011"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert (cfg.loss.ssn_reduction, cfg.loss.triplet_reduction) == ("sum", "sum"), name
        assert (cfg.train.lr_step, cfg.train.lr_gamma, cfg.train.epochs) == (50, 0.1, 150), name


def test_alignment_levers_are_off_by_default() -> None:
    """The paper's method is the default: every lever (NOT in the paper) is off."""
    cfg = load_config()
    lo, t = cfg.loss, cfg.train
    assert (lo.position_ce, lo.position_sigma, lo.temporal_stability, lo.flip_consistency, lo.background) == (
        0,
    ) * 5
    assert cfg.model.background_class is False and t.labeled_warmup == 0 and t.attn_lr_mult == 1


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["loss.position_ce=-1"], "loss.position_ce=-1.0 must be >= 0"),
        (["loss.position_sigma=-0.5"], "loss.position_sigma=-0.5 must be >= 0"),
        (
            ["model.strategy=unsupervised", "loss.position_ce=1"],
            "loss.position_ce=1.0 needs model.strategy=semi",
        ),
        (
            ["model.strategy=supervised", "loss.temporal_stability=1"],
            "loss.temporal_stability=1.0 needs SSN attention",
        ),
        (
            ["model.arch=temporal_pooling", "loss.flip_consistency=1"],
            "loss.flip_consistency=1.0 needs model.strategy",
        ),
        (["loss.background=0.1"], "set model.background_class=true too"),
        (
            ["model.arch=conv3d", "model.background_class=true"],
            "model.background_class=True needs SSN attention",
        ),
        (["train.labeled_warmup=1"], "train.labeled_warmup=1.0 must lie in [0, 1)"),
        (["model.strategy=unsupervised", "train.labeled_warmup=0.3"], "needs model.strategy=semi"),
        (["train.labeled_warmup=0.3", "data.anchor_frames=0"], "needs data.anchor_frames > 0"),
        (["train.attn_lr_mult=0"], "train.attn_lr_mult=0.0 must be positive"),
        (["model.strategy=supervised", "train.attn_lr_mult=2"], "needs an attention classifier"),
    ],
)
def test_bad_lever_values_are_one_sentence_naming_the_key(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    msg = str(e.value)
    assert needle in msg and msg.count(". ") == 0 and msg.endswith(".") and "\n" not in msg


def test_levers_that_fit_the_model_are_accepted() -> None:
    cfg = load_config(None, ["loss.position_ce=1", "loss.position_sigma=1", "loss.temporal_stability=0.1",
                             "loss.flip_consistency=0.1", "model.background_class=true", "loss.background=0.1",
                             "train.labeled_warmup=0.3", "train.attn_lr_mult=3"])  # fmt: skip
    assert cfg.loss.background == 0.1 and cfg.model.background_class and cfg.train.attn_lr_mult == 3
    unsup = load_config(None, ["model.strategy=unsupervised", "loss.temporal_stability=0.1",
                               "model.background_class=true", "loss.background=0.1"])  # fmt: skip
    assert unsup.model.strategy == "unsupervised"
