"""The size a frame is shown at on the annotation page (pure, no UI).

The page draws the frame, the points and a pose detector's suggestions itself, in the browser; what
it needs from here is the scale that shows a small pedestrian crop large enough to click precisely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def display_scale(frame_size: Sequence[int], target_height: int = 512, max_scale: float = 8.0) -> float:
    """An integer-friendly scale that shows a frame about ``target_height`` pixels tall (never smaller)."""
    h = max(1, int(frame_size[1]))
    return float(max(1.0, min(max_scale, math.floor(target_height / h * 2) / 2)))
