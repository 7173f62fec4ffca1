"""The access gate: who may use the app when it is served beyond this machine (issue 8).

Whoever reaches the app's port can read frames from the server's disk, write labels and start
training runs, so ``app/main.py`` calls ``require_access()`` before anything else:

* a password is configured (env ``SSN3D_PASSWORD`` or ``password`` in ``.streamlit/secrets.toml``):
  every session must enter it once; it is compared in constant time and remembered in the session;
* no password and the server bound to this machine only (``server.address`` is ``localhost`` or
  a loopback address, as ``.streamlit/config.toml`` sets): the app is open, as a desktop tool is;
* no password and bound to the network (``0.0.0.0``, a public address, or unset, which Streamlit
  treats as every interface): the app refuses to serve, unless ``SSN3D_ALLOW_OPEN=1``, in which case
  every page shows a banner that it is open to anyone.

An optional second secret, ``SSN3D_OPERATOR_PASSWORD`` (or ``operator_password`` in the secrets),
logs in as the operator, who may cancel anyone's run; on a local-only app the user is the operator.
Every other session controls only the runs it launched: ``owner_tag()`` names the session (store
it with the run) and ``may_control`` decides. ``access_policy`` holds the whole access decision as a
pure function. See docs/SECURITY.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping

import streamlit as st

log = logging.getLogger(__name__)

LOCAL, PASSWORD, OPEN, REFUSE = "local", "password", "open", "refuse"
OPERATOR, USER = "operator", "user"
MAX_FAILURES = 10  # failed logins, over all sessions, within FAILURE_WINDOW_S before logins pause
FAILURE_WINDOW_S = 60.0
FAILURE_DELAY_S = 1.0  # each wrong password costs its session this long: guessing stays slow
_STATE_KEY = "_ssn3d_access"  # session_state: (role, fingerprint of the secret it was granted with)
_OWNER_KEY = "_ssn3d_owner"  # session_state: a random token naming this browser session
_ROLE_KEY = "_ssn3d_role"  # session_state: the role of the last require_access() call


def is_local_address(address: str | None) -> bool:
    """True for ``localhost`` and loopback IPs; False for ``0.0.0.0``, ``::``, other hosts and unset
    (Streamlit listens on every interface when ``server.address`` is unset)."""
    if not address:
        return False
    text = address.strip().strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def access_policy(bind_address: str | None, password_set: bool, allow_open: bool) -> str:
    """Decide how the app is served.

    Args:
        bind_address: Streamlit's ``server.address`` (None or "" when unset).
        password_set: an access password is configured.
        allow_open: the operator set ``SSN3D_ALLOW_OPEN=1``.

    Returns:
        ``"password"`` (ask for it), ``"local"`` (open, bound to this machine), ``"open"`` (open to
        the network with a banner) or ``"refuse"`` (serve nothing).
    """
    if password_set:
        return PASSWORD
    if is_local_address(bind_address):
        return LOCAL
    return OPEN if allow_open else REFUSE


def check_password(given: str, expected: str) -> bool:
    """Constant-time comparison (of digests, so the length of the secret does not leak either)."""
    a = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(a, b)


def _fingerprint(secret: str) -> str:
    return hmac.new(b"ssn3d-session", secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _secret(key: str) -> str | None:
    try:
        value = st.secrets.get(key)
    except Exception:  # no secrets.toml (or an unreadable one): nothing configured there
        return None
    return value if isinstance(value, str) and value else None


def configured_password(env: Mapping[str, str] | None = None) -> str | None:
    """The access password: ``SSN3D_PASSWORD``, else ``password`` in Streamlit secrets, else None."""
    env = os.environ if env is None else env
    return env.get("SSN3D_PASSWORD") or _secret("password")


def operator_password(env: Mapping[str, str] | None = None) -> str | None:
    """The operator's password: ``SSN3D_OPERATOR_PASSWORD``, else ``operator_password`` in secrets."""
    env = os.environ if env is None else env
    return env.get("SSN3D_OPERATOR_PASSWORD") or _secret("operator_password")


def allow_open(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("SSN3D_ALLOW_OPEN", "").strip().lower() in ("1", "true", "yes")


class AttemptLimiter:
    """At most ``max_failures`` failed logins per ``window_s`` seconds over all sessions (thread-safe)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._failures and now - self._failures[0] > self.window_s:
            self._failures.popleft()

    def wait_s(self, now: float | None = None) -> float:
        """Seconds until a login may be tried again (0 when it may be tried now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(now)
            if len(self._failures) < self.max_failures:
                return 0.0
            return self.window_s - (now - self._failures[0])

    def failed(self, now: float | None = None) -> None:
        with self._lock:
            self._failures.append(time.monotonic() if now is None else now)


LIMITER = AttemptLimiter()


def login(given: str, *, password: str | None, operator: str | None) -> str | None:
    """The role a typed secret grants (``"operator"``, ``"user"``) or None; both are always compared."""
    is_operator = operator is not None and check_password(given, operator)
    is_user = password is not None and check_password(given, password)
    return OPERATOR if is_operator else USER if is_user else None


def owner_tag() -> str:
    """A tag naming this browser session, safe to save with a run it launches (a digest of a random
    token that never leaves the server's memory). A reload starts a new session, hence a new tag."""
    token = st.session_state.get(_OWNER_KEY)
    if not token:
        token = st.session_state[_OWNER_KEY] = secrets.token_hex(16)
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def may_control(run_owner: str | None, me: str, role: str | None) -> bool:
    """Whether a session may cancel or resume a run: the operator always, others only their own runs.

    Args:
        run_owner: the ``owner_tag()`` saved with the run (None for runs started outside the app).
        me: this session's ``owner_tag()``.
        role: this session's role (``require_access``'s return value).
    """
    if role == OPERATOR:
        return True
    return bool(run_owner) and hmac.compare_digest(str(run_owner), me)


def current_role() -> str | None:
    """The role ``require_access`` gave this browser session on this script run, else None."""
    return st.session_state.get(_ROLE_KEY)


def _login_form(password: str | None, operator: str | None) -> None:
    st.title("SSN3D Studio")
    st.caption("This server asks for the password its operator set.")
    with st.form("ssn3d_login", clear_on_submit=True):
        given = st.text_input("Password", type="password", key="ssn3d_password")
        submitted = st.form_submit_button("Enter")
    if not submitted:
        st.stop()
    wait = LIMITER.wait_s()
    if wait > 0:
        st.error(f"Too many wrong passwords on this server; try again in {wait:.0f} s.")
        st.stop()
    role = login(given or "", password=password, operator=operator)
    if role is None:
        LIMITER.failed()
        log.warning("a wrong password was entered")
        time.sleep(FAILURE_DELAY_S)
        st.error("Wrong password.")
        st.stop()
    secret = operator if role == OPERATOR else password
    assert secret is not None  # login() grants a role only for a configured secret
    st.session_state[_STATE_KEY] = (role, _fingerprint(secret))
    st.rerun()


def require_access() -> str:
    """Let this session in or stop the script: the first call of ``app/main.py``.

    Returns:
        The session's role: ``"operator"`` (may cancel any run) or ``"user"``.
    """
    st.session_state.pop(_ROLE_KEY, None)
    role = _admit()
    st.session_state[_ROLE_KEY] = role
    return role


def _admit() -> str:
    """The role under the access policy; stops the script (login form or refusal) when there is none."""
    password, operator = configured_password(), operator_password()
    bind = st.get_option("server.address")
    policy = access_policy(bind, bool(password or operator), allow_open())
    if policy == LOCAL:
        return OPERATOR  # the person at this machine runs it
    if policy == OPEN:
        st.warning(
            "This app is open to anyone who reaches this server (SSN3D_ALLOW_OPEN=1, no password): they can "
            "read the datasets, change labels and start training. Set SSN3D_PASSWORD to close it.",
            icon="⚠️",
        )
        return USER
    if policy == REFUSE:
        log.error("refusing to serve: bound to %r with no password; see docs/SECURITY.md", bind)
        st.error(
            f"This server listens on {bind or 'every network interface'} and no password is set, so it serves "
            "nothing: set SSN3D_PASSWORD, bind it to localhost, or set SSN3D_ALLOW_OPEN=1 to serve it open."
        )
        st.stop()
    granted = st.session_state.get(_STATE_KEY)
    valid = {_fingerprint(s): r for s, r in ((password, USER), (operator, OPERATOR)) if s}
    if granted and valid.get(granted[1]) == granted[0]:
        if st.sidebar.button("Log out", key="ssn3d_logout"):
            del st.session_state[_STATE_KEY]
            st.rerun()
        return granted[0]
    st.session_state.pop(_STATE_KEY, None)  # granted under a secret that has since changed
    _login_form(password, operator)
    return USER  # not reached: the form stops or reruns the script
