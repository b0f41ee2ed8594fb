"""The one redaction function: every log line, error, report and exception goes through it.

It removes the password part of URI-style DSNs (``postgresql://user:pw@host``), the
value of ``password=...`` keyword pairs (libpq keyword DSNs), and any literal secret
registered at run time with :func:`register_secret` (for example the password parsed
from a DSN taken from the environment), wherever it appears.
"""

from __future__ import annotations

import _thread
import re

MASK = "***"

_URI_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KEYWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key|sslpassword)\s*[=:]\s*)"
    r"(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&'\"]+)",
    re.IGNORECASE,
)
# a bare token as the user part of a web URL (https://TOKEN@host/...): all of it is secret
_WEB_USERINFO = re.compile(r"(?P<scheme>\b(?:[a-z0-9+.-]*\+)?https?://)(?P<user>[^:/@\s]+)@", re.IGNORECASE)
_QUERY_PW = re.compile(r"(?P<key>[?&]password=)(?P<val>[^&\s#]*)", re.IGNORECASE)

_lock = _thread.allocate_lock()  # threading's Lock, without importing threading for every command
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a literal secret so that it is masked wherever it appears later."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def redact(text: object) -> str:
    """Return ``text`` as a string with every known form of secret masked."""
    s = text if isinstance(text, str) else str(text)
    if not s:
        return s
    # a password seen in a DSN is remembered, so a bare mention of it is masked too
    for m in _URI_USERINFO.finditer(s):
        register_secret(m["pw"])
    for m in _WEB_USERINFO.finditer(s):
        if len(m["user"]) >= 12:  # a token, not a plain user name like "git"
            register_secret(m["user"])
    for rx in (_QUERY_PW, _KEYWORD):
        for m in rx.finditer(s):
            register_secret(m["val"].strip("'\""))
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, MASK)
    s = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", s)
    s = _WEB_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", s)
    s = _QUERY_PW.sub(lambda m: f"{m['key']}{MASK}", s)
    s = _KEYWORD.sub(lambda m: f"{m['key']}{MASK}", s)
    return s


def redact_obj(obj: object) -> object:
    """Redact every string inside a JSON-like structure (reports, records)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


# every control character but newline and tab, C0 and C1 (ESC starts a terminal's escape
# sequences, CSI is one byte in C1, CR rewrites the line), shown as \xNN instead
_UNSHOWABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}
# a name's bytes that are not UTF-8 (os.fsdecode makes them U+DC80-U+DCFF) as the bytes they
# are, \xNN: written raw, 0x9b is a terminal's CSI, and a UTF-8 terminal's stdout cannot
# encode them at all; any other lone surrogate as \uNNNN
_UNSHOWABLE.update({c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)})
_UNSHOWABLE.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000) if c not in _UNSHOWABLE})


def shown(text: object) -> str:
    """``redact(text)`` as it may reach the operator's terminal: what a target, a repository
    or an application printed cannot move the cursor, retitle the window or write the
    clipboard (its control characters are shown escaped)."""
    return redact(text).translate(_UNSHOWABLE)
