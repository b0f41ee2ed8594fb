from __future__ import annotations

import json
import shlex
from pathlib import Path

from release.errors import ConfigError
from release.redact import redact, redact_obj, register_secret


def test_uri_password_is_masked() -> None:
    s = redact("connect postgresql://ro:s3cr3tpw@db.example:5432/app failed")
    assert "s3cr3tpw" not in s and "postgresql://ro:***@db.example" in s


def test_keyword_password_is_masked() -> None:
    for text in ("host=db password=s3cr3tpw user=ro", "password='s3 cr3t' host=x", "PASSWORD = s3cr3tpw"):
        assert "s3cr3t" not in redact(text)


def test_query_password_is_masked() -> None:
    assert "s3cr3tpw" not in redact("postgresql:///app?user=ro&password=s3cr3tpw&sslmode=require")


def test_registered_secret_masked_anywhere() -> None:
    register_secret("h0rse-battery")
    assert redact("the value h0rse-battery leaked") == "the value *** leaked"
    assert redact_obj({"a": ["x h0rse-battery"]}) == {"a": ["x ***"]}


def test_errors_are_redacted_at_construction() -> None:
    e = ConfigError("bad dsn postgresql://u:pw12345@h/db", hint="password=pw12345", detail="pw12345 postgresql://u:pw12345@h")
    assert "pw12345" not in e.message + e.hint + e.detail + str(e)


def test_what_a_hostile_target_prints_cannot_drive_the_operators_terminal(tmp_path: Path) -> None:
    """A target answers with escape sequences (retitle the window, write the clipboard,
    erase the line) in its answer and on its stderr: the CLI shows them escaped, never as
    control characters, on stdout and stderr alike; newlines and tabs stay."""
    import subprocess
    import sys

    answer = {"ok": False, "exit_code": 3, "message": "\x1b]0;pwned\x07no such root", "hint": "\x1b]52;c;cm0gLXJmIH4K\x07rerun\rDONE"}
    shim = tmp_path / "python-hostile"
    shim.write_text(f"#!/bin/sh\nprintf '\\033[2J\\033[31mred\\n' >&2\nprintf '%s\\n' {shlex.quote(json.dumps(answer))}\n")
    shim.chmod(0o755)
    (tmp_path / "release.toml").write_text(f'name = "app"\n[source]\nrepo = "."\nhead = "HEAD"\n[target]\nroot = "{tmp_path}/srv"\npython = "{shim}"\n')
    cp = subprocess.run([sys.executable, "-m", "release", "--config", str(tmp_path / "release.toml"), "status"], capture_output=True)
    assert cp.returncode == 3, cp.stderr
    both = cp.stdout + cp.stderr
    assert b"\x1b" not in both and b"\x07" not in both and b"\r" not in both, both
    assert b"\\x1b]0;pwned\\x07no such root" in cp.stderr and b"\\x0dDONE" in cp.stderr
