"""The paper's random-data study (Fig. 5) at a small size: the expected patterns, measured."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from ssn3d.studies.random_data import QUICK, RandomStudyConfig, run_random_study

SMALL = dict(QUICK, seed=0)  # the quick variant: small sizes train fast at 1e-3


def final(cfg: RandomStudyConfig) -> float:
    return sum(cfg.loss[-10:]) / 10


def test_random_data_separates_and_ones_do_not() -> None:
    n = 4
    gauss = final(run_random_study(RandomStudyConfig(dist="gaussian", parts=n, **SMALL), progress=False))
    unif = final(run_random_study(RandomStudyConfig(dist="uniform", parts=n, **SMALL), progress=False))
    ones = run_random_study(RandomStudyConfig(dist="ones", parts=n, **SMALL), progress=False)
    assert gauss < 0.25 * math.log(n)
    assert unif < 0.25 * math.log(n)
    assert gauss < unif  # the more dynamic distribution is separated faster (paper, Fig. 5)
    assert min(ones.loss) >= math.log(n) - 1e-4  # nothing to separate
    assert abs(final(ones) - math.log(n)) < 1e-2


def test_more_parts_converge_more_slowly() -> None:
    def area(n: int) -> float:  # mean loss relative to chance over the run: lower = faster
        cfg = run_random_study(RandomStudyConfig(dist="gaussian", parts=n, **SMALL), progress=False)
        return sum(cfg.loss) / len(cfg.loss) / math.log(n)

    assert area(3) < area(16)


def test_cli_writes_json_and_plot(tmp_path) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    cmd = [
        sys.executable,
        "-m",
        "ssn3d",
        "study",
        "random",
        "--dist",
        "uniform",
        "--parts",
        "3",
        "--iters",
        "5",
        "--channels",
        "8",
        "--size",
        "6",
        "--batch",
        "4",
        "--json",
        str(out),
        "--plot",
        str(png),
        "--quiet",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    rec = json.loads(out.read_text())
    assert len(rec["loss"]) == 5 and all(isinstance(v, float) for v in rec["loss"])
    assert rec["dist"] == "uniform" and rec["parts"] == 3 and abs(rec["chance"] - math.log(3)) < 1e-9
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
