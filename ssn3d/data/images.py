"""Decoding one image: the frames of a dataset, an upload, a thumbnail for the app, all through one door.

Not the paper's method; it guards the frames around it. Training, evaluation and the app read
frames from disks and uploads nobody checked, so every decode first opens the header only,
refuses formats outside an allow-list and images whose declared pixel count is over a limit
(decompression bombs: a few kilobytes that would expand to gigabytes), and only then decodes.

* ``load_image(source, size)``: the decoded RGB image and its original (width, height); a JPEG
  larger than ``size`` is decoded at a reduced scale by libjpeg (``Image.draft``).
* ``check_image(source)``: the same checks and decode, keeping only (width, height, format, mode).

A refusal is a ``BadImageError`` (a ``ValueError``) whose message is one sentence naming the image
and the fix; a missing file stays a ``FileNotFoundError``.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from typing import IO, NamedTuple

from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: person crops are ~0.03 MP, whole camera frames < 10 MP
# What re-id datasets ship; TIFF and GIF (many frames, large parsers) are left out.
ALLOWED_IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "WEBP")

ImageSource = str | os.PathLike | bytes | IO[bytes]


class BadImageError(ValueError):
    """An image that is too large, of a format not allowed, or that does not decode."""


class ImageInfo(NamedTuple):
    width: int
    height: int
    format: str
    mode: str


def _label(source: ImageSource, name: str | None) -> str:
    return name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "uploaded image")


def _open_checked(source: ImageSource, max_pixels: int, formats: Sequence[str], label: str) -> Image.Image:
    """Open (header only) and check format and pixel count; no pixel data is decoded here."""
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=list(formats))
    except FileNotFoundError:
        raise FileNotFoundError(f"image {label} does not exist; check the path.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(
            f"{label} declares more pixels than the limit of {max_pixels}; resize it first."
        ) from None
    except UnidentifiedImageError:
        raise BadImageError(
            f"{label} is not an image of an allowed format ({', '.join(formats)}); convert it to one of those."
        ) from None
    except Exception as e:  # PIL raises many types on hostile headers: all mean a damaged file
        raise BadImageError(f"{label} has a damaged header ({type(e).__name__}); replace the file.") from None
    width, height = img.size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        img.close()
        raise BadImageError(
            f"{label} is {width}x{height} pixels, over the limit of {max_pixels} pixels; resize it first."
        )
    return img


def _decode(
    source: ImageSource, size: tuple[int, int] | None, max_pixels: int, formats: Sequence[str], label: str
) -> tuple[Image.Image, tuple[int, int]]:
    """The checked image with its pixels in memory (mode as stored), and its size before any draft."""
    img = _open_checked(source, max_pixels, formats, label)
    original = img.size
    try:
        if size is not None and img.format == "JPEG":
            img.draft("RGB", size)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below ``size``
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except Exception as e:  # truncated data, bad Huffman tables, zlib errors...: all "does not decode"
        img.close()
        raise BadImageError(
            f"{label} does not decode ({type(e).__name__}: {e}); the file is damaged, replace it."
        ) from None
    return img, original  # load() closed a file that PIL opened itself: no descriptor is held


def load_image(
    source: ImageSource,
    size: tuple[int, int] | None = None,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] = ALLOWED_IMAGE_FORMATS,
    name: str | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Check (from the header, before decoding) and decode one image as RGB.

    For a JPEG larger than ``size`` (width, height), ``Image.draft`` lets libjpeg decode at 1/2, 1/4 or
    1/8 scale (never below ``size``), which is several times faster than decoding and then resizing.

    Args:
        source: a path, the bytes of an upload, or a binary file object.
        size: the size the caller will resize to, or None for the full image.
        max_pixels: width x height limit (a decompression bomb is refused before it is decoded).
        formats: PIL format names accepted; others are refused without being parsed.
        name: how messages call the image (default: its path, or "uploaded image").

    Returns:
        The decoded RGB image and the image's original (width, height).
    """
    img, original = _decode(source, size, max_pixels, formats, _label(source, name))
    return (img if img.mode == "RGB" else img.convert("RGB")), original


def check_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] = ALLOWED_IMAGE_FORMATS,
    name: str | None = None,
) -> ImageInfo:
    """Like ``load_image`` but returns only (width, height, format, mode) and keeps no pixels."""
    img, _ = _decode(source, None, max_pixels, formats, _label(source, name))
    info = ImageInfo(img.width, img.height, img.format or "", img.mode)
    img.close()
    return info
