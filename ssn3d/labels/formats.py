"""The label formats a user can import by name, one call for a batch of files (the app's uploads).

COCO keypoints are imported file by file, so one refused file is named and the files after it still
import (``ssn3d.labels.coco.import_coco_files``); OpenPose writes one file per image, so its files
are one import matched to frames by their names (``ssn3d.labels.openpose.import_openpose``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ssn3d.labels.coco import import_coco_files
from ssn3d.labels.frames import FrameIndex
from ssn3d.labels.importing import ImportReport
from ssn3d.labels.openpose import import_openpose
from ssn3d.labels.store import AnnotationStore

IMPORT_FORMATS = ("COCO keypoints", "OpenPose")


def import_files(
    kind: str,
    files: Mapping[str, bytes],
    index: FrameIndex,
    store: AnnotationStore,
    *,
    overwrite: bool = False,
) -> list[tuple[str, ImportReport | str]]:
    """Import ``{file name: bytes}`` of one format into ``store``.

    Args:
        kind: one of ``IMPORT_FORMATS``.
        files: the files' names and contents.
        index: the dataset's frames, to match the files' names to.
        store: where the labels go.
        overwrite: replace frames already labeled.

    Returns:
        [(file name, its ImportReport, or the one-sentence reason it was refused)]; an OpenPose batch
        is one entry named "".

    Raises:
        ValueError: an unknown format.
    """
    if kind == "COCO keypoints":
        return import_coco_files(files, index, store, overwrite=overwrite)
    if kind == "OpenPose":
        return [("", import_openpose(files, index, store, overwrite=overwrite))]
    raise ValueError(f"import format {kind!r} is unknown; choose {' or '.join(IMPORT_FORMATS)}.")
