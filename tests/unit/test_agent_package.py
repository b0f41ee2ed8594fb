"""The agent is a package that imports only the standard library and itself, and travels
as one program that leaves nothing on the target."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
import zlib
from pathlib import Path

from release import transport

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
