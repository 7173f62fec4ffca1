"""``python -m ssn3d labels ACTION``: work on label stores beyond clicking them.

* ``labels next``: which frames to label next (``ssn3d.labels.next``);
* ``labels propagate``: carry labeled keypoints to nearby frames (``ssn3d.labels.propagation``).

One command with one action per module, so two label tools never claim the same command name.
"""

from __future__ import annotations

import argparse

from ssn3d.cli import _labels_next, _labels_propagate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels", help="label stores: what to label next, labels carried to nearby frames")
    actions = p.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    _labels_next.add_action(actions)
    _labels_propagate.add_action(actions)
