"""The Annotate page's frame: a canvas drawn in the browser that places a point on a click and moves one
on a drag.

The canvas is mounted in the page itself (``st.components.v2``, no iframe), so the page's keyboard
shortcuts keep working after a click on it. The server sends the raw frame (a data URL that the browser
decodes once per frame) and the points as numbers; the browser draws the frame, the skeleton, the points
in their part colours, a pose detector's suggestions as hollow rings, a tag naming the selected part,
and that part's name at the cursor (``frame_canvas.js``, ``frame_canvas.css``).

A click draws its point at once and sends ``{"kind": "click", "x", "y"}`` in frame pixels; a point
pressed and dragged follows the pointer and is sent on release as ``{"kind": "move", "part", "x", "y"}``.
Each event carries a sequence number and the frame it was made on. Until the server answers, the
browser keeps its events and sends all of them with every new one: Streamlit keeps only the latest
trigger value of a component when two arrive during one script run, and the older one would be lost.
``take_events`` hands each event to the page once; the page's answer names the last one it handled
(``ack``), and from then on the canvas shows exactly the server's points, so a refused or failed save
leaves no ghost point behind.
"""

from __future__ import annotations

import base64
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from streamlit.components.v2 import component

from ssn3d.keypoints import PART_COLORS, SKELETON

_logger = logging.getLogger(__name__)

NAME = "ssn3d.frame_canvas"
_HERE = Path(__file__).resolve().parent
_JS = (_HERE / "frame_canvas.js").read_text(encoding="utf-8")
_CSS = (_HERE / "frame_canvas.css").read_text(encoding="utf-8")
_HTML = '<div class="ssn3d-frame-wrap"><canvas class="ssn3d-frame"></canvas></div>'
PICK_PX = 12.0  # how far (display pixels) a press may land from a point to drag or delete it
KINDS = ("click", "move")
_MIMES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png"}


@st.cache_data(show_spinner=False, max_entries=64)
def _frame_url(path: str, stamp: float) -> str:
    from ssn3d.data.images import load_image

    load_image(path)  # the same header and size checks as every frame the app reads
    raw = Path(path).read_bytes()
    mime = next((m for magic, m in _MIMES.items() if raw.startswith(magic)), None)
    if mime is None:  # a format the browser may not show (BMP, TIFF, ...): sent as a PNG instead
        import io

        buf = io.BytesIO()
        load_image(path)[0].save(buf, format="PNG", compress_level=1)
        raw, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def frame_url(path: str) -> str:
    """The frame at ``path`` as a data URL, its own bytes when the browser shows them (made again when the
    file changes)."""
    return _frame_url(str(path), os.stat(path).st_mtime)


def _points(kps: np.ndarray | None, n: int) -> list[list[float]]:
    """(N, 3) keypoints as JSON lists, 2 decimals as the store keeps them; unlabeled when None."""
    if kps is None:
        return [[0.0, 0.0, 0.0] for _ in range(n)]
    return [[round(float(x), 2), round(float(y), 2), float(v)] for x, y, v in np.asarray(kps)]


def canvas_data(
    *,
    frame: str,
    image: str,
    size: Sequence[int],
    scale: float,
    keypoints: np.ndarray | None,
    selected: int,
    names: Sequence[str],
    mode: str = "place",
    fit: bool = True,
    suggestion: Mapping[str, Any] | None = None,
    hidden: Sequence[str] = (),
    ack: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the canvas draws, as JSON-able values.

    Args:
        frame: the frame's label-store key (events name it, so one made on another frame is dropped).
        image: the raw frame as a data URL (``frame_url``).
        size: the frame's (width, height) in pixels.
        scale: display pixels per frame pixel.
        keypoints: the frame's saved keypoints (N, 3) in frame pixels, or None.
        selected: the part the next click places.
        names: the parts' names.
        mode: place | delete, what a click does.
        fit: the frame is shown at its fitted size (shrunk to the column when wider than it);
            otherwise at ``scale``, scrolled inside the column.
        suggestion: the detector's ``{"keypoints": (N, 3), "confidence": (N,)}`` for this frame, or None.
        hidden: names of the parts marked not visible (they have no point to draw).
        ack: the last event the page handled, ``{"token", "seq"}`` (``take_events``), or None.
    """
    n = len(names)
    sug = None
    if suggestion is not None:
        sug = {
            "points": _points(np.asarray(suggestion["keypoints"], dtype=np.float64), n),
            "confidence": [round(float(c), 2) for c in suggestion["confidence"]],
        }
    return {
        "frame": frame,
        "image": image,
        "size": [int(size[0]), int(size[1])],
        "scale": float(scale),
        "fit": bool(fit),
        "points": _points(keypoints, n),
        "selected": int(selected),
        "mode": mode,
        "names": list(names),
        "colors": [list(c) for c in PART_COLORS[:n]],
        "skeleton": [list(pair) for pair in SKELETON],
        "radius": max(3.0, 1.5 * float(scale)),
        "pick": PICK_PX,
        "suggestion": sug,
        "hidden": list(hidden),
        "ack": dict(ack) if ack else None,
    }


def _event(raw: Any, n_parts: int) -> dict[str, Any] | None:
    """One event from the browser, checked: its kind, frame and finite coordinates; None when malformed."""
    if not isinstance(raw, Mapping) or raw.get("kind") not in KINDS or not isinstance(raw.get("frame"), str):
        return None
    x, y = raw.get("x"), raw.get("y")
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in (x, y)):
        return None
    ev = {"kind": raw["kind"], "frame": raw["frame"], "x": float(x), "y": float(y)}
    if raw["kind"] == "move":
        part = raw.get("part")
        if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part < n_parts:
            return None
        ev["part"] = part
    return ev


def take_events(
    value: Any, last: Mapping[str, Any] | None, n_parts: int = len(PART_COLORS)
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The events of a canvas trigger value not handled yet, in order, and the new ``ack``.

    Args:
        value: the trigger value, ``{"token": str, "events": [{"seq": int, "kind", "frame", "x", "y",
            "part"?}, ...]}``: every event the browser has not seen answered. ``token`` is new whenever
            the canvas is mounted anew, and then the numbering starts again.
        last: the ``ack`` of the previous call, ``{"token", "seq"}``, or None.
        n_parts: how many parts a move may name.

    Returns:
        (the new events, checked, oldest first; the ack to send back). A malformed event is skipped,
        with its number counted as handled, so it is not offered again.
    """
    if not isinstance(value, Mapping) or not isinstance(value.get("token"), str):
        return [], dict(last) if last else None
    token, events = value["token"], value.get("events")
    seen = int(last["seq"]) if last and last.get("token") == token else 0
    out, top = [], seen
    for raw in events if isinstance(events, list) else []:
        seq = raw.get("seq") if isinstance(raw, Mapping) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= seen:
            continue
        top = max(top, seq)
        ev = _event(raw, n_parts)
        if ev is None:
            _logger.debug("skipped a malformed canvas event: %r", raw)
            continue
        out.append(ev)
    return out, {"token": token, "seq": top}


def frame_canvas(data: Mapping[str, Any], *, key: str, on_event: Callable[[], None]) -> None:
    """Mount the canvas with ``data`` (``canvas_data``); ``on_event`` runs when it sends events.

    The events are then in ``st.session_state[key]["event"]`` (read them with ``take_events``).
    """
    # Registered on every mount: the registry belongs to the running server (a test starts several), and
    # registering the same definition again is free.
    render = component(NAME, html=_HTML, css=_CSS, js=_JS)
    render(key=key, data=dict(data), on_event_change=on_event, width="stretch", height="content")
