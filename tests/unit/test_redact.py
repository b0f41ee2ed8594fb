from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

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


def test_a_process_holding_a_secret_cannot_be_read_by_a_check_of_the_same_user() -> None:
    """As an unprivileged user (no CAP_SYS_PTRACE; ptrace_scope as the machine has it): a
    process takes a DSN, then runs a "check" of the same user that reads its memory through
    /proc/<pid>/mem, region by region, looking for the password. Without no_dump the check
    finds it; with it, the kernel refuses the read."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    setpriv = shutil.which("setpriv") or ""
    system_python = "/usr/bin/python3"
    if os.geteuid() != 0 or not setpriv or not Path(system_python).exists():
        pytest.skip("needs root (to become nobody), setpriv and /usr/bin/python3")
    repo = str(Path(__file__).resolve().parents[2])
    reader = r"""
import os, re, sys
pid, secret = int(sys.argv[1]), sys.argv[2].encode()
try:
    maps = open(f"/proc/{pid}/maps").read().splitlines()
    mem = open(f"/proc/{pid}/mem", "rb", 0)
except PermissionError:
    print("denied"); sys.exit(0)
for line in maps:
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) rw", line)
    if not m: continue
    try:
        mem.seek(int(m[1], 16)); data = mem.read(int(m[2], 16) - int(m[1], 16))
    except OSError:
        continue
    if secret in data:
        print("found"); sys.exit(0)
print("not found")
"""
    holder = f"""
import os, subprocess, sys
sys.path.insert(0, {repo!r})
from release import secretenv
if sys.argv[1] == "take":
    secretenv.take(["RO_DSN"])
else:
    held = os.environ["RO_DSN"]  # held without no_dump: the control case
out = subprocess.run([sys.executable, "-c", {reader!r}, str(os.getpid()), "hunter2-sekrit-pw"], capture_output=True, text=True, env={{}})
print(out.stdout.strip() or out.stderr.strip())
"""
    env = {"RO_DSN": "postgresql://ro:hunter2-sekrit-pw@db/app", "PATH": "/usr/bin:/bin"}
    base = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", system_python, "-c", holder]
    control = subprocess.run([*base, "hold"], capture_output=True, text=True, env=env, cwd="/")
    assert control.stdout.strip() == "found", (control.stdout, control.stderr)
    cp = subprocess.run([*base, "take"], capture_output=True, text=True, env=env, cwd="/")
    assert cp.stdout.strip() == "denied", (cp.stdout, cp.stderr)


def test_index_credentials_reach_only_the_resolver_and_the_downloader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every UV_*/PIP_* variable that holds a credential is kept from other children
    (proc.clean_env); the resolver and the downloader get the same indexes, with it."""
    from release import proc
    from release.source import indexes

    monkeypatch.setenv("UV_DEFAULT_INDEX", "priv=https://pkgs.example/simple")
    monkeypatch.setenv("UV_INDEX_PRIV_USERNAME", "deployer")
    monkeypatch.setenv("UV_INDEX_PRIV_PASSWORD", "hunter2-index")
    monkeypatch.setenv("UV_INDEX", "https://ci:tok3n-xyz@mirror.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://elsewhere.example/simple")
    clean = proc.clean_env()
    assert not {k: v for k, v in clean.items() if "hunter2-index" in v or "tok3n-xyz" in v or k == "UV_INDEX_PRIV_PASSWORD"}
    # the indexes keep their place without the credentials: a build never falls back elsewhere
    assert clean["UV_INDEX"] == "https://mirror.example/simple" and clean["UV_DEFAULT_INDEX"] == "priv=https://pkgs.example/simple"
    found = indexes.read()
    assert found.uv_env["UV_INDEX_PRIV_PASSWORD"] == "hunter2-index" and "tok3n-xyz" in found.uv_env["UV_INDEX"]
    pip = found.pip_env()
    assert pip["PIP_INDEX_URL"] == "https://deployer:hunter2-index@pkgs.example/simple"
    assert pip["PIP_EXTRA_INDEX_URL"] == "https://ci:tok3n-xyz@mirror.example/simple", "pip reads no other index"
    assert pip["PIP_CONFIG_FILE"] == os.devnull
    from release.redact import redact

    assert "hunter2-index" not in redact(pip["PIP_INDEX_URL"])


def test_an_index_variable_that_is_no_url_is_exit_2_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from release.errors import ConfigError
    from release.source import indexes

    monkeypatch.setenv("UV_DEFAULT_INDEX", "not a url")
    with pytest.raises(ConfigError) as err:
        indexes.read()
    assert "UV_DEFAULT_INDEX" in err.value.message and err.value.exit_code == 2


def test_names_that_are_not_utf8_are_shown_as_their_bytes_escaped() -> None:
    """A file name's undecodable bytes (os.fsdecode's U+DC80-U+DCFF) reach a terminal as
    ``\\xNN``: raw, 0x9b is CSI, and a UTF-8 stdout cannot encode them; any other lone
    surrogate as ``\\uNNNN``; the text printed is always valid UTF-8."""
    import os

    from release.redact import shown

    name = os.fsdecode(b"bad\xff\x9b[2Jname")
    assert shown(name) == "bad\\xff\\x9b[2Jname"
    assert shown("x\ud800y") == "x\\ud800y"
    assert shown("caf\u00e9 \u2603") == "caf\u00e9 \u2603"
    shown(name).encode("utf-8")  # no surrogate is left to fail a strict encoder
