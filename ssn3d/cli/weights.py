"""``python -m ssn3d weights convert SRC DST --arch mobilenet_v2``: torchvision's keys for a weights file.

Some projects ship a network's weights under their own module names; the tensors are the same, in
the same order. The converter renames them to torchvision's keys by position, checks every shape,
and writes a plain state dict that ``model.weights=DST`` (or ``--weights DST`` of a study) loads.
Both ends are read and written as tensors only (``weights_only=True``): no pickled code runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _convert(args: argparse.Namespace) -> int:
    import torch

    from ssn3d.models.backbone import WeightsError, convert_by_position, load_state_dict_file

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist; pass the weights file to convert.")
    if dst.exists() and not args.force:
        raise ValueError(f"{dst} exists; pass --force to replace it.")
    try:
        converted = convert_by_position(load_state_dict_file(src), args.arch)
    except WeightsError as e:
        raise WeightsError(f"{src}: {e}") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    torch.save(converted, tmp)
    os.replace(tmp, dst)  # a reader never sees half a file
    keys = list(converted)
    print(f"wrote {dst}: {len(keys)} tensors with torchvision's {args.arch} keys ({keys[0]} .. {keys[-1]})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ssn3d.config import NETWORKS

    p = sub.add_parser("weights", help="weights files: convert another project's naming to torchvision's")
    cmds = p.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    c = cmds.add_parser(
        "convert",
        help="rename a state dict's tensors to torchvision's keys by position, refusing any shape mismatch",
    )
    c.add_argument("src", help="a state dict in the network's module order (any key names)")
    c.add_argument("dst", help="where to write the torchvision-keyed state dict (.pth)")
    c.add_argument("--arch", required=True, choices=sorted(NETWORKS), help="the torchvision network")
    c.add_argument("--force", action="store_true", help="replace DST if it exists")
    c.set_defaults(func=_convert)
