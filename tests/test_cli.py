"""The command line as a whole: every command module registers, and no two claim one name."""

from __future__ import annotations

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
