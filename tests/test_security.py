"""Issue 8: paths stay inside the allowed folders, archives and images cannot hurt, secrets never
reach logs, and the app's gate and Streamlit settings hold (real files, real servers)."""

from __future__ import annotations

import io
import logging
import os
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ssn3d import security
from ssn3d.security import (
    BadImageError,
    RedactingFilter,
    UnsafeArchiveError,
    UnsafePathError,
    UploadTooLargeError,
    check_image,
    check_upload_size,
    load_image,
    redact,
    redact_text,
    resolve_inside,
    safe_extract,
)
from ssn3d.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


def one_sentence(message: str) -> bool:
    """A message a user can act on: one line, a sentence ending in a full stop, no traceback."""
    return "\n" not in message and message.rstrip().endswith(".") and "Traceback" not in message


# --------------------------------------------------------------------------- paths


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """data/ (allowed), data/walkers/0001/f.jpg, secret/ (not allowed), links in and out of data/."""
    data, secret = tmp_path / "data", tmp_path / "secret"
    (data / "walkers" / "0001").mkdir(parents=True)
    (data / "walkers" / "0001" / "f.jpg").write_bytes(b"x")
    secret.mkdir()
    (secret / "key.txt").write_text("top secret")
    (data / "escape").symlink_to(secret)
    (data / "alias").symlink_to(data / "walkers")
    (tmp_path / "data2").mkdir()  # shares a prefix with data/
    (data / "loop_a").symlink_to(data / "loop_b")
    (data / "loop_b").symlink_to(data / "loop_a")
    return {"root": tmp_path, "data": data, "secret": secret}


def test_relative_and_absolute_paths_inside_a_root_are_resolved(tree):
    data = tree["data"]
    assert resolve_inside("walkers/0001", [data]) == (data / "walkers" / "0001").resolve()
    assert resolve_inside(str(data / "walkers"), [data]) == (data / "walkers").resolve()
    assert (
        resolve_inside("alias/0001/f.jpg", [data], must_exist=True) == (data / "walkers/0001/f.jpg").resolve()
    )


@pytest.mark.parametrize(
    "typed, words",
    [
        ("../secret/key.txt", "'..'"),
        ("walkers/../walkers", "'..'"),  # refused even though it would stay inside
        ("escape/key.txt", "symbolic link"),
        ("", "not a usable path"),
        ("walkers/\x00", "not a usable path"),
        ("loop_a/x", "cannot be resolved"),
        ("~no-such-user-here/x", "unknown home folder"),
    ],
)
def test_paths_that_leave_the_roots_are_refused_with_one_sentence(tree, typed, words):
    with pytest.raises(UnsafePathError) as err:
        resolve_inside(typed, [tree["data"]], what="dataset root")
    assert words in str(err.value) and "dataset root" in str(err.value)
    assert one_sentence(str(err.value))


def test_absolute_paths_outside_and_prefix_siblings_are_refused(tree):
    for outside in (tree["secret"] / "key.txt", tree["root"] / "data2", Path("/")):
        with pytest.raises(UnsafePathError, match="outside the allowed folders"):
            resolve_inside(outside, [tree["data"]])
        assert not security.is_inside(outside, [tree["data"]])


def test_second_root_and_missing_paths(tree):
    assert (
        resolve_inside(tree["secret"] / "key.txt", [tree["data"], tree["secret"]]).read_text() == "top secret"
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_inside("walkers/nope", [tree["data"]], must_exist=True)
    with pytest.raises(UnsafePathError, match="no allowed folders"):
        resolve_inside("walkers", [])


def test_workspace_roots_confine_datasets(tree, monkeypatch):
    ws = Workspace.from_env({"SSN3D_HOME": str(tree["root"]), "SSN3D_DATA_ROOTS": str(tree["secret"])})
    assert resolve_inside(tree["secret"] / "key.txt", ws.allowed_roots).is_file()
    with pytest.raises(UnsafePathError):
        resolve_inside(tree["root"] / "data2", ws.allowed_roots)
    ws_plain = Workspace.from_env({"SSN3D_HOME": str(tree["root"])})
    with pytest.raises(UnsafePathError):
        resolve_inside(tree["secret"] / "key.txt", ws_plain.allowed_roots)


_PARTS = st.sampled_from(
    [
        "walkers",
        "0001",
        "f.jpg",
        "..",
        ".",
        "escape",
        "alias",
        "data",
        "secret",
        "~",
        "~nobody-here",
        "loop_a",
        "x y",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_PARTS, max_size=6), absolute=st.booleans())
def test_property_any_accepted_path_lies_inside_the_roots(tree, parts, absolute):
    typed = ("/" if absolute else "") + "/".join(parts)
    if absolute:
        typed = str(tree["root"]) + typed
    try:
        out = resolve_inside(typed, [tree["data"]])
    except (UnsafePathError, FileNotFoundError):
        return
    assert out.is_relative_to(tree["data"].resolve())
    assert os.path.realpath(out) == str(out)


# --------------------------------------------------------------------------- archives


def _zip(entries: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes or {}).get(name, 0o100644) << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None, mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for m in members:
            payload = (data or {}).get(m.name)
            if payload is not None:
                m.size = len(payload)
            tf.addfile(m, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _only(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_good_zip_and_tar_extract_completely(tmp_path):
    files = {"t1/000.jpg": b"a" * 10, "t1/001.jpg": b"b" * 20, "README": b"hello"}
    out = safe_extract(io.BytesIO(_zip(files)), tmp_path / "z")
    assert sorted(p.relative_to(tmp_path / "z").as_posix() for p in out) == sorted(files)
    assert (tmp_path / "z" / "t1" / "001.jpg").read_bytes() == b"b" * 20
    seen = []
    tar_bytes = _tar([_file(n) for n in files], files)
    archive = tmp_path / "up.tar.gz"
    archive.write_bytes(tar_bytes)
    out = safe_extract(archive, tmp_path / "t", progress=lambda done, total: seen.append(done))
    assert (tmp_path / "t" / "README").read_bytes() == b"hello" and len(out) == 3
    assert seen == sorted(seen) and seen[-1] == 35
    assert _only(tmp_path) == ["t", "up.tar.gz", "z"]  # no staging folder left behind


@pytest.mark.parametrize(
    "archive, words",
    [
        (_zip({"ok.txt": b"1", "../../evil.txt": b"2"}), "zip-slip"),
        (_zip({"/abs/evil.txt": b"1"}), "absolute"),
        (_zip({"..\\evil.txt": b"1"}), "malformed"),
        (_zip({"link": b"/etc/passwd"}, {"link": 0o120777}), "symbolic link"),
        (_tar([_file("ok"), _file("a/../../evil")], {"ok": b"1", "a/../../evil": b"2"}), "zip-slip"),
        (_tar([_file("/etc/cron.d/evil")], {"/etc/cron.d/evil": b"2"}), "absolute"),
        (b"PK\x03\x04 not really a zip" * 10, "neither a zip nor a tar"),
        (b"\x1f\x8b\x08 truncated gzip", "neither a zip nor a tar"),
    ],
)
def test_hostile_archives_are_refused_and_leave_nothing(tmp_path, archive, words):
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(io.BytesIO(archive), tmp_path / "out", name="upload.zip")
    assert words in str(err.value) and "upload.zip" in str(err.value)
    assert one_sentence(str(err.value))
    assert _only(tmp_path) == []  # neither the target nor a staging folder, nor anything above


def test_links_devices_and_hardlinks_in_tar_are_refused(tmp_path):
    sym = tarfile.TarInfo("t/link")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("t/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "t/ok"
    dev = tarfile.TarInfo("t/dev")
    dev.type = tarfile.CHRTYPE
    fifo = tarfile.TarInfo("t/fifo")
    fifo.type = tarfile.FIFOTYPE
    for bad, words in ((sym, "link"), (hard, "link"), (dev, "special file"), (fifo, "special file")):
        archive = _tar([_file("t/ok"), bad], {"t/ok": b"fine"})
        with pytest.raises(UnsafeArchiveError, match=words):
            safe_extract(io.BytesIO(archive), tmp_path / "out")
        assert _only(tmp_path) == []


def test_bombs_are_refused_by_count_and_by_bytes(tmp_path, monkeypatch):
    many = _zip({f"f{i}.txt": b"x" for i in range(30)})
    with monkeypatch.context() as m:  # refused from the end record, before a ZipInfo per entry is built
        m.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("the central directory was parsed"))
        with pytest.raises(UnsafeArchiveError, match="more than 20 members"):
            safe_extract(io.BytesIO(many), tmp_path / "a", max_members=20)
    many_tar = _tar([_file(f"f{i}") for i in range(30)], {f"f{i}": b"x" for i in range(30)})
    with pytest.raises(UnsafeArchiveError, match="more than 20 members"):
        safe_extract(io.BytesIO(many_tar), tmp_path / "a", max_members=20)
    zeros = _zip({"zeros.bin": bytes(3_000_000)})  # 3 MB that deflate to a few kB
    assert len(zeros) < 20_000
    with pytest.raises(UnsafeArchiveError, match="more than 1000000 bytes"):
        safe_extract(io.BytesIO(zeros), tmp_path / "b", max_bytes=1_000_000)
    assert _only(tmp_path) == []


def test_a_header_that_lies_about_sizes_does_not_get_through(tmp_path):
    """Shrink the declared uncompressed size of a member: the real bytes must still be refused."""
    data = bytearray(_zip({"big.bin": bytes(500_000)}))
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = data.find(sig)
        data[at + offset : at + offset + 4] = struct.pack("<I", 10)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(io.BytesIO(bytes(data)), tmp_path / "out", max_bytes=100_000)
    assert _only(tmp_path) == []


def test_modes_from_the_archive_are_ignored_and_targets_must_be_empty(tmp_path):
    archive = _zip({"run.sh": b"#!/bin/sh\n"}, {"run.sh": 0o104755})  # setuid + executable
    (out,) = safe_extract(io.BytesIO(archive), tmp_path / "x")
    assert stat.S_IMODE(out.stat().st_mode) & 0o7111 == 0
    with pytest.raises(UnsafeArchiveError, match="not empty"):
        safe_extract(io.BytesIO(archive), tmp_path / "x")
    assert out.read_bytes() == b"#!/bin/sh\n"  # the earlier extraction is untouched


# --------------------------------------------------------------------------- images and uploads


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
    img = load_image(path)
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
        assert info.width * info.height <= security.MAX_IMAGE_PIXELS


def test_upload_limit_accepts_sizes_bytes_and_files():
    assert check_upload_size(10, limit=10) == 10
    assert check_upload_size(io.BytesIO(b"x" * 7), limit=10) == 7
    with pytest.raises(UploadTooLargeError, match="over the limit") as err:
        check_upload_size(b"x" * 11, limit=10, name="walkers.zip")
    assert "walkers.zip" in str(err.value) and one_sentence(str(err.value))


# --------------------------------------------------------------------------- secrets


def test_redaction_masks_secrets_and_keeps_the_rest():
    text = "start --password=hunter22 url=https://bob:pa55word@example.org/x token: 'abcd1234' Bearer abcdefghijk"
    out = redact_text(text + " also my-long-secret", ["my-long-secret"])
    for leaked in ("hunter22", "pa55word", "abcd1234", "abcdefghijk", "my-long-secret"):
        assert leaked not in out
    assert "https://bob:***@example.org/x" in out and out.startswith("start --password=***")
    assert (
        redact_text("epochs=10 lr=0.0003 data.root=/data/mars", [])
        == "epochs=10 lr=0.0003 data.root=/data/mars"
    )
    doc = {"SSN3D_PASSWORD": "x", "train": {"epochs": 3, "api_key": "k"}, "cmd": ["run", "--token=abcdef"]}
    assert redact(doc, []) == {
        "SSN3D_PASSWORD": "***",
        "train": {"epochs": 3, "api_key": "***"},
        "cmd": ["run", "--token=***"],
    }


def test_logs_written_through_the_filter_never_hold_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("SSN3D_PASSWORD", "correct-horse-battery")
    logger = logging.getLogger("ssn3d.test_redaction")
    handler = logging.FileHandler(tmp_path / "run.log")
    logger.addHandler(handler)
    security.install_log_redaction(logger)
    security.install_log_redaction(logger)  # idempotent
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    try:
        logger.warning("env has %s", os.environ["SSN3D_PASSWORD"])
        try:
            raise RuntimeError("failed with correct-horse-battery")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
        handler.close()
    written = (tmp_path / "run.log").read_text()
    assert "correct-horse-battery" not in written
    assert "env has ***" in written and "RuntimeError: failed with ***" in written


# --------------------------------------------------------------------------- Streamlit settings and Procfile


def test_streamlit_config_keeps_protections_on_and_matches_the_library():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; Streamlit's own reading below runs everywhere
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = cfg["server"]
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert server["fileWatcherType"] == "none" and server["headless"] is True
    assert server["maxUploadSize"] == security.MAX_UPLOAD_MB
    assert server["address"] == "localhost"
    # Streamlit itself reads the file the same way (a typo in a key would be silently ignored)
    code = (
        "from streamlit import config; config.get_config_options(force_reparse=True); "
        "print(config.get_option('server.enableXsrfProtection'), config.get_option('server.fileWatcherType'), "
        "config.get_option('server.maxUploadSize'), config.get_option('client.showErrorDetails'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "none", str(security.MAX_UPLOAD_MB), "none"]


def test_no_pages_folder_lets_pages_bypass_the_gate():
    """Streamlit serves every file of a ``pages/`` folder next to the main script at its own URL without
    running the main script (the old multipage layout), which would skip ``require_access``."""
    assert not (REPO / "app" / "pages").exists()
    main = (REPO / "app" / "main.py").read_text()
    assert main.index("require_access()") < main.index("st.navigation(")


def test_procfile_serves_the_app_on_port_for_a_server():
    lines = [ln for ln in (REPO / "Procfile").read_text().splitlines() if ln.startswith("web:")]
    assert len(lines) == 1
    web = lines[0]
    assert (
        "streamlit run app/main.py" in web
        and "--server.port $PORT" in web
        and "--server.address 0.0.0.0" in web
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_server_refuses_uploads_without_the_xsrf_token(tmp_path):
    """Start ``streamlit run`` with the project's config and try a forged upload from a foreign page."""
    (tmp_path / "page.py").write_text("import streamlit as st\nst.write('hello')\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(tmp_path / "page.py"), "--server.port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://localhost:{port}"
        deadline = time.monotonic() + 90  # a loaded 2-core machine can take tens of seconds to start it
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("streamlit did not start in 90 s")
                time.sleep(0.2)
        forged = urllib.request.Request(
            f"{base}/_stcore/upload_file/s/f",
            data=b"--b\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\nx\r\n--b--\r\n",
            method="PUT",
            headers={"Content-Type": "multipart/form-data; boundary=b", "Origin": "http://evil.example"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(forged, timeout=5)
        assert err.value.code == 403
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as r:  # still serving
            assert r.status == 200
            assert r.headers.get("Access-Control-Allow-Origin") != "*"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- the app's access gate

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the app is run from the repository root: `app` is imported from there

from app import auth  # noqa: E402

GATE = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
import streamlit as st
from app.auth import require_access
role = require_access()
st.markdown(f"PAGE CONTENT for {{role}}")
"""


@pytest.mark.parametrize(
    "address, password, allow_open, expected",
    [
        ("localhost", False, False, "local"),
        ("127.0.0.1", False, False, "local"),
        ("127.8.0.1", False, False, "local"),
        ("::1", False, False, "local"),
        ("[::1]", False, False, "local"),
        ("0.0.0.0", False, False, "refuse"),
        ("::", False, False, "refuse"),
        ("", False, False, "refuse"),  # unset: Streamlit listens on every interface
        (None, False, False, "refuse"),
        ("192.168.1.20", False, False, "refuse"),
        ("localhost.example.org", False, False, "refuse"),
        ("0.0.0.0", False, True, "open"),
        ("0.0.0.0", True, False, "password"),
        ("0.0.0.0", True, True, "password"),
        ("localhost", True, False, "password"),  # a password, once set, is always asked
    ],
)
def test_access_policy(address, password, allow_open, expected):
    assert auth.access_policy(address, password, allow_open) == expected


def test_passwords_compare_exactly_and_roles_follow_the_secret():
    assert auth.check_password("s3cret ✓", "s3cret ✓")
    for wrong in ("s3cret", "s3cret ✓ ", "", "S3CRET ✓"):
        assert not auth.check_password(wrong, "s3cret ✓")
    assert auth.login("team", password="team", operator="boss") == "user"
    assert auth.login("boss", password="team", operator="boss") == "operator"
    assert auth.login("", password=None, operator="boss") is None  # no user password: nothing else matches
    assert auth.login("x", password=None, operator=None) is None


def test_attempt_limiter_pauses_logins_then_recovers():
    lim = auth.AttemptLimiter(max_failures=3, window_s=60)
    for t in (0, 1, 2):
        assert lim.wait_s(now=t) == 0
        lim.failed(now=t)
    assert lim.wait_s(now=10) == pytest.approx(50)
    assert lim.wait_s(now=61) == 0  # the first failure left the window


@pytest.fixture
def gate(tmp_path, monkeypatch):
    """Run the gate in AppTest under a chosen bind address; restores Streamlit's option afterwards."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    for var in ("SSN3D_PASSWORD", "SSN3D_OPERATOR_PASSWORD", "SSN3D_ALLOW_OPEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(auth, "FAILURE_DELAY_S", 0.0)
    monkeypatch.setattr(auth, "LIMITER", auth.AttemptLimiter())
    script = tmp_path / "gate.py"
    script.write_text(GATE)
    old = config.get_option("server.address")

    def make(address: str, **secrets: str) -> AppTest:
        config.set_option("server.address", address)
        at = AppTest.from_file(str(script), default_timeout=60)
        for k, v in secrets.items():
            at.secrets[k] = v
        return at.run()

    yield make
    config.set_option("server.address", old)


def _text(at) -> str:
    return " ".join(m.value for m in at.markdown)


def _login(at, password: str):
    at.text_input(key="ssn3d_password").input(password)
    return at.button(key="FormSubmitter:ssn3d_login-Enter").click().run()


def test_gate_local_is_open_and_network_without_password_serves_nothing(gate, monkeypatch):
    at = gate("127.0.0.1")
    assert not at.exception and "PAGE CONTENT for operator" in _text(at)
    at = gate("0.0.0.0")
    assert not at.exception and "PAGE CONTENT" not in _text(at)
    assert "no password is set" in at.error[0].value and "SSN3D_PASSWORD" in at.error[0].value
    monkeypatch.setenv("SSN3D_ALLOW_OPEN", "1")
    at = gate("0.0.0.0")
    assert "PAGE CONTENT for user" in _text(at) and "open to anyone" in at.warning[0].value


def test_gate_asks_for_the_password_and_remembers_the_session(gate):
    at = gate("0.0.0.0", password="team-pass", operator_password="boss-pass")
    assert "PAGE CONTENT" not in _text(at) and at.text_input(key="ssn3d_password").value == ""
    at = _login(at, "team-pas")
    assert "PAGE CONTENT" not in _text(at) and at.error[0].value == "Wrong password."
    at = _login(at, "team-pass")
    assert "PAGE CONTENT for user" in _text(at) and not at.error
    at.run()  # a rerun (any widget) keeps the session in
    assert "PAGE CONTENT for user" in _text(at)
    at.sidebar.button(key="ssn3d_logout").click().run()
    assert "PAGE CONTENT" not in _text(at)
    at = _login(at, "boss-pass")
    assert "PAGE CONTENT for operator" in _text(at)


def test_gate_env_password_applies_even_on_localhost_and_a_changed_password_logs_out(gate, monkeypatch):
    monkeypatch.setenv("SSN3D_PASSWORD", "first-pass")
    at = _login(gate("localhost"), "first-pass")
    assert "PAGE CONTENT for user" in _text(at)
    monkeypatch.setenv("SSN3D_PASSWORD", "second-pass")
    at.run()
    assert "PAGE CONTENT" not in _text(at)


def test_gate_pauses_logins_after_too_many_wrong_passwords(gate, monkeypatch):
    monkeypatch.setattr(auth, "LIMITER", auth.AttemptLimiter(max_failures=2, window_s=600))
    at = gate("0.0.0.0", password="team-pass")
    for _ in range(2):
        at = _login(at, "guess")
    at = _login(at, "team-pass")  # even the right password waits now
    assert "PAGE CONTENT" not in _text(at) and "Too many wrong passwords" in at.error[0].value


def test_only_the_owner_session_or_the_operator_controls_a_run():
    me, other = "a" * 32, "b" * 32
    assert auth.may_control(me, me, "user")
    assert not auth.may_control(other, me, "user")
    assert not auth.may_control(None, me, "user")  # started outside the app: the operator's
    assert not auth.may_control("", me, "user")
    assert auth.may_control(other, me, "operator") and auth.may_control(None, me, "operator")


OWNER = (
    GATE
    + """
from app.auth import current_role, owner_tag
st.markdown(f"TAG {owner_tag()} ROLE {current_role()}")
"""
)


def test_owner_tag_is_stable_in_a_session_and_differs_between_sessions(gate, tmp_path):
    (tmp_path / "gate.py").write_text(OWNER)
    first, second = gate("localhost"), gate("localhost")
    tag = _text(first).split("TAG ")[1].split()[0]
    assert len(tag) == 32 and "ROLE operator" in _text(first)
    first.run()
    assert _text(first).split("TAG ")[1].split()[0] == tag
    assert _text(second).split("TAG ")[1].split()[0] != tag


@pytest.mark.slow
def test_the_procfile_command_serves_only_the_password_form_to_a_browser(tmp_path):
    """The Procfile's own `web:` command (bound to 0.0.0.0) in a real browser: the app stays hidden
    until the password is typed."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium package is not installed; scripts/test.sh installs it")
    from playwright.sync_api import expect, sync_playwright

    port = _free_port()
    web = next(ln for ln in (REPO / "Procfile").read_text().splitlines() if ln.startswith("web:"))
    command = web.removeprefix("web:").replace("$PORT", str(port)).split()
    command[0:1] = [sys.executable] if command[0] == "python" else command[0:1]
    env = {**os.environ, "SSN3D_HOME": str(tmp_path), "SSN3D_PASSWORD": "team-pass"}
    env.pop("SSN3D_DEMO", None)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.goto(f"{url}/annotate")  # a page's own URL runs the gate too
            expect(page.get_by_label("Password", exact=True)).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Annotate")).to_have_count(0)
            page.goto(url)
            box = page.get_by_label("Password", exact=True)
            expect(box).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Annotate")).to_have_count(0)
            box.fill("team-pas")
            page.get_by_role("button", name="Enter").click()
            expect(page.get_by_text("Wrong password.")).to_be_visible(timeout=15_000)
            expect(page.get_by_text("Annotate")).to_have_count(0)
            page.get_by_label("Password", exact=True).fill("team-pass")
            page.get_by_role("button", name="Enter").click()
            expect(page.get_by_text("Annotate").first).to_be_visible(timeout=30_000)
            expect(page.get_by_label("Password", exact=True)).to_have_count(0, timeout=30_000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_command_line_masks_secrets_in_its_logs(tmp_path):
    """Run logs are the CLI's own log output: once ``python -m ssn3d`` set up logging, a record that
    carries the password is written masked."""
    code = (
        "import logging, sys\nfrom ssn3d.__main__ import main\n"
        "main(['datasets', 'info', 'folder', sys.argv[1]])\n"
        "logging.getLogger('ssn3d.engine.train').warning('connecting with %s', 'zz-correct-horse-zz')\n"
    )
    env = {**os.environ, "SSN3D_PASSWORD": "zz-correct-horse-zz"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "nowhere")], env=env, capture_output=True, text=True
    )
    assert "connecting with ***" in out.stderr and "zz-correct-horse-zz" not in out.stderr + out.stdout
