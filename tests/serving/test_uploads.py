"""The upload limit: sizes, bytes and file objects above it are refused with one sentence."""

from __future__ import annotations

import io

import pytest
from messages import one_sentence

from ssn3d.serving.uploads import UploadTooLargeError, check_upload_size


def test_upload_limit_accepts_sizes_bytes_and_files():
    assert check_upload_size(10, limit=10) == 10
    assert check_upload_size(io.BytesIO(b"x" * 7), limit=10) == 7
    with pytest.raises(UploadTooLargeError, match="over the limit") as err:
        check_upload_size(b"x" * 11, limit=10, name="walkers.zip")
    assert "walkers.zip" in str(err.value) and one_sentence(str(err.value))
