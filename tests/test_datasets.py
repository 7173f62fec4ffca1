"""Dataset loaders on tiny fixtures written in each published layout (real files, real .mat files)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from ssn3d.data.datasets import DatasetError, build_dataset

_BYTES: dict[str, bytes] = {}


def write_image(path: Path) -> None:
    """A 4x8 image; the encoded bytes are made once per format (encoding is the slow part)."""
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    if fmt not in _BYTES:
        buf = io.BytesIO()
        Image.new("RGB", (4, 8), (200, 10, 10)).save(buf, fmt)
        _BYTES[fmt] = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_BYTES[fmt])


def names_of(tracklet) -> list[str]:
    return [Path(p).name for p in tracklet.paths]


# --------------------------------------------------------------------------- MARS

TRAIN_ROWS = [(1, 1, 3), (1, 2, 2), (3, 4, 4)]  # (pid, cam, frames)
TEST_ROWS = [(2, 1, 3), (2, 2, 2), (2, 1, 2), (0, 3, 2), (-1, 1, 2), (4, 5, 1), (4, 6, 2)]
QUERY_IDX = [1, 6]  # 1-based rows of TEST_ROWS


def mars_name(pid: int, cam: int, t: int, f: int) -> str:
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam}T{t:04d}F{f:03d}.jpg"


def write_mars_split(root: Path, split: str, rows) -> None:
    names, info = [], []
    for t, (pid, cam, n) in enumerate(rows, start=1):
        start = len(names) + 1
        names += [mars_name(pid, cam, t, f) for f in range(1, n + 1)]
        info.append([start, len(names), pid, cam])
    for name in names:
        write_image(root / f"bbox_{split}" / name[:4] / name)
    (root / "info").mkdir(parents=True, exist_ok=True)
    (root / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
    savemat(
        root / "info" / f"tracks_{split}_info.mat", {f"track_{split}_info": np.array(info, dtype=np.float64)}
    )


@pytest.fixture
def mars_root(tmp_path: Path) -> Path:
    root = tmp_path / "mars"
    write_mars_split(root, "train", TRAIN_ROWS)
    write_mars_split(root, "test", TEST_ROWS)
    savemat(root / "info" / "query_IDX.mat", {"query_IDX": np.array([QUERY_IDX], dtype=np.float64)})
    return root


def test_mars_counts_ids_cameras_and_frame_order(mars_root: Path) -> None:
    ds = build_dataset("mars", mars_root)
    assert [(t.pid, t.camid, len(t.paths)) for t in ds.train] == [(0, 0, 3), (0, 1, 2), (1, 3, 4)]
    assert ds.train_pid_names == {0: 1, 1: 3}
    assert names_of(ds.train[0]) == [mars_name(1, 1, 1, f) for f in (1, 2, 3)]
    assert all(Path(p).is_file() and Path(p).is_absolute() for t in ds.train for p in t.paths)
    assert [(t.pid, t.camid) for t in ds.query] == [(2, 0), (4, 4)]
    rest = [(2, 1), (2, 0), (0, 2), (4, 5)]  # rows 2, 3, 4, 7: junk row 5 dropped, distractor pid 0 kept
    assert [(t.pid, t.camid) for t in ds.gallery] == [(2, 0), (4, 4)] + rest
    assert ds.gallery[:2] == ds.query
    assert ds.options == {"gallery": "query+rest", "min_seq_len": 0}


def test_mars_rest_protocol_and_string_options(mars_root: Path) -> None:
    ds = build_dataset("mars", mars_root, gallery="rest", min_seq_len="2")
    assert [(t.pid, t.camid) for t in ds.gallery] == [(2, 1), (2, 0), (0, 2), (4, 5)]
    assert [(t.pid, len(t.paths)) for t in ds.query] == [(2, 3)]  # the 1-frame query is shorter than 2
    assert not set(ds.query) & set(ds.gallery)


def test_mars_accepts_torchreid_parent_folder(mars_root: Path) -> None:
    ds = build_dataset("mars", mars_root.parent)
    assert ds.root == mars_root.resolve()
    assert ds.dataset_id == "mars-mars"
    assert ds.relpath(ds.train[2].paths[0]) == "bbox_train/0003/" + mars_name(3, 4, 3, 1)


def test_mars_missing_query_idx_names_the_file(mars_root: Path) -> None:
    (mars_root / "info" / "query_IDX.mat").unlink()
    with pytest.raises(DatasetError, match=r"query_IDX\.mat is missing"):
        build_dataset("mars", mars_root)


def test_mars_tracklet_mixing_persons_is_reported(mars_root: Path) -> None:
    names_file = mars_root / "info" / "test_name.txt"
    names = names_file.read_text().split()
    names[1] = mars_name(9, 1, 1, 2)  # second frame of the first test tracklet now names person 9
    names_file.write_text("\n".join(names))
    with pytest.raises(DatasetError, match=r"tracks_test_info\.mat row 1 .*mix persons"):
        build_dataset("mars", mars_root)


def test_mars_bad_camera_wrong_key_and_bad_rows(mars_root: Path) -> None:
    info = mars_root / "info" / "tracks_train_info.mat"
    savemat(info, {"track_train_info": np.array([[1, 3, 1, 7]], dtype=np.float64)})
    with pytest.raises(DatasetError, match="camera 7 is not one of MARS's cameras 1-6"):
        build_dataset("mars", mars_root)
    savemat(info, {"wrong": np.array([[1, 3, 1, 1]])})
    with pytest.raises(DatasetError, match="has no array 'track_train_info'"):
        build_dataset("mars", mars_root)
    savemat(mars_root / "info" / "query_IDX.mat", {"query_IDX": np.array([[1, 99]])})
    savemat(info, {"track_train_info": np.array([[1, 3, 1, 1]], dtype=np.float64)})
    with pytest.raises(DatasetError, match="points at rows 1..99"):
        build_dataset("mars", mars_root)


def test_mars_bad_option_is_named(mars_root: Path) -> None:
    with pytest.raises(DatasetError, match="gallery='all' is invalid"):
        build_dataset("mars", mars_root, gallery="all")
    with pytest.raises(DatasetError, match="no option 'split'"):
        build_dataset("mars", mars_root, split=1)


# --------------------------------------------------------------------------- iLIDS-VID

PEOPLE = ["person001", "person002", "person004", "person007"]
FRAME_NUMBERS = [9, 10, 100]  # unpadded: a plain string sort would put 10 and 100 before 9


@pytest.fixture
def ilids_root(tmp_path: Path) -> Path:
    root = tmp_path / "ilids-vid"
    for cam in (1, 2):
        for person in PEOPLE:
            for f in FRAME_NUMBERS[: 2 + cam % 2]:
                write_image(
                    root / "i-LIDS-VID" / "sequences" / f"cam{cam}" / person / f"cam{cam}_{person}_{f}.png"
                )
    split_dir = root / "train-test people splits"
    split_dir.mkdir(parents=True)
    savemat(
        split_dir / "train_test_splits_ilidsvid.mat",
        {"ls_set": np.array([[3, 1, 4, 2], [2, 4, 1, 3]], float)},
    )
    return root


def test_ilidsvid_split_rows_cameras_and_frame_order(ilids_root: Path) -> None:
    ds = build_dataset("ilidsvid", ilids_root)  # row 0: test = people 1, 3 -> person001, person004
    assert [(t.pid, t.camid) for t in ds.query] == [(1, 0), (4, 0)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(1, 1), (4, 1)]
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert ds.train_pid_names == {0: 2, 1: 7}
    assert names_of(ds.query[0]) == [
        "cam1_person001_9.png",
        "cam1_person001_10.png",
        "cam1_person001_100.png",
    ]
    assert len(ds.gallery[0].paths) == 2
    ds1 = build_dataset("ilidsvid", ilids_root, split="1")  # test = people 2, 4 -> person002, person007
    assert [t.pid for t in ds1.query] == [2, 7]
    assert sorted(ds1.train_pid_names.values()) == [1, 4]


def test_ilidsvid_errors_name_the_problem(ilids_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"split=2 is out of range; .* holds splits 0-1"):
        build_dataset("ilidsvid", ilids_root, split=2)
    mat = ilids_root / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    savemat(mat, {"ls_set": np.array([[1, 1, 2, 3]], float)})
    with pytest.raises(DatasetError, match="not a permutation of 1..4"):
        build_dataset("ilidsvid", ilids_root)
    (ilids_root / "i-LIDS-VID" / "sequences" / "cam2" / "person007" / "cam2_person007_9.png").rename(
        ilids_root / "i-LIDS-VID" / "sequences" / "cam2" / "person007" / "notes.txt"
    )
    savemat(mat, {"ls_set": np.array([[3, 1, 4, 2]], float)})
    with pytest.raises(DatasetError, match=r"notes\.txt is not a frame"):
        build_dataset("ilidsvid", ilids_root)


# --------------------------------------------------------------------------- PRID-2011


@pytest.fixture
def prid_root(tmp_path: Path) -> Path:
    root = tmp_path / "prid2011"
    shot = root / "prid_2011" / "multi_shot"
    for cam, people in (("cam_a", (1, 2, 3)), ("cam_b", (1, 2, 3, 200))):
        for p in people:
            for f in range(1, 4 if cam == "cam_a" else 3):
                write_image(shot / cam / f"person_{p:04d}" / f"{f:04d}.png")
    splits = [
        {"train": ["person_0002"], "test": ["person_0001", "person_0003"]},
        {"train": [], "test": ["person_0002"]},
    ]
    (root / "splits_prid2011.json").write_text(json.dumps(splits))
    return root


def test_prid2011_query_is_cam_a_gallery_cam_b(prid_root: Path) -> None:
    ds = build_dataset("prid2011", prid_root)
    assert [(t.pid, t.camid, len(t.paths)) for t in ds.query] == [(1, 0, 3), (3, 0, 3)]
    assert [(t.pid, t.camid, len(t.paths)) for t in ds.gallery] == [(1, 1, 2), (3, 1, 2)]
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1)]
    assert names_of(ds.query[1]) == ["0001.png", "0002.png", "0003.png"]
    assert [t.pid for t in build_dataset("prid2011", prid_root, split="1").query] == [2]


def test_prid2011_missing_person_and_missing_split_file(prid_root: Path) -> None:
    splits = [{"train": ["person_0200"], "test": ["person_0001"]}]
    (prid_root / "splits_prid2011.json").write_text(json.dumps(splits))
    with pytest.raises(DatasetError, match=r"cam_a/person_0200 is missing"):
        build_dataset("prid2011", prid_root)
    with pytest.raises(DatasetError, match=r"other\.json is missing"):
        build_dataset("prid2011", prid_root, split_file="other.json")


# --------------------------------------------------------------------------- DukeMTMC-VideoReID


@pytest.fixture
def duke_root(tmp_path: Path) -> Path:
    root = tmp_path / "DukeMTMC-VideoReID"
    for f in (99, 100, 105, 7):  # gaps and out-of-range numbers: torchreid would drop 99, 100, 105
        write_image(root / "train" / "0001" / "0003" / f"0001C6F{f:04d}X30823.jpg")
    write_image(root / "train" / "0005" / "0001" / "0005C2F0001X00001.jpg")
    for f in (12, 3):
        write_image(root / "query" / "0002" / "0010" / f"0002_C1_F{f:04d}_X30001.jpg")
    for f in (5, 6):
        write_image(root / "gallery" / "0002" / "0011" / f"0002_C3_F{f:04d}_X30002.jpg")
        write_image(root / "gallery" / "0002" / "0010" / f"0002C1F{f:04d}X30001.jpg")
    return root


def test_dukev_both_name_styles_all_frames_sorted(duke_root: Path) -> None:
    ds = build_dataset("dukev", duke_root)
    assert names_of(ds.train[0]) == [f"0001C6F{f:04d}X30823.jpg" for f in (7, 99, 100, 105)]
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 5), (1, 1)]
    assert [(t.pid, t.camid) for t in ds.query] == [(2, 0)]
    assert names_of(ds.query[0]) == ["0002_C1_F0003_X30001.jpg", "0002_C1_F0012_X30001.jpg"]
    assert sorted((t.pid, t.camid) for t in ds.gallery) == [(2, 0), (2, 2)]
    assert len(build_dataset("dukev", duke_root, min_seq_len=3).train) == 1


def test_dukev_stray_file_and_mixed_cameras_are_errors(duke_root: Path) -> None:
    write_image(duke_root / "query" / "0002" / "0010" / "0002_C4_F0013_X30001.jpg")
    with pytest.raises(DatasetError, match=r"0010 mixes cameras \[1, 4\]"):
        build_dataset("dukev", duke_root)
    (duke_root / "query" / "0002" / "0010" / "0002_C4_F0013_X30001.jpg").rename(
        duke_root / "query" / "0002" / "0010" / "frame.jpg"
    )
    with pytest.raises(DatasetError, match=r"frame\.jpg is not a DukeMTMC-VideoReID frame"):
        build_dataset("dukev", duke_root)


# --------------------------------------------------------------------------- folder


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "Demo Walkers"
    for split, pid, tr, n in [
        ("train", "0007", "c1_t00", 3),
        ("train", "0007", "c2_t00", 2),
        ("train", "0003", "c1_a", 2),
        ("query", "0011", "c1_t00", 2),
        ("gallery", "0011", "c2_t00", 2),
        ("gallery", "0012", "c1_t00", 1),
    ]:
        for f in (2, 10, 1)[:n]:
            write_image(root / split / pid / tr / f"f{f}.png")
    (root / "keypoints.json").write_text("{}")
    return root


def test_folder_layout(folder_root: Path) -> None:
    ds = build_dataset("folder", folder_root)
    assert [(t.pid, t.camid, len(t.paths)) for t in ds.train] == [(0, 0, 2), (1, 0, 3), (1, 1, 2)]
    assert ds.train_pid_names == {0: 3, 1: 7}
    assert names_of(ds.train[1]) == ["f1.png", "f2.png", "f10.png"]
    assert [(t.pid, t.camid) for t in ds.query] == [(11, 0)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(11, 1), (12, 0)]
    assert ds.dataset_id == "folder-demo-walkers"
    assert ds.ground_truth_path == folder_root.resolve() / "keypoints.json"
    assert ds.relpath(ds.train[1].paths[2]) == "train/0007/c1_t00/f10.png"
    table = ds.summary().splitlines()
    assert table[2].split()[:4] == ["train", "2", "3", "7"]
    assert table[4].split()[:4] == ["gallery", "2", "2", "3"]


def test_folder_train_only_and_broken_layouts(folder_root: Path, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(folder_root / "query")
    with pytest.raises(DatasetError, match=r"query is missing; query/ and gallery/ come together"):
        build_dataset("folder", folder_root)
    shutil.rmtree(folder_root / "gallery")
    (folder_root / "keypoints.json").unlink()
    ds = build_dataset("folder", folder_root)
    assert ds.query == [] and ds.gallery == [] and len(ds.train) == 3 and ds.ground_truth_path is None
    (folder_root / "train" / "0003" / "c1_a").rename(folder_root / "train" / "0003" / "cam1")
    with pytest.raises(DatasetError, match=r"0003/cam1 is not a tracklet folder; expected .*c1_t00"):
        build_dataset("folder", folder_root)
    with pytest.raises(DatasetError, match=r"train is missing"):
        build_dataset("folder", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset 'market'"):
        build_dataset("market", folder_root)


# --------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssn3d", "datasets", *args], capture_output=True, text=True)


def test_cli_info_prints_summary_and_one_line_errors(mars_root: Path) -> None:
    ok = run_cli("info", "mars", str(mars_root), "--option", "gallery=rest")
    assert ok.returncode == 0, ok.stderr
    assert any(line.split()[:3] == ["gallery", "3", "4"] for line in ok.stdout.splitlines())
    assert "annotations/mars-mars.json" in ok.stdout
    (mars_root / "info" / "train_name.txt").unlink()
    err = run_cli("info", "mars", str(mars_root))
    assert err.returncode == 2
    assert err.stderr.strip().count("\n") == 0 and "train_name.txt is missing" in err.stderr


def test_cli_check_lists_unreadable_frames(mars_root: Path, capsys: pytest.CaptureFixture) -> None:
    from ssn3d.__main__ import main

    assert main(["datasets", "info", "mars", str(mars_root), "--check", "--quiet"]) == 0
    frames = sum(n for pid, _, n in TRAIN_ROWS + TEST_ROWS if pid != -1)
    assert f"all {frames} frames decode" in capsys.readouterr().out
    broken = mars_root / "bbox_test" / "0002" / mars_name(2, 2, 2, 1)
    broken.write_bytes(b"not a jpeg")
    assert main(["datasets", "info", "mars", str(mars_root), "--check", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"1 of {frames} frames cannot be decoded" in out and str(broken) in out
    assert main(["datasets", "info", "mars", str(mars_root), "--option", "gallery"]) == 2
    assert "must look like key=value" in capsys.readouterr().err
