"""What every page shares: the workspace, the chosen dataset, cached loads and error display.

The pages are a thin layer over ``ssn3d``: they gather input, call one library function and render.
Errors a user can cause come out of the library as ``ValueError``/``FileNotFoundError`` subclasses
with one sentence naming the file and the fix; ``shown_errors`` turns them into ``st.error`` and the
page carries on, so no traceback ever reaches the browser.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from ssn3d.labels.store import AnnotationStore, default_store_path
from ssn3d.serving.workspace import Workspace

log = logging.getLogger(__name__)

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
DATASET_KEY = "ssn3d_dataset"  # session_state: the DatasetSpec (as a dict) this browser session works on
DATASET_NAMES = ("folder", "mars", "ilidsvid", "dukev", "prid2011")
REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / "assets" / "demo_model.pt"


@contextlib.contextmanager
def shown_errors(stop: bool = False) -> Iterator[None]:
    """Show a library error as one red sentence instead of a traceback; with ``stop`` end the page there."""
    try:
        yield
    except USER_ERRORS as e:
        log.info("shown to the user: %s", e)
        st.error(str(e))
        if stop:
            st.stop()


def workspace() -> Workspace:
    """The workspace from the environment (``SSN3D_HOME``...), read again on every rerun (it is cheap)."""
    return Workspace.from_env()


def demo_mode() -> bool:
    """``SSN3D_DEMO=1`` (set by ``scripts/demo.sh``): prepare and select the demo without asking."""
    return os.environ.get("SSN3D_DEMO", "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as the user chose it: a loader name, a root and loader options."""

    name: str
    root: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # how the sidebar calls it ("demo walkers", or the root's name)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def demo_spec(ws: Workspace) -> DatasetSpec:
    return DatasetSpec("folder", str(ws.demo_dataset), {}, "demo walkers")


def spec_from_url() -> DatasetSpec | None:
    """The dataset the page's URL names (``?dataset=<root>&loader=<name>``), or None.

    The URL carries the dataset so that a reload, a bookmark or the Back button open the same one
    instead of the demo; its root is confined like a typed one when the dataset is loaded.
    """
    root = st.query_params.get("dataset")
    if not root:
        return None
    name = st.query_params.get("loader", "folder")
    if name not in DATASET_NAMES:
        return None
    try:
        options = json.loads(st.query_params.get("options", "{}"))
    except json.JSONDecodeError:
        return None
    if not isinstance(options, dict):
        return None
    demo = workspace().demo_dataset
    label = "demo walkers" if name == "folder" and Path(root) == demo else Path(root).name
    return DatasetSpec(name, root, options, label)


def current_spec() -> DatasetSpec | None:
    """The dataset this session works on: the chosen one, else the URL's, else the demo when generated."""
    raw = st.session_state.get(DATASET_KEY)
    if raw:
        return DatasetSpec(**raw)
    spec = spec_from_url()
    if spec is not None:
        choose_dataset(spec)
        return spec
    ws = workspace()
    if (ws.demo_dataset / "train").is_dir():
        return demo_spec(ws)
    return None


def choose_dataset(spec: DatasetSpec) -> None:
    st.session_state[DATASET_KEY] = asdict(spec)
    dataset_in_url(spec)


def dataset_in_url(spec: DatasetSpec | None) -> None:
    """Write the session's dataset into the URL (every page, every run: switching pages clears it)."""
    if spec is None:
        return
    want = {"dataset": spec.root, "loader": spec.name}
    if spec.options:
        want["options"] = json.dumps(spec.options, sort_keys=True)
    if any(st.query_params.get(k) != v for k, v in want.items()):
        st.query_params.update(want)


def _root_stamp(root: str) -> float:
    """Changes when the dataset folder is regenerated, so the cached index is read again."""
    path = Path(root)
    stamps = [path / "dataset.json", path / "train", path]
    return max((p.stat().st_mtime for p in stamps if p.exists()), default=0.0)


@st.cache_resource(show_spinner="Reading the dataset...", max_entries=8)
def _load_dataset(name: str, root: str, options_json: str, stamp: float) -> Any:
    # cache_resource, not cache_data: a MARS index holds about a million frame paths, and cache_data
    # would unpickle a copy of it on every rerun. The object is never mutated by the pages.
    from ssn3d.data.datasets import build_dataset

    return build_dataset(name, root, **json.loads(options_json))


def _dataset_args(spec: DatasetSpec) -> tuple[str, str, str, float]:
    from ssn3d.serving.paths import resolve_inside

    root = resolve_inside(spec.root, workspace().allowed_roots, must_exist=True, what="dataset root")
    return spec.name, str(root), json.dumps(spec.options, sort_keys=True), _root_stamp(str(root))


def load_dataset(spec: DatasetSpec) -> Any:
    """The dataset of ``spec``, its root confined to the workspace's allowed folders (``resolve_inside``).

    Raises:
        ValueError / FileNotFoundError subclasses with the loader's one-sentence message.
    """
    return _load_dataset(*_dataset_args(spec))


@st.cache_resource(show_spinner=False, max_entries=8)
def _frame_keys(name: str, root: str, options_json: str, stamp: float) -> dict[str, list[list[str]]]:
    ds = _load_dataset(name, root, options_json, stamp)
    return {split: [[ds.relpath(p) for p in t.paths] for t in ts] for split, ts in ds.splits().items()}


def frame_keys(spec: DatasetSpec) -> dict[str, list[list[str]]]:
    """{split: per tracklet, its frames' label-store keys (paths relative to the root)}, computed once."""
    return _frame_keys(*_dataset_args(spec))


def require_dataset() -> tuple[DatasetSpec, Any]:
    """The session's dataset, or an explanation and the end of the page when there is none or it fails."""
    spec = current_spec()
    if spec is None:
        st.info("No dataset yet: open the **Data** page to set up the demo or choose a dataset folder.")
        st.page_link(data_page(), label="Go to the Data page", icon=":material/folder_open:")
        st.stop()
    with shown_errors(stop=True):
        return spec, load_dataset(spec)
    raise AssertionError("unreachable")  # shown_errors(stop=True) stops the page on an error


def data_page() -> str:
    return "views/data.py"


def label_store(ws: Workspace, dataset: Any) -> AnnotationStore:
    """The dataset's label store: ``annotations/<dataset id>.json`` in the workspace."""
    return AnnotationStore(default_store_path(ws, dataset.dataset_id))


@st.cache_data(show_spinner=False, max_entries=16)
def _labels(path: str, stamp: tuple) -> dict[str, np.ndarray]:
    return AnnotationStore(path).frames()


def labels_of(store: AnnotationStore) -> dict[str, np.ndarray]:
    """{frame key: (9, 3) keypoints} (a copy), re-read only when the store changed.

    ``store.version()`` holds inode, modification time and size of the file and of its journal: every
    save appends to the journal or renames a new file over the old one, so any save changes it.
    """
    return _labels(str(store.path), store.version())


def repair_notice(store: AnnotationStore) -> str | None:
    """Cut a torn journal tail of ``store`` now and return the store's sentence about it, else None.

    Call it before ``labels_of``: that read repairs a torn tail too, but on a store object of its own
    whose message the page never sees. The next call finds the journal clean, so the page shows the
    sentence once.
    """
    return store.last_repair if store.repair() else None


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumbnail(path: str, stamp: float, height: int) -> np.ndarray:
    from ssn3d.data.images import load_image

    img = load_image(path)[0]
    width = max(1, round(img.width * height / img.height))
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))


def thumbnail(path: str, height: int = 96) -> np.ndarray:
    """A small RGB copy of a frame, for strips and tables (made again when the file changes)."""
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        raise FileNotFoundError(
            f"frame {path} does not exist; the dataset changed on disk, open it again."
        ) from None
    return _thumbnail(path, stamp, height)


def read_frame(path: str) -> Image.Image:
    """A frame of the dataset, through the image checks of ``ssn3d.data.images``."""
    from ssn3d.data.images import load_image

    return load_image(path)[0]


def sidebar_dataset(spec: DatasetSpec | None) -> None:
    """One line in the sidebar saying which dataset the pages work on."""
    if spec is None:
        st.sidebar.caption("No dataset chosen.")
    else:
        st.sidebar.caption(f"Dataset: **{spec.label or Path(spec.root).name}** ({spec.name})")


def tracklet_label(t: Any, index: int, done: str = "") -> str:
    return f"#{index}  person {t.pid}  cam {t.camid + 1}  {len(t.paths)} frames {done}".rstrip()


def checkpoint_choices(ws: Workspace) -> dict[str, Path]:
    """{label: path} of the usable checkpoints: the shipped demo model, then every run's best and last."""
    from ssn3d.runs.folder import RunPaths
    from ssn3d.runs.status import list_runs

    out: dict[str, Path] = {}
    if DEMO_CHECKPOINT.is_file():
        out["demo model (assets/demo_model.pt)"] = DEMO_CHECKPOINT
    for run in list_runs(ws.runs):
        paths = RunPaths(run.path)
        for kind, p in (("best", paths.best), ("last", paths.last)):
            if p.is_file():
                out[f"{run.name} ({kind})"] = p
    return out


APP_TORCH_THREADS = 1  # the server's inference threads (see ``use_app_threads``)


def use_app_threads() -> None:
    """One torch thread in the app's server process.

    The app computes attention maps of a few small frames, often while a training run it launched
    keeps the cores busy. Two OpenMP threads competing with that run spin-wait: on the 2-core machine
    the demo model's 8-frame attention took 1.3 s with 2 threads and 17 ms with 1
    (benchmarks/RESULTS-app.md). Large evaluations belong to the command line.
    """
    import torch

    if torch.get_num_threads() != APP_TORCH_THREADS:
        torch.set_num_threads(APP_TORCH_THREADS)


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _extractor(path: str, stamp: float, device: str) -> Any:
    from ssn3d.engine.inference import FeatureExtractor

    return FeatureExtractor.from_checkpoint(path, device=device)


def load_extractor(path: Path, device: str = "cpu") -> Any:
    """A ``FeatureExtractor`` for a checkpoint, loaded once per file version and shared by sessions."""
    use_app_threads()
    return _extractor(str(path), path.stat().st_mtime, device)
