"""The command line as a whole: every command module registers, and no two claim one name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ssn3d.__main__ import get_parser


def test_every_command_registers_once() -> None:
    # argparse raises "conflicting subparser" when two modules add the same command
    parser = get_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("train", "evaluate", "export", "runs", "study", "synth", "labels", "keypoints", "video"):
        assert name in commands


@pytest.mark.parametrize("action", ["next", "propagate"])
def test_labels_actions_share_one_command(action: str) -> None:
    args = get_parser().parse_args(
        ["labels", action, *(["RUN", "--data", "D"] if action == "next" else ["L.json", "--data", "D"])]
        + (["--weights", "W", "--to", "O.json"] if action == "propagate" else [])
    )
    assert args.labels_command == action and callable(args.func)


def test_the_command_line_parses_and_refuses_a_missing_run_without_importing_torch(tmp_path) -> None:
    # importing torch and torchvision costs seconds: `--help`, `runs list` and a typo must not pay it
    probe = (
        "import sys\n"
        "from ssn3d.__main__ import main\n"
        f"code = main(['runs', 'status', {str(tmp_path / 'nowhere')!r}])\n"
        "print(code, 'torch' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False", "False"], out.stderr
