"""Who may change state from the dashboard: release managers, checked against salted token hashes.

Tokens are never stored, only ``pbkdf2_sha256$iterations$salt$hash`` (PBKDF2-HMAC-SHA256 from
``hashlib``, compared in constant time), from ``dashboard.release_managers`` in tollgate.yaml and
from ``TOLLGATE_RELEASE_MANAGERS`` (``name=hash,name=hash``) in the environment, which wins for a
name found in both. Everyone else is a viewer: they see every page, and every action refuses them
on the server, whatever the browser sends.

Where Streamlit's own OpenID Connect login is configured (``[auth]`` in ``.streamlit/secrets.toml``),
a user the identity provider logged in is a release manager when their e-mail (or name) is a key of
``release_managers``; the identity provider, not a token, proves who they are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from harness.policy import release_managers

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
SESSION_KEY = "tollgate_user"
_DUMMY = f"{ALGORITHM}${ITERATIONS}${'0' * 32}${'0' * 64}"


def hash_token(token: str, *, iterations: int = ITERATIONS, salt: str | None = None) -> str:
    """``pbkdf2_sha256$iterations$salt$hash`` for a token (a fresh random salt unless given)."""
    if not token:
        raise ValueError("an empty token cannot be hashed")
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = salt or secrets.token_hex(16)
    if "$" in salt:
        raise ValueError("the salt may not contain '$'")
    digest = hashlib.pbkdf2_hmac("sha256", token.encode(), salt.encode(), iterations).hex()
    return f"{ALGORITHM}${iterations}${salt}${digest}"


def verify_token(token: str, encoded: str) -> bool:
    """Whether ``token`` hashes to ``encoded``; a malformed hash never matches."""
    try:
        algorithm, iterations_s, salt, digest = encoded.split("$")
        iterations = int(iterations_s)
    except (ValueError, AttributeError):
        return False
    if algorithm != ALGORITHM or iterations < 1 or not salt:
        return False
    got = hashlib.pbkdf2_hmac("sha256", token.encode(), salt.encode(), iterations).hex()
    return hmac.compare_digest(got, digest)


def check(name: str, token: str, settings: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``name`` is a release manager and ``token`` is theirs.

    An unknown name costs the same hashing as a known one, so timing does not tell which names exist.
    """
    users = release_managers(settings, environ)
    encoded = users.get((name or "").strip())
    if encoded is None or not token:
        verify_token(token or "-", _DUMMY)
        return False
    return verify_token(token, encoded)


def is_release_manager(user: str | None, settings: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a logged-in user (already authenticated) may change state now; re-read on every action,
    so removing a name from the project file takes effect without restarting the dashboard."""
    return bool(user) and user in release_managers(settings, environ)


# -- the sidebar ---------------------------------------------------------------------------------------
def _oidc_configured() -> bool:
    import streamlit as st

    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: nothing configured
        return False


def current_user() -> str | None:
    """The logged-in user's name in this browser session (server-side state), or None for a viewer."""
    import streamlit as st

    user = st.session_state.get(SESSION_KEY)
    if user:
        return str(user)
    if _oidc_configured():
        try:
            if st.user.is_logged_in:
                return str(st.user.get("email") or st.user.get("name") or "") or None
        except Exception:
            return None
    return None


def login_sidebar(settings: Any) -> str | None:
    """Log in or out in the sidebar; returns the user name (None: a viewer)."""
    import streamlit as st

    side = st.sidebar
    user = current_user()
    if user:
        role = "release manager" if is_release_manager(user, settings) else "viewer (not a release manager)"
        side.markdown(f"Logged in as **{user}** · {role}")
        if side.button("Log out", key="tollgate_logout"):
            st.session_state.pop(SESSION_KEY, None)
            if _oidc_configured() and getattr(st.user, "is_logged_in", False):
                st.logout()
            st.rerun()
        return user
    side.caption("Viewing as a guest: every page is open to you; only release managers can advance or roll back.")
    if not release_managers(settings) and not _oidc_configured():
        side.caption("No release managers are configured: add one with `tollgate dashboard hash-token` under "
                     "`dashboard: release_managers:` in tollgate.yaml.")
    with side.form("tollgate_login", clear_on_submit=True):
        st.markdown("**Release manager login**")
        name = st.text_input("Name", key="tollgate_login_name")
        token = st.text_input("Token", type="password", key="tollgate_login_token")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if check(name, token, settings):
            st.session_state[SESSION_KEY] = name.strip()
            st.rerun()
        side.error("Unknown name or wrong token.")
    if _oidc_configured() and side.button("Log in with single sign-on", key="tollgate_sso"):
        st.login()
    return None
