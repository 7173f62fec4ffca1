"""How the app is served: Streamlit's settings keep their protections, the Procfile binds a port, and
a real server (and a real browser) refuse what they must. The slow tests start real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ssn3d.serving.uploads import MAX_UPLOAD_MB

REPO = Path(__file__).resolve().parents[1]


def test_streamlit_config_keeps_protections_on_and_matches_the_library():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; Streamlit's own reading below runs everywhere
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = cfg["server"]
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert server["fileWatcherType"] == "none" and server["headless"] is True
    assert server["maxUploadSize"] == MAX_UPLOAD_MB
    assert server["address"] == "localhost"
    # Streamlit itself reads the file the same way (a typo in a key would be silently ignored)
    code = (
        "from streamlit import config; config.get_config_options(force_reparse=True); "
        "print(config.get_option('server.enableXsrfProtection'), config.get_option('server.fileWatcherType'), "
        "config.get_option('server.maxUploadSize'), config.get_option('client.showErrorDetails'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "none", str(MAX_UPLOAD_MB), "none"]


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
