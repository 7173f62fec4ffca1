"""Secrets never reach logs or run folders: the redaction itself, log handlers, and the CLI's own logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from ssn3d.serving.redact import RedactingFilter, install_log_redaction, redact, redact_text


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
    install_log_redaction(logger)
    install_log_redaction(logger)  # idempotent
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
