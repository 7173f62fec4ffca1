"""The app's access gate: who may open the app, log in, and control a run (AppTest, no browser)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

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
