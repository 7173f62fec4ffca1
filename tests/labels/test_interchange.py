"""COCO / OpenPose import and export (issue 6, 8): joints land on the right parts, nothing saved is
lost, hostile documents get a message; property tests over the importers and the config loader."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ssn3d.config import Config, ConfigError, config_from_dict, load_config
from ssn3d.keypoints import PARTS
from ssn3d.labels.coco import export_coco, import_coco
from ssn3d.labels.frames import FrameIndex
from ssn3d.labels.importing import ImportReport, InterchangeError
from ssn3d.labels.openpose import import_openpose
from ssn3d.labels.schema import AnnotationError
from ssn3d.labels.skeletons import COCO_17, OPENPOSE_BODY_25, OPENPOSE_COCO_18, canonical_joint
from ssn3d.labels.store import AnnotationStore

FRAMES = ["0001/c1/t1/000.jpg", "0001/c1/t1/001.jpg", "0002/c1/t1/000.jpg", "0002C1T0001F007.jpg"]
P = {name: i for i, name in enumerate(PARTS)}


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.rstrip().endswith(".") and "Traceback" not in message


def person(layout: tuple[str, ...], joints: dict[str, tuple[float, float, float]]) -> list[float]:
    """A flat keypoint list in ``layout`` order with the given (x, y, v-or-confidence) per joint name."""
    flat = [0.0] * (3 * len(layout))
    for name, xyv in joints.items():
        i = layout.index(name)
        flat[3 * i : 3 * i + 3] = xyv
    return flat


def coco_doc(entries: dict[str, list[float]], names: tuple[str, ...] | None = COCO_17) -> dict:
    images = [{"id": i + 10, "file_name": f} for i, f in enumerate(entries)]
    anns = [
        {"id": i, "image_id": i + 10, "category_id": 1, "keypoints": k}
        for i, k in enumerate(entries.values())
    ]
    cats = [] if names is None else [{"id": 1, "name": "person", "keypoints": list(names)}]
    return {"images": images, "annotations": anns, "categories": cats}


@pytest.fixture
def store(tmp_path: Path) -> AnnotationStore:
    return AnnotationStore(tmp_path / "annotations" / "demo.json")


# --------------------------------------------------------------------------- joint mapping

FULL_COCO = {
    "nose": (20, 10, 2), "left_eye": (22, 8, 2), "right_eye": (18, 8, 2), "left_ear": (24, 9, 1),
    "right_ear": (16, 9, 2), "left_shoulder": (28, 20, 2), "right_shoulder": (12, 22, 2),
    "left_elbow": (30, 35, 2), "right_elbow": (10, 34, 1), "left_wrist": (31, 45, 2), "right_wrist": (9, 44, 2),
    "left_hip": (26, 50, 2), "right_hip": (14, 52, 2), "left_knee": (27, 70, 2), "right_knee": (13, 71, 2),
    "left_ankle": (27, 90, 2), "right_ankle": (13, 91, 1),
}  # fmt: skip


def test_coco17_joints_map_onto_our_nine_parts(store):
    seen = []
    doc = coco_doc({FRAMES[0]: person(COCO_17, FULL_COCO)})
    report = import_coco(doc, FRAMES, store, progress=lambda done, total: seen.append((done, total)))
    assert report.imported == [FRAMES[0]] and not report.skipped and seen == [(0, 1), (1, 1)]
    kps = store.get(FRAMES[0])
    c = {k: np.array(v[:2], dtype=float) + 0.5 for k, v in FULL_COCO.items()}  # pixel index -> centre

    def at(part):
        return kps[P[part], :2]

    visible_head = [c[j] for j in ("nose", "left_eye", "right_eye", "right_ear")]  # left_ear has v=1
    np.testing.assert_allclose(at("head"), np.mean(visible_head, axis=0), atol=1e-4)
    np.testing.assert_allclose(at("body"), (c["left_shoulder"] + c["right_shoulder"]) / 2, atol=1e-4)
    np.testing.assert_allclose(at("crotch"), (c["left_hip"] + c["right_hip"]) / 2, atol=1e-4)
    for side in ("left", "right"):
        np.testing.assert_allclose(at(f"{side}_elbow"), c[f"{side}_elbow"], atol=1e-4)
        np.testing.assert_allclose(at(f"{side}_knee"), c[f"{side}_knee"], atol=1e-4)
        np.testing.assert_allclose(at(f"{side}_foot"), c[f"{side}_ankle"], atol=1e-4)
    assert kps[P["right_elbow"], 2] == 1 and kps[P["right_foot"], 2] == 1  # "labeled, not visible" survives
    assert kps[P["left_elbow"], 2] == 2


def test_missing_joints_leave_parts_unlabeled_rather_than_guessing(store):
    joints = {k: v for k, v in FULL_COCO.items() if k not in ("right_shoulder", "nose", "left_knee")}
    joints["left_eye"] = (22, 8, 1)
    import_coco(coco_doc({FRAMES[1]: person(COCO_17, joints)}), FRAMES, store)
    kps = store.get(FRAMES[1])
    assert kps[P["body"], 2] == 0 and kps[P["left_knee"], 2] == 0  # one shoulder is not a body
    np.testing.assert_allclose(
        kps[P["head"], :2], (np.array([18, 8]) + np.array([16, 9])) / 2 + 0.5
    )  # visible only


def test_openpose_body25_uses_neck_and_midhip_and_drops_weak_joints(store):
    j = {"Nose": (20, 10, 0.9), "Neck": (21, 21, 0.8), "RShoulder": (12, 22, 0.9), "LShoulder": (28, 20, 0.9),
         "MidHip": (19, 51, 0.7), "RHip": (14, 52, 0.9), "LHip": (26, 50, 0.9), "RElbow": (10, 34, 0.1),
         "LElbow": (30, 35, 0.6), "RKnee": (13, 71, 0.5), "LKnee": (27, 70, 0.5), "RAnkle": (13, 91, 0.4),
         "LAnkle": (27, 90, 0.05), "LBigToe": (29, 95, 0.9)}  # fmt: skip
    doc = {"version": 1.3, "people": [{"pose_keypoints_2d": person(OPENPOSE_BODY_25, j)}]}
    report = import_openpose({"0002C1T0001F007_keypoints.json": json.dumps(doc)}, FRAMES, store)
    assert report.imported == ["0002C1T0001F007.jpg"]
    kps = store.get("0002C1T0001F007.jpg")
    np.testing.assert_allclose(kps[P["body"], :2], np.array([21.5, 21.5]))  # Neck, not the shoulders' mean
    np.testing.assert_allclose(kps[P["crotch"], :2], np.array([19.5, 51.5]))  # MidHip
    assert kps[P["right_elbow"], 2] == 0 and kps[P["left_foot"], 2] == 0  # confidence 0.1 and 0.05 < 0.3
    assert kps[P["left_elbow"], 2] == 2
    assert any("2 detected joint(s) below confidence 0.3" in n for n in report.notes)


def test_openpose_coco18_several_people_and_unmatched_files(store):
    weak = {"Neck": (5, 5, 0.35), "RHip": (4, 20, 0.35), "LHip": (6, 20, 0.35)}
    strong = {"Neck": (21, 21, 0.9), "RHip": (14, 52, 0.9), "LHip": (26, 50, 0.9), "Nose": (20, 10, 0.9)}
    doc = {"people": [{"pose_keypoints_2d": person(OPENPOSE_COCO_18, p)} for p in (weak, strong)]}
    sources = {
        "t1/001_keypoints.json": doc,  # unique stem "001" -> 0001/c1/t1/001.jpg
        "000_keypoints.json": doc,  # two frames are called 000.jpg
        "c1/t1/nope_keypoints.json": doc,
        "broken_keypoints.json": b"{not json",
        "empty_keypoints.json": {"people": []},
        "hands_keypoints.json": {"people": [{"pose_keypoints_2d": [1.0, 2.0, 0.5] * 21}]},
    }
    seen = []
    report = import_openpose(sources, FRAMES, store, progress=lambda done, total: seen.append((done, total)))
    assert report.imported == ["0001/c1/t1/001.jpg"] and seen[-1] == (6, 6)
    kps = store.get("0001/c1/t1/001.jpg")
    np.testing.assert_allclose(kps[P["crotch"], :2], np.array([20.5, 51.5]))  # the confident person's mid-hip
    reasons = dict(report.skipped)
    assert reasons["000_keypoints.json"].startswith("ambiguous")
    assert reasons["c1/t1/nope_keypoints.json"] == "no frame of that name in the dataset"
    assert reasons["broken_keypoints.json"] == "not valid JSON"
    assert reasons["empty_keypoints.json"] == "no person detected"
    assert "21 joints per person" in reasons["hands_keypoints.json"]
    assert "imported 1 frame(s), skipped 5" in report.summary()


def test_canonical_joint_names():
    assert [canonical_joint(n) for n in ("RShoulder", "LBigToe", "MidHip", "left_eye", "Left Eye")] == [
        "right_shoulder", "left_big_toe", "mid_hip", "left_eye", "left_eye"]  # fmt: skip


def test_frame_index_matches_by_stem_then_by_folders(tmp_path):
    for f in FRAMES:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 64)).save(tmp_path / f)
    (tmp_path / "notes.txt").write_text("not a frame")
    index = FrameIndex.from_root(tmp_path)
    assert index.frames == sorted(FRAMES)
    assert index.match("0002/c1/t1/000.png") == ("0002/c1/t1/000.jpg", "")
    assert index.match("C:\\export\\0001\\c1\\t1\\000.jpg") == ("0001/c1/t1/000.jpg", "")
    assert index.match("../../etc/passwd")[0] is None
    assert index.size("0001/c1/t1/000.jpg") == (32, 64) and index.size("missing.jpg") is None
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    Image.new("RGB", (5, 5)).save(outside)
    assert index.size(f"../{outside.name}") is None  # only the dataset's own frames are opened
    with pytest.raises(InterchangeError, match="not a folder"):
        FrameIndex.from_root(tmp_path / "notes.txt")


# --------------------------------------------------------------------------- export and round trip


def test_export_is_coco_with_our_parts_and_real_sizes(tmp_path, store):
    root = tmp_path / "ds"
    (root / "0001/c1/t1").mkdir(parents=True)
    Image.new("RGB", (40, 80)).save(root / FRAMES[0])
    kps = np.zeros((9, 3), dtype=np.float32)
    kps[P["head"]] = (10.5, 4.5, 2)
    kps[P["left_foot"]] = (7.25, 70.5, 1)
    store.set(FRAMES[0], kps)
    store.set(FRAMES[1], kps)  # no file on disk: exported without a size
    doc = json.loads(json.dumps(export_coco(store, root, name="demo")))
    (cat,) = doc["categories"]
    assert (
        cat["keypoints"] == list(PARTS)
        and [1, 2] in cat["skeleton"]
        and min(min(s) for s in cat["skeleton"]) == 1
    )
    images = {im["file_name"]: im for im in doc["images"]}
    assert (images[FRAMES[0]]["width"], images[FRAMES[0]]["height"]) == (40, 80) and "width" not in images[
        FRAMES[1]
    ]
    ann = next(a for a in doc["annotations"] if a["image_id"] == images[FRAMES[0]]["id"])
    assert ann["keypoints"][:3] == [10.0, 4.0, 2] and ann["keypoints"][3 * P["left_foot"] :][:3] == [
        6.75,
        70.0,
        1,
    ]
    assert ann["num_keypoints"] == 2 and ann["bbox"] == [0, 0, 40, 80] and ann["iscrowd"] == 0


_coord = st.floats(0.5, 500, allow_nan=False).map(lambda v: round(v, 2))
_kps = st.lists(st.tuples(_coord, _coord, st.sampled_from([0, 1, 2])), min_size=9, max_size=9)


@settings(max_examples=40, deadline=None)
@given(labels=st.dictionaries(st.sampled_from(FRAMES), _kps, min_size=1))
def test_property_export_then_import_gives_back_the_same_labels(labels):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = AnnotationStore(Path(tmp) / "a.json"), AnnotationStore(Path(tmp) / "b.json")
        src.update({f: np.array(k, dtype=np.float32) for f, k in labels.items()})
        expected = {f: k for f, k in src.frames().items() if k[:, 2].any()}
        report = import_coco(json.dumps(export_coco(src)), FRAMES, dst)
        got = dst.frames()
        assert sorted(report.imported) == sorted(expected) == sorted(got)
        for f, k in expected.items():
            on = k[:, 2] > 0
            np.testing.assert_array_equal(got[f][:, 2], k[:, 2])
            np.testing.assert_allclose(got[f][on, :2], k[on, :2], atol=0.006)


# --------------------------------------------------------------------------- nothing saved is lost


def test_existing_labels_are_kept_unless_overwrite_and_dry_run_writes_nothing(store):
    mine = np.zeros((9, 3), dtype=np.float32)
    mine[0] = (3.5, 3.5, 2)
    store.set(FRAMES[0], mine)
    doc = coco_doc({FRAMES[0]: person(COCO_17, FULL_COCO), FRAMES[2]: person(COCO_17, FULL_COCO)})
    before = store.path.read_bytes()
    dry = import_coco(doc, FRAMES, store, dry_run=True)
    assert dry.imported == [FRAMES[2]] and store.path.read_bytes() == before
    report = import_coco(doc, FRAMES, store)
    assert report.imported == [FRAMES[2]] and dict(report.skipped)[FRAMES[0]].startswith("already labeled")
    np.testing.assert_array_equal(store.get(FRAMES[0]), mine)
    again = import_coco(doc, FRAMES, store, overwrite=True)
    assert set(again.replaced) == {FRAMES[0], FRAMES[2]} and store.get(FRAMES[0])[0, 2] == 2
    assert store.read()["frames"][FRAMES[2]]["source"] == "coco-import"


@pytest.mark.parametrize(
    "doc, words",
    [
        pytest.param(b"\xff\xfe not utf-8", "not valid JSON", id="bad-utf8"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not valid JSON (nested too deeply)", id="deep-nesting"),
        ('{"images": [], "annotations": [1e999999999999]} x', "not valid JSON"),
        ("[]", 'must be an object with "images" and "annotations"'),
        ({"images": {}, "annotations": []}, 'must be an object with "images" and "annotations"'),
        ({"images": [], "annotations": [], "categories": "person"}, '"categories" must be a list'),
        pytest.param("1" * 5000, "not valid JSON", id="5000-digit-int"),
        (12, "not a JSON document"),
    ],
)
def test_malformed_documents_are_refused_and_the_store_is_untouched(store, doc, words):
    store.set(FRAMES[0], np.zeros((9, 3)))
    before = store.path.read_bytes()
    with pytest.raises(InterchangeError) as err:
        import_coco(doc, FRAMES, store)
    assert words in str(err.value) and one_sentence(str(err.value))
    assert store.path.read_bytes() == before


def test_hostile_items_are_skipped_with_reasons(store):
    good = person(COCO_17, FULL_COCO)
    doc = {
        "images": [{"id": 1, "file_name": "../../../etc/passwd"}, {"id": 2, "file_name": FRAMES[1]},
                   {"id": 3, "file_name": FRAMES[2]}, {"id": 4, "file_name": FRAMES[3]}, {"id": [5]}, "x"],
        "annotations": [
            {"image_id": 1, "category_id": 1, "keypoints": good},
            {"image_id": 2, "category_id": 1, "keypoints": good[:-3] + [float("nan"), 1, 2]},
            {"image_id": 3, "category_id": 1, "keypoints": good[:-3] + [10**400, 1, 2]},
            {"image_id": 4, "category_id": 1, "keypoints": good[:-1] + [7]},
            {"image_id": 4, "category_id": 2, "keypoints": good},
            {"image_id": 99, "category_id": 1, "keypoints": good},
            {"image_id": {"a": 1}},
            [],
        ],
        "categories": [{"id": 1, "keypoints": list(COCO_17)}],
    }  # fmt: skip
    report = import_coco(doc, FRAMES, store)
    assert report.imported == [] and not store.path.exists()
    reasons = report.reasons()
    assert reasons["no frame of that name in the dataset"] == 1
    assert reasons["keypoints hold a value that is not a finite number"] == 2
    assert reasons["a visibility flag is not 0, 1 or 2"] == 1
    assert reasons["category 2 is not in the document's categories"] == 1
    assert reasons["annotation refers to no image"] == 2 and reasons["annotation is not an object"] == 1
    assert reasons["image has no file_name"] == 2


def test_a_damaged_store_is_never_overwritten_by_an_import(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"format": "ssn3d-keypoints", "version": 1, "parts": [')
    before = store.path.read_bytes()
    with pytest.raises(AnnotationError, match="cannot be read as JSON"):
        import_coco(coco_doc({FRAMES[0]: person(COCO_17, FULL_COCO)}), FRAMES, store)
    assert store.path.read_bytes() == before


def test_import_and_labeling_in_another_process_lose_nothing(store):
    """A second process labels frames while this one imports: both sets of changes survive (the lock)."""
    others = [f"other/{i:03d}.jpg" for i in range(40)]
    code = (
        "import sys, numpy as np; from ssn3d.labels.store import AnnotationStore\n"
        "s = AnnotationStore(sys.argv[1]); k = np.zeros((9, 3)); k[0] = (1.5, 1.5, 2)\n"
        "for f in sys.argv[2:]: s.set(f, k)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(store.path), *others])
    names = [f"imp/{i:03d}.jpg" for i in range(40)]
    for chunk in range(0, 40, 4):
        doc = coco_doc({n: person(COCO_17, FULL_COCO) for n in names[chunk : chunk + 4]})
        import_coco(doc, names, store)
    assert proc.wait(timeout=60) == 0
    assert set(store.frames()) == set(others) | set(names)


# --------------------------------------------------------------------------- property tests: never another exception

_scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=8)
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                     max_leaves=20)  # fmt: skip
_kp_values = st.lists(st.one_of(st.integers(-3, 300), st.floats(), st.sampled_from([0, 1, 2, 0.5]), _scalars),
                      max_size=80)  # fmt: skip
_image = st.fixed_dictionaries(
    {
        "id": st.one_of(st.integers(0, 5), _scalars),
        "file_name": st.one_of(st.sampled_from(FRAMES + ["x/000.jpg"]), _scalars),
    }
)
_ann = st.fixed_dictionaries(
    {"image_id": st.one_of(st.integers(0, 5), _json), "category_id": st.one_of(st.just(1), _json),
     "keypoints": st.one_of(_kp_values, st.just([10, 10, 2] * 17), _json)}
)  # fmt: skip
_coco = st.fixed_dictionaries(
    {
        "images": st.lists(st.one_of(_image, _json), max_size=6),
        "annotations": st.lists(st.one_of(_ann, _json), max_size=6),
    },
    optional={"categories": st.one_of(_json, st.just([{"id": 1, "keypoints": list(COCO_17)}]))},
)
_text = st.one_of(st.text(max_size=50), st.binary(max_size=50), _coco.map(json.dumps))


def _check_import(fn, doc) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = AnnotationStore(Path(tmp) / "s.json")
        store.set(FRAMES[0], np.full((9, 3), 2.0))
        before = store.frames()
        try:
            report = fn(doc, FRAMES, store)
        except InterchangeError as e:
            assert one_sentence(str(e))
            assert store.frames().keys() == before.keys()
            return
        assert isinstance(report, ImportReport)
        after = store.frames()
        assert set(after) == set(before) | set(report.imported) and set(after) <= set(FRAMES)
        np.testing.assert_array_equal(after[FRAMES[0]], before[FRAMES[0]])  # never overwritten by default
        for kps in after.values():
            assert np.isfinite(kps).all() and set(np.unique(kps[:, 2])) <= {0, 1, 2}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.one_of(_coco, _json, _text))
def test_property_coco_import_gives_a_report_or_an_interchange_error(doc):
    _check_import(import_coco, doc)


_op_person = st.fixed_dictionaries(
    {"pose_keypoints_2d": st.one_of(
        st.lists(st.floats(0, 1) | st.integers(0, 100), min_size=54, max_size=54),
        st.lists(st.floats(0, 1), min_size=75, max_size=75), _kp_values, _json)}
)  # fmt: skip
_op_doc = st.one_of(
    st.fixed_dictionaries({"people": st.one_of(st.lists(st.one_of(_op_person, _json), max_size=3), _json)}),
    _json,
    _text,
)
_op_names = st.one_of(
    st.sampled_from(["000_keypoints.json", "t1/001_keypoints.json", "0002C1T0001F007_keypoints.json"]),
    st.text(max_size=12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.dictionaries(_op_names, _op_doc, max_size=4))
def test_property_openpose_import_gives_a_report_or_an_interchange_error(files):
    _check_import(import_openpose, files)


# --------------------------------------------------------------------------- property tests: the config loader

_keys = st.sampled_from(["model", "loss", "data", "train", "bogus"])
_fields = st.sampled_from(["arch", "num_parts", "window", "strategy", "shared_classifier", "margin", "ssn_lambda",
                           "root", "options", "seq_len", "num_ids", "flip_prob", "epochs", "lr", "device", "x"])  # fmt: skip
_odd = st.sampled_from(
    [float("nan"), float("inf"), -1.0, 0, 10**400, ".inf", "nan", "1e999", True, None, [], {}]
)
_config_dicts = st.dictionaries(
    _keys, st.one_of(st.dictionaries(_fields, st.one_of(_odd, _json), max_size=4), _json), max_size=4
)
_overrides = st.lists(
    st.one_of(
        st.builds(lambda k, f, v: f"{k}.{f}={v}", _keys, _fields, st.text(max_size=10)), st.text(max_size=20)
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(_config_dicts, _json), overrides=_overrides)
def test_property_config_from_dict_gives_a_config_or_a_config_error(data, overrides):
    try:
        cfg = config_from_dict(data, overrides)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert isinstance(cfg, Config) and cfg.model.window % 2 == 1 and cfg.model.num_parts >= 2
    floats = [cfg.loss.margin, cfg.loss.ssn_lambda, cfg.data.flip_prob, cfg.train.lr, cfg.train.weight_decay]
    assert all(math.isfinite(v) for v in floats)  # nan/inf would train nothing but NaNs


@settings(max_examples=100, deadline=None)
@given(
    text=st.one_of(st.text(max_size=80), _config_dicts.map(lambda d: yaml.safe_dump(d, allow_unicode=True)))
)
def test_property_load_config_gives_a_config_or_a_config_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path)
        except ConfigError as e:
            assert str(path) in str(e)
            return
        assert isinstance(cfg, Config)


def test_keypoints_far_outside_the_image_are_not_stored_as_visible_anchors(store):
    doc = coco_doc(
        {FRAMES[0]: person(COCO_17, {**FULL_COCO, "nose": (5000, 10, 2), "left_hip": (33, 50, 2)})}
    )
    doc["images"][0].update(width=32, height=96)  # left_hip 1 px past the border: within the tolerance
    report = import_coco(doc, FRAMES, store)
    kps = store.frames()[FRAMES[0]]
    assert report.imported == [FRAMES[0]] and "outside the image" in report.notes[0]
    assert kps[:, 2].max() > 0 and (kps[:, 0][kps[:, 2] > 0] <= 32 * 1.05).all()
    assert kps[P["head"], 2] == 0  # the head came from the nose at x = 5000


def test_one_bad_file_in_a_multi_file_coco_import_does_not_stop_the_others(tmp_path, store):
    from ssn3d.labels.coco import import_coco_files

    good = [tmp_path / f"{i}.json" for i in range(2)]
    for i, path in enumerate(good):
        path.write_text(json.dumps(coco_doc({FRAMES[i]: person(COCO_17, FULL_COCO)})))
    bad = tmp_path / "bad.json"
    bad.write_text("[" * 100000)
    results = import_coco_files([good[0], bad, good[1]], FRAMES, store)
    assert [name for name, _ in results] == [str(good[0]), str(bad), str(good[1])]
    assert isinstance(results[1][1], str) and one_sentence(results[1][1])
    assert all(isinstance(r, ImportReport) and r.imported for _, r in (results[0], results[2]))
    assert sorted(store.frames()) == sorted(FRAMES[:2])


def test_openpose_points_far_outside_the_frame_are_not_stored_as_visible_anchors(tmp_path, store):
    root = tmp_path / "ds"
    (root / "0001/c1/t1").mkdir(parents=True)
    Image.new("RGB", (32, 96)).save(root / FRAMES[0])  # OpenPose files carry no size: the frame does
    j = {"Nose": (5000, 10, 0.9), "Neck": (16, 20, 0.9), "MidHip": (33, 50, 0.9), "RKnee": (14, 70, 0.9)}
    doc = {"people": [{"pose_keypoints_2d": person(OPENPOSE_BODY_25, j)}]}
    report = import_openpose({"000_keypoints.json": json.dumps(doc)}, FrameIndex(FRAMES[:1], root), store)
    kps = store.get(FRAMES[0])
    assert report.imported == [FRAMES[0]] and any("outside the image" in n for n in report.notes)
    assert kps[P["head"], 2] == 0  # the nose at x = 5000
    assert kps[P["crotch"], 2] == 2 and kps[P["body"], 2] == 2  # 1.5 px past the border: within tolerance
    # a file whose every point lies outside is skipped with its reason, not stored empty
    far = {"Nose": (900, 10, 0.9), "Neck": (900, 20, 0.9)}
    doc = {"people": [{"pose_keypoints_2d": person(OPENPOSE_BODY_25, far)}]}
    other = AnnotationStore(tmp_path / "other.json")
    report = import_openpose({"000_keypoints.json": json.dumps(doc)}, FrameIndex(FRAMES[:1], root), other)
    assert report.imported == [] and report.skipped == [(FRAMES[0], "every keypoint lies outside the image")]
    assert other.frames() == {}


def test_coco_uploads_given_as_bytes_import_one_by_one(store):
    from ssn3d.labels.coco import import_coco_files

    good = json.dumps(coco_doc({FRAMES[1]: person(COCO_17, FULL_COCO)})).encode()
    results = import_coco_files({"bad.json": b"[1, 2", "good.json": good}, FRAMES, store)
    assert [name for name, _ in results] == ["bad.json", "good.json"]
    assert isinstance(results[0][1], str) and one_sentence(results[0][1])
    assert results[1][1].imported == [FRAMES[1]] and list(store.frames()) == [FRAMES[1]]
