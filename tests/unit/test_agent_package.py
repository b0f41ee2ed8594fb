"""The agent is a package that imports only the standard library and itself, and travels
as one program that leaves nothing on the target."""

from __future__ import annotations

import ast
import base64
import json
import marshal
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from release import proc, transport
from release.errors import ReleaseError
from tests import support

AGENT = Path(__file__).resolve().parents[2] / "release" / "agent"


def test_the_agent_imports_only_the_standard_library_and_itself() -> None:
    """...and pypa installer, which travels inside the agent's program (see the next test)."""
    stdlib = set(sys.stdlib_module_names) | {"installer"}
    offenders = []
    for path in sorted(AGENT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: the package itself
                    continue
                mods = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {m}" for m in mods if m.split(".")[0] not in stdlib and m != "__future__"]
    assert offenders == [], offenders
    assert len(list(AGENT.glob("*.py"))) >= 8, "split by concern"


def test_the_program_carries_every_module_and_runs_isolated(tmp_path: Path) -> None:
    program = transport._bootstrap()
    blob = program.split("b64decode('", 1)[1].split("'", 1)[0]
    sources = json.loads(zlib.decompress(base64.b64decode(blob)))
    assert set(sources[transport.AGENT_PACKAGE]) == {p.stem for p in AGENT.glob("*.py")}
    assert "destinations" in sources["installer"], "pypa installer travels with the agent"
    assert len(program) < 100_000, "one command-line argument stays far below Linux's 128 KiB limit"
    cp = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program, "status", json.dumps({"root": str(tmp_path)})], capture_output=True, text=True, cwd=tmp_path
    )
    assert cp.returncode == 0, cp.stderr
    answer = json.loads(cp.stdout.strip().splitlines()[-1])
    assert answer["ok"] is True and answer["result"]["releases"] == []
    assert list(tmp_path.iterdir()) == [], "nothing is written on the target"


def test_unknown_op_and_unexpected_errors_are_answered_with_an_exit_code_and_traceback(tmp_path: Path) -> None:
    program = transport._bootstrap()
    cp = subprocess.run([sys.executable, "-I", "-S", "-c", program, "no-such-op", "{}"], capture_output=True, text=True)
    assert cp.returncode == 2 and json.loads(cp.stdout)["message"].startswith("unknown agent op")
    cp = subprocess.run([sys.executable, "-I", "-S", "-c", program, "verify", json.dumps({"nope": 1})], capture_output=True, text=True)
    answer = json.loads(cp.stdout)
    assert cp.returncode == 1 and "KeyError" in answer["message"] and "Traceback" in answer["traceback"]


def _other_python() -> str | None:
    """An interpreter whose bytecode format differs from this one's (the oldest target)."""
    for path in sorted((Path.home() / ".pyenv" / "versions").glob("3.8.*/bin/python")) + [Path(p) for p in filter(None, [shutil.which("python3.8")])]:
        if "/shims/" not in str(path):
            return str(path)
    return None


def test_the_compiled_code_on_stdin_runs_when_the_bytecode_format_matches_else_the_source(tmp_path: Path) -> None:
    """The code is read from stdin first; it is used only by an interpreter with the
    controller's magic number. A payload whose ops module answers a marker tells which ran."""
    codes = marshal.loads(zlib.decompress(transport._compiled()))
    assert set(codes) == {f"{transport.AGENT_PACKAGE}/{p.stem}" for p in AGENT.glob("*.py")}
    assert all(c.co_filename == f"<{k}.py>" for k, c in codes.items()), "no controller path travels"
    codes[f"{transport.AGENT_PACKAGE}/ops"] = compile('def main(argv):\n    print(\'{"ok": true, "result": "from-code"}\')\n    return 0\n', "<x>", "exec")
    payload = zlib.compress(marshal.dumps(codes))
    request = json.dumps({"root": str(tmp_path)})

    def answer(program: str) -> object:
        cp = subprocess.run([sys.executable, "-I", "-S", "-c", program, "status", request], input=payload, capture_output=True, cwd=tmp_path)
        assert cp.returncode == 0, cp.stderr
        return json.loads(cp.stdout.decode().strip().splitlines()[-1])["result"]

    assert answer(transport._program(len(payload))) == "from-code"
    other = answer(transport._program(len(payload), magic=b"\x00\x00\r\n"))
    assert isinstance(other, dict) and other["releases"] == [], "another bytecode format compiles the source"
    assert list(tmp_path.iterdir()) == []


def test_code_cut_short_or_damaged_on_stdin_stops_before_any_work(tmp_path: Path) -> None:
    payload = transport._compiled()
    cp = subprocess.run(
        [sys.executable, "-I", "-S", "-c", transport._program(len(payload)), "status", json.dumps({"root": str(tmp_path)})],
        input=payload[:1000],
        capture_output=True,
        text=False,
    )
    assert cp.returncode == 1 and cp.stdout == b"" and b"cut short" in cp.stderr
    damaged = bytes(b ^ 0x5A for b in payload)  # as a login script that wrote to stdin would leave it
    cp = subprocess.run(
        [sys.executable, "-I", "-S", "-c", transport._program(len(payload)), "status", json.dumps({"root": str(tmp_path)})],
        input=damaged,
        capture_output=True,
        text=False,
    )
    assert cp.returncode == 1 and cp.stdout == b"" and b"arrived damaged" in cp.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_older_target_python_gets_the_code_and_runs_the_source(tmp_path: Path) -> None:
    python = _other_python()
    support.need(python is not None, "python3.8 (the oldest target) is not installed")
    assert python is not None
    target = transport.LocalTransport(python)
    (tmp_path / "root").mkdir()
    result = target.agent("status", {"root": str(tmp_path / "root")})
    assert result["releases"] == [] and result["current"] == "none"
    cp = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=True)
    assert cp.stdout.strip() != str(tuple(sys.version_info[:2]))


def test_a_feed_puts_the_prefix_then_the_file_on_stdin_and_ends_when_the_reader_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(3 << 20))
    with data.open("rb") as f:
        cp = proc.run(["sh", "-c", "cat"], prefix=b"head:", stdin=f)
    assert cp.stdout == b"head:" + data.read_bytes()
    with data.open("rb") as f:  # a reader that stops early: the feed ends, nothing hangs
        cp = proc.run(["head", "-c", "10"], prefix=b"0123456789abcdef", stdin=f)
    assert cp.stdout == b"0123456789"
    with data.open("rb") as f, pytest.raises(ReleaseError, match="timed out"):
        proc.run(["sleep", "30"], prefix=b"x" * (4 << 20), stdin=f, timeout=1)
