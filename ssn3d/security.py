"""Serving safely: what a user may type, upload or make the server touch (issue 8).

Nothing here is the paper's method; it guards the inputs around it. The paper's semi-supervised
strategy ("Implementation Details / Supervised Labels") needs frames read from the server's disk
and labels written to it, and the app exposes both to whoever reaches its port. This module
gives the app and the CLI the checks they share:

* ``resolve_inside(path, roots)``: a typed path is used only if it resolves (``..``, symbolic
  links and absolute paths included) inside one of the folders the operator allows.
* ``safe_extract(archive, target)``: zip and tar uploads, refusing members that would land
  outside the target (zip-slip), links and device files, and bombs (member count, total bytes).
* ``check_image`` / ``load_image``: a format allow-list and a pixel limit read from the header
  before any decoding (decompression bombs), then a full decode.
* ``check_upload_size``: the upload limit (the same number as ``server.maxUploadSize``).
* ``redact`` and ``RedactingFilter`` (from ``ssn3d.redact``): secrets never reach logs or run folders.

Every refusal is a ``ValueError`` subclass whose message is one sentence naming the input and the fix.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

from PIL import Image, UnidentifiedImageError

from ssn3d.redact import (  # noqa: F401  (re-exported: one module to import for serving safely)
    MASK,
    RedactingFilter,
    install_log_redaction,
    is_secret_name,
    known_secrets,
    redact,
    redact_text,
)

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 200  # must equal server.maxUploadSize in .streamlit/config.toml (a test checks)
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 50_000  # a few thousand tracklets of frames; far beyond any hand-made upload
MAX_ARCHIVE_BYTES = 2 * 1024**3  # extracted bytes: 10x the upload limit still fits a real dataset slice
MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: person crops are ~0.03 MP, whole camera frames < 10 MP
# What re-id datasets ship; TIFF and GIF (many frames, large parsers) are left out.
ALLOWED_IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "WEBP")

ProgressFn = Callable[[int, int], None]


class SecurityError(ValueError):
    """An input refused for safety; the message names it and the fix."""


class UnsafePathError(SecurityError):
    """A path that leads outside the folders the operator allows."""


class UnsafeArchiveError(SecurityError):
    """An archive that cannot be extracted safely."""


class BadImageError(SecurityError):
    """An image that is too large, of a format not allowed, or that does not decode."""


class UploadTooLargeError(SecurityError):
    """An upload above the size limit."""


# --------------------------------------------------------------------------- paths


def _roots(roots: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(r).expanduser().resolve() for r in roots]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def resolve_inside(
    path: str | os.PathLike,
    roots: Iterable[str | os.PathLike],
    *,
    must_exist: bool = False,
    what: str = "path",
) -> Path:
    """The resolved path, if it lies inside one of ``roots``; refuse it otherwise.

    A relative path is taken relative to the first root. ``..`` components are refused outright
    (even when they would stay inside), and symbolic links are followed before the check, so a
    link inside a root that points elsewhere is refused too.

    Args:
        path: what the user typed or the app received.
        roots: the allowed folders (e.g. ``Workspace.allowed_roots``); they need not exist yet.
        must_exist: raise ``FileNotFoundError`` when the resolved path does not exist.
        what: how the message calls the path ("dataset root", "checkpoint", ...).

    Returns:
        The absolute, symlink-free path.
    """
    text = os.fspath(path)
    allowed = _roots(roots)
    where = ", ".join(str(r) for r in allowed)
    if not allowed:
        raise UnsafePathError(
            f"{what} {text!r} cannot be used because no allowed folders are configured; set SSN3D_HOME."
        )
    if not text.strip() or "\x00" in text:
        raise UnsafePathError(f"{what} {text!r} is not a usable path; type a path inside {where}.")
    try:
        candidate = Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise UnsafePathError(
            f"{what} {text!r} names an unknown home folder; type a path inside {where}."
        ) from None
    if ".." in candidate.parts:
        raise UnsafePathError(
            f"{what} {text!r} contains '..'; type the path inside {where} without going up."
        )
    if not candidate.is_absolute():
        candidate = allowed[0] / candidate
    try:
        resolved = candidate.resolve()
    except (RuntimeError, OSError) as e:  # a symbolic link loop, a name too long for the system
        raise UnsafePathError(
            f"{what} {text!r} cannot be resolved ({type(e).__name__}); type another path."
        ) from None
    if not _inside(resolved, allowed):
        if _inside(Path(os.path.normpath(candidate)), allowed):
            raise UnsafePathError(
                f"{what} {text!r} leads through a symbolic link to {resolved}, outside the allowed folders ({where}); "
                "the operator can add that folder to SSN3D_DATA_ROOTS."
            )
        raise UnsafePathError(
            f"{what} {text!r} lies outside the allowed folders ({where}); choose a path inside them "
            "or ask the operator to add its folder to SSN3D_DATA_ROOTS."
        )
    if must_exist and not resolved.exists():
        raise FileNotFoundError(f"{what} {text!r} does not exist under {where}; check the spelling.")
    return resolved


def is_inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> bool:
    """True when ``resolve_inside`` would accept ``path``."""
    try:
        resolve_inside(path, roots)
    except SecurityError:
        return False
    return True


# --------------------------------------------------------------------------- archives


class _Member(NamedTuple):
    name: PurePosixPath
    is_dir: bool
    size: int
    open: Callable[[], IO[bytes]]


def _member_name(raw: str, archive: str) -> PurePosixPath:
    """A member's name as a safe relative path, or UnsafeArchiveError."""
    if not raw or "\x00" in raw or "\\" in raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise UnsafeArchiveError(
            f"{archive} holds a member named {raw!r} that is absolute or malformed; rebuild it with relative paths."
        )
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive} holds a member {raw!r} that points outside its folder (zip-slip); it was not extracted."
        )
    if not parts:
        raise UnsafeArchiveError(f"{archive} holds a member named {raw!r} with no file name; rebuild it.")
    return PurePosixPath(*parts)


def _zip_members(zf: zipfile.ZipFile, archive: str) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(
                f"{archive} holds a symbolic link {info.filename!r}; archives with links are refused."
            )
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(
                f"{archive} holds a special file {info.filename!r}; only files and folders are allowed."
            )
        if info.flag_bits & 0x1:
            raise UnsafeArchiveError(
                f"{archive} is encrypted ({info.filename!r}); upload an unencrypted archive."
            )
        name = _member_name(info.filename, archive)
        yield _Member(name, info.is_dir(), info.file_size, lambda info=info: zf.open(info))


def _tar_members(tf: tarfile.TarFile, archive: str) -> Iterator[_Member]:
    for info in tf:  # lazily: a bomb is refused at its first oversized header, not after a full scan
        if info.issym() or info.islnk():
            raise UnsafeArchiveError(
                f"{archive} holds a link {info.name!r}; archives with links are refused."
            )
        if not (info.isreg() or info.isdir()):
            raise UnsafeArchiveError(
                f"{archive} holds a special file {info.name!r}; only files and folders are allowed."
            )
        name = _member_name(info.name, archive)
        yield _Member(name, info.isdir(), info.size, lambda info=info: tf.extractfile(info))


@contextlib.contextmanager
def _open_archive(
    archive: str | os.PathLike | IO[bytes], label: str, max_members: int
) -> Iterator[Iterator[_Member]]:
    with contextlib.ExitStack() as stack:
        fh = archive if hasattr(archive, "read") else stack.enter_context(open(archive, "rb"))  # type: ignore[arg-type]
        if zipfile.is_zipfile(fh):
            # the central directory's entry count, read before ZipFile builds an object per entry
            # (millions of empty entries would fill memory before any per-member check ran)
            end = zipfile._EndRecData(fh)
            if end and end[zipfile._ECD_ENTRIES_TOTAL] > max_members:
                raise UnsafeArchiveError(
                    f"{label} has more than {max_members} members; split it into smaller archives."
                )
            fh.seek(0)
            zf = stack.enter_context(zipfile.ZipFile(fh))
            yield _zip_members(zf, label)
            return
        fh.seek(0)
        try:
            tf = stack.enter_context(tarfile.open(fileobj=fh, mode="r:*"))
        except (tarfile.TarError, EOFError, OSError):
            raise UnsafeArchiveError(
                f"{label} is neither a zip nor a tar archive; upload a .zip or .tar(.gz)."
            ) from None
        yield _tar_members(tf, label)


def safe_extract(
    archive: str | os.PathLike | IO[bytes],
    target: str | os.PathLike,
    *,
    max_members: int = MAX_ARCHIVE_MEMBERS,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    progress: ProgressFn | None = None,
    name: str | None = None,
) -> list[Path]:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into a new folder ``target``, all or nothing.

    Members are written into a hidden sibling folder first and renamed to ``target`` at the end,
    so a refused or broken archive leaves nothing behind. Refused: absolute names, ``..``
    (zip-slip), symbolic and hard links, device files, encrypted zips, more than ``max_members``
    members, more than ``max_bytes`` bytes once decompressed (counted while writing, so a header
    that lies about sizes does not help). Files are written with mode 0o644 whatever the archive says.

    Args:
        archive: a path or a binary file object (e.g. an uploaded file).
        target: the folder to create (it may exist if empty); confine it with ``resolve_inside`` first.
        max_members: the most members accepted.
        max_bytes: the most decompressed bytes accepted.
        progress: called as ``progress(bytes_written, max_bytes)``.
        name: how messages call the archive (default: its path, or "archive").

    Returns:
        The extracted files, under ``target``.
    """
    label = name or (os.fspath(archive) if isinstance(archive, str | os.PathLike) else "archive")
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UnsafeArchiveError(
            f"{label} cannot be extracted into {target} because it is not empty; choose a new folder."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    written: list[PurePosixPath] = []
    try:
        total = 0
        with _open_archive(archive, label, max_members) as members:
            for count, member in enumerate(members, 1):
                if count > max_members:
                    raise UnsafeArchiveError(
                        f"{label} has more than {max_members} members; split it into smaller archives."
                    )
                if member.size > max_bytes - total:
                    raise UnsafeArchiveError(
                        f"{label} expands to more than {max_bytes} bytes; upload a smaller archive."
                    )
                dest = staging.joinpath(*member.name.parts)
                if member.is_dir:
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                total = _copy_limited(member, dest, total, max_bytes, label, progress)
                written.append(member.name)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError, NotImplementedError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise UnsafeArchiveError(
            f"{label} cannot be extracted ({type(e).__name__}: {e}); check that the upload is complete."
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [target.joinpath(*n.parts) for n in dict.fromkeys(written)]


def _copy_limited(
    member: _Member, dest: Path, total: int, limit: int, label: str, progress: ProgressFn | None
) -> int:
    """Stream one member to ``dest``, counting real bytes against ``limit``; return the new total."""
    src = member.open()
    if src is None:
        raise UnsafeArchiveError(f"{label} member {str(member.name)!r} has no data; rebuild the archive.")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with src, os.fdopen(fd, "wb") as out:
        while chunk := src.read(1 << 20):
            total += len(chunk)
            if total > limit:
                raise UnsafeArchiveError(
                    f"{label} expands to more than {limit} bytes; upload a smaller archive."
                )
            out.write(chunk)
            if progress is not None:
                progress(total, limit)
    return total


# --------------------------------------------------------------------------- images and uploads


class ImageInfo(NamedTuple):
    width: int
    height: int
    format: str
    mode: str


def _open_checked(
    source: str | os.PathLike | bytes | IO[bytes], max_pixels: int, formats: Sequence[str], label: str
) -> Image.Image:
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


def load_image(
    source: str | os.PathLike | bytes | IO[bytes],
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] = ALLOWED_IMAGE_FORMATS,
    name: str | None = None,
) -> Image.Image:
    """Open, size-check (from the header, before decoding) and fully decode an image.

    Args:
        source: a path, the bytes of an upload, or a binary file object.
        max_pixels: width x height limit (a decompression bomb is refused before it is decoded).
        formats: PIL format names accepted; others are refused without being parsed.
        name: how messages call the image.

    Returns:
        The decoded image (its pixels in memory, the file closed).
    """
    label = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "uploaded image")
    img = _open_checked(source, max_pixels, formats, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except Exception as e:  # truncated data, bad Huffman tables, zlib errors...: all "does not decode"
        img.close()
        raise BadImageError(
            f"{label} does not decode ({type(e).__name__}: {e}); the file is damaged, replace it."
        ) from None
    return img


def check_image(
    source: str | os.PathLike | bytes | IO[bytes],
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] = ALLOWED_IMAGE_FORMATS,
    name: str | None = None,
) -> ImageInfo:
    """Like ``load_image`` but returns only (width, height, format, mode) and keeps no pixels."""
    img = load_image(source, max_pixels=max_pixels, formats=formats, name=name)
    info = ImageInfo(img.width, img.height, img.format or "", img.mode)
    img.close()
    return info


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
