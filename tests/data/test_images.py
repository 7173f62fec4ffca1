"""Decoding one image: allowed formats pass, bombs, other formats and damaged files are refused."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from messages import one_sentence
from PIL import Image

from ssn3d.data.images import MAX_IMAGE_PIXELS, BadImageError, check_image, load_image


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def _encoded(fmt: str, size=(32, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, fmt)
    return buf.getvalue()


def test_allowed_images_pass_and_decode(tmp_path):
    for fmt in ("JPEG", "PNG", "BMP", "WEBP"):
        info = check_image(_encoded(fmt))
        assert (info.width, info.height, info.format) == (32, 64, fmt)
    path = tmp_path / "f.png"
    path.write_bytes(_encoded("PNG"))
    img, _ = load_image(path)
    assert img.getpixel((0, 0)) == (200, 10, 10)


@pytest.mark.parametrize(
    "data, words",
    [
        (_png_header(100_000, 100_000), "more pixels than the limit"),  # PIL's own bomb guard trips first
        (_png_header(5_000, 5_000), "over the limit"),
        (_encoded("GIF"), "not an image of an allowed format"),
        (_encoded("TIFF"), "not an image of an allowed format"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image of an allowed format"),
        (_encoded("JPEG")[:300], "damaged"),
        (_encoded("PNG")[:-30], "does not decode"),
    ],
)
def test_bad_images_are_refused_with_one_sentence(data, words):
    with pytest.raises(BadImageError) as err:
        check_image(data, max_pixels=1_000_000, name="upload.png")
    assert words in str(err.value) and "upload.png" in str(err.value)
    assert one_sentence(str(err.value))


def test_missing_image_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_image(tmp_path / "nope.jpg")


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512), keep=st.integers(0, 400))
def test_property_any_bytes_give_an_image_or_bad_image_error(data, keep):
    for blob in (data, _encoded("PNG", (8, 8))[:keep] + data):
        try:
            info = check_image(blob)
        except BadImageError:
            continue
        assert info.width * info.height <= MAX_IMAGE_PIXELS
