"""Video re-identification datasets: ``build_dataset(name, root, **options) -> VideoReIDDataset``.

Names: ``mars``, ``ilidsvid``, ``dukev``, ``prid2011`` (the published layouts, read to the letter)
and ``folder`` (a simple layout for your own videos and the synthetic generators). Each module's
docstring describes its layout, options and protocol choices.

Paper, "Experiments / Datasets": SSN3D is evaluated on iLIDS-VID, MARS and DukeMTMC-VideoReID;
PRID-2011, the field's fourth common benchmark, is read as well.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ssn3d.data.datasets.base import DatasetError, VideoReIDDataset
from ssn3d.data.datasets.dukev import build_dukev
from ssn3d.data.datasets.folder import build_folder
from ssn3d.data.datasets.ilidsvid import build_ilidsvid
from ssn3d.data.datasets.mars import build_mars
from ssn3d.data.datasets.prid2011 import build_prid2011

DATASETS: dict[str, Callable[..., VideoReIDDataset]] = {
    "mars": build_mars,
    "ilidsvid": build_ilidsvid,
    "dukev": build_dukev,
    "prid2011": build_prid2011,
    "folder": build_folder,
}


def build_dataset(name: str, root: str | os.PathLike, **options) -> VideoReIDDataset:
    """Read the dataset ``name`` from ``root``.

    Args:
        name: one of ``DATASETS`` (mars, ilidsvid, dukev, prid2011, folder).
        root: the dataset folder (or torchreid's parent data folder that holds it).
        **options: loader options; strings are coerced (``split="3"``).

    Returns:
        A ``VideoReIDDataset`` with train, query and gallery tracklets.

    Raises:
        DatasetError: an unknown name or option, or a missing or malformed file of the layout.
    """
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}.")
    return DATASETS[key](root, **options)


__all__ = ["DATASETS", "DatasetError", "VideoReIDDataset", "build_dataset"]
