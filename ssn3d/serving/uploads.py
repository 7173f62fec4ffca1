"""Upload limits: a file sent through the app is refused above one size, the same as Streamlit's own.

Streamlit refuses uploads above ``server.maxUploadSize`` (in ``.streamlit/config.toml``) before a
page sees them; ``check_upload_size`` repeats the limit in the library, so that code called with
bytes from elsewhere (a file object, a test, a future endpoint) refuses the same sizes. What an
uploaded image may hold is checked by ``ssn3d.data.images`` (formats, pixel limits).
"""

from __future__ import annotations

import os
from typing import IO

MAX_UPLOAD_MB = 200  # must equal server.maxUploadSize in .streamlit/config.toml (a test checks)
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024


class UploadTooLargeError(ValueError):
    """An upload above the size limit."""


def check_upload_size(
    upload: int | bytes | IO[bytes], *, limit: int = MAX_UPLOAD_BYTES, name: str = "upload"
) -> int:
    """Refuse an upload above ``limit`` bytes; return its size.

    Args:
        upload: its size, its bytes, or a seekable file object (Streamlit's ``UploadedFile``).
    """
    if isinstance(upload, int):
        size = upload
    elif isinstance(upload, bytes | bytearray | memoryview):
        size = len(upload)
    else:
        size = getattr(upload, "size", None)
        if size is None:
            pos = upload.tell()
            size = upload.seek(0, os.SEEK_END)
            upload.seek(pos)
    if size > limit:
        raise UploadTooLargeError(
            f"{name} is {size / 1e6:.1f} MB, over the limit of {limit / 1e6:.1f} MB; upload a smaller file."
        )
    return size
