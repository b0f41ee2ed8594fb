"""The agent is a package that imports only the standard library and itself, and travels
as one program that leaves nothing on the target."""

from __future__ import annotations

import ast
import io
import json
import marshal
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from release import proc
from release.errors import ReleaseError
from release.remote import payload, transport
from tests import support

AGENT = Path(__file__).resolve().parents[3] / "release" / "agent"


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


def _run(program: str, prefix: bytes, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-I", "-S", "-c", program, *args], input=prefix, capture_output=True, cwd=cwd)


def test_the_program_carries_every_module_and_runs_isolated(tmp_path: Path) -> None:
    program, prefix = payload.agent_program()
    code = payload.compiled()
    assert prefix[: len(code)] == code
    sources = json.loads(zlib.decompress(prefix[len(code) :]))
    assert set(sources[payload.AGENT_PACKAGE]) == {p.stem for p in AGENT.glob("*.py")}
    assert "destinations" in sources["installer"], "pypa installer travels with the agent"
    assert len(program) < 4096, "the command line carries only the boot: the code rides on stdin"
    cp = _run(program, prefix, "status", json.dumps({"root": str(tmp_path)}), cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    answer = json.loads(cp.stdout.decode().strip().splitlines()[-1])
    assert answer["ok"] is True and answer["result"]["releases"] == []
    assert list(tmp_path.iterdir()) == [], "nothing is written on the target"


def test_unknown_op_and_unexpected_errors_are_answered_with_an_exit_code_and_traceback(tmp_path: Path) -> None:
    program, prefix = payload.agent_program()
    cp = _run(program, prefix, "no-such-op", "{}")
    assert cp.returncode == 2 and json.loads(cp.stdout)["message"].startswith("unknown agent op")
    cp = _run(program, prefix, "verify", json.dumps({"nope": 1}))
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
    codes = marshal.loads(zlib.decompress(payload.compiled()))
    assert set(codes) == {f"{payload.AGENT_PACKAGE}/{p.stem}" for p in AGENT.glob("*.py")}
    assert all(c.co_filename == f"<{k}.py>" for k, c in codes.items()), "no controller path travels"
    codes[f"{payload.AGENT_PACKAGE}/ops"] = compile('def main(argv):\n    print(\'{"ok": true, "result": "from-code"}\')\n    return 0\n', "<x>", "exec")
    packed = zlib.compress(marshal.dumps(codes))
    sources = payload.sources()
    request = json.dumps({"root": str(tmp_path)})

    def answer(program: str) -> object:
        cp = _run(program, packed + sources, "status", request, cwd=tmp_path)
        assert cp.returncode == 0, cp.stderr
        return json.loads(cp.stdout.decode().strip().splitlines()[-1])["result"]

    assert answer(payload.program(len(packed), len(sources))) == "from-code"
    other = answer(payload.program(len(packed), len(sources), magic=b"\x00\x00\r\n"))
    assert isinstance(other, dict) and other["releases"] == [], "another bytecode format compiles the source"
    assert list(tmp_path.iterdir()) == []


def test_code_cut_short_or_damaged_on_stdin_stops_before_any_work(tmp_path: Path) -> None:
    program, prefix = payload.agent_program()
    request = json.dumps({"root": str(tmp_path)})
    cut = _run(program, prefix[:1000], "status", request)
    assert cut.returncode == 1 and cut.stdout == b"" and b"cut short" in cut.stderr
    cut = _run(program, prefix[:-10], "status", request)  # the code whole, the sources not
    assert cut.returncode == 1 and cut.stdout == b"" and b"cut short" in cut.stderr
    damaged = bytes(b ^ 0x5A for b in prefix)  # as a login script that wrote to stdin would leave it
    cp = _run(program, damaged, "status", request)
    assert cp.returncode == 1 and cp.stdout == b"" and b"arrived damaged" in cp.stderr
    code_size = len(payload.compiled())
    other = payload.program(code_size, len(prefix) - code_size, magic=b"\x00\x00\r\n")  # the sources are read
    cp = _run(other, prefix[:code_size] + bytes(b ^ 0x5A for b in prefix[code_size:]), "status", request)
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
    with data.open("rb") as f, pytest.raises(ReleaseError, match="no end within"):
        proc.run(["sleep", "30"], prefix=b"x" * (4 << 20), stdin=f, timeout=0.3)


def test_a_target_that_prints_without_end_cannot_fill_the_controllers_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the agent prints is kept up to ``MAX_OUTPUT`` per stream: a hostile or broken
    target that streams without end is stopped there and killed, not read to the end. A
    read-only op is an error; an op that changes the target is an unknown outcome (its
    answer was never read), reconciled later like a lost connection."""
    from release.errors import OutcomeUnknownError

    monkeypatch.setattr(proc, "MAX_OUTPUT", 1 << 20)
    marker = tmp_path / "still-running"
    started = time.monotonic()
    with pytest.raises(proc.OutputTooLarge, match="more than 1 MiB"):
        proc.run(["sh", "-c", f"head -c 5000000 /dev/zero; sleep 30; touch {marker}"], prefix=b"x")
    assert time.monotonic() - started < 20, "stopped at the limit, not at the command's end"
    cp = proc.run(["sh", "-c", "head -c 900000 /dev/zero; head -c 900000 /dev/zero >&2; exit 3"], prefix=b"x", check=False)
    assert (len(cp.stdout), len(cp.stderr), cp.returncode) == (900000, 900000, 3), "under the limit everything is kept"
    flood = tmp_path / "python-flood"
    flood.write_text("#!/bin/sh\nexec head -c 5000000 /dev/zero\n")
    flood.chmod(0o755)
    target = transport.LocalTransport(str(flood))
    with pytest.raises(ReleaseError, match="printed more than") as err:
        target.agent("status", {"root": str(tmp_path)})
    assert not isinstance(err.value, OutcomeUnknownError)
    with pytest.raises(OutcomeUnknownError, match="outcome unknown"):
        target.agent("rollback", {"root": str(tmp_path)})
    assert not marker.exists()


@pytest.mark.parametrize("answer", ['{"ok": true}', '{"ok": true, "result": [1, 2]}', '{"ok": true, "result": "done"}'])
def test_an_answer_that_is_not_the_agents_is_never_taken_as_done(tmp_path: Path, answer: str) -> None:
    """A target whose "agent" says ok without a result (a hostile or broken interpreter):
    a read-only op is an error naming the host, a changing op an unknown outcome; never a
    traceback, never success."""
    from release.errors import OutcomeUnknownError

    fake = tmp_path / "python-fake"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{answer}'\n")
    fake.chmod(0o755)
    target = transport.LocalTransport(str(fake))
    with pytest.raises(ReleaseError, match="gave no answer") as err:
        target.agent("status", {"root": str(tmp_path)})
    assert not isinstance(err.value, OutcomeUnknownError)
    with pytest.raises(OutcomeUnknownError):
        target.agent("rollback", {"root": str(tmp_path)})


@pytest.mark.parametrize("version", ["3.6", "2.7"])
def test_a_target_python_too_old_is_blocked_before_anything_and_never_unknown(tmp_path: Path, version: str) -> None:
    """RHEL 8's platform Python is 3.6: the boot program says so first (the agent's code
    would not even compile there), and Python 2 stops at ``-I``. Either way exit 3 naming
    the version, for a deploy too: nothing was started, so the outcome is not "unknown"."""
    from release.errors import BlockedError

    found = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}")) + [
        Path(p) for p in filter(None, [shutil.which(f"python{version}")]) if "/shims/" not in p
    ]
    if not found:
        pytest.skip(f"python{version} is not installed here")
    target = transport.LocalTransport(str(found[0]))
    for op in ("status", "deploy"):
        with pytest.raises(BlockedError) as err:
            target.agent(op, {"root": str(tmp_path)}, stdin=io.BytesIO(b"x" * 1000))
        assert ("older than 3.8" in err.value.message or "Python 2" in err.value.message) and "target.python" in err.value.hint
    assert list(tmp_path.iterdir()) == []


def test_the_boot_program_is_the_boot_module_minified_and_can_dump_what_it_received(tmp_path: Path) -> None:
    """The program on the command line is release/remote/boot.py with its constants filled in and
    its docstrings, comments, annotations and type-checking block removed; with
    RELEASE_AGENT_DUMP set on the target it writes the agent's sources as received."""
    import ast

    program, prefix = payload.agent_program()
    assert '"""' not in program and "TYPE_CHECKING" not in program and "CodeType" not in program and "# " not in program
    assert {n.name for n in ast.walk(ast.parse(program)) if isinstance(n, ast.FunctionDef)} >= {"boot", "find_spec", "exec_module"}
    dump = tmp_path / "dump"
    env = {**os.environ, "RELEASE_AGENT_DUMP": str(dump)}
    cp = subprocess.run([sys.executable, "-I", "-S", "-c", program, "status", json.dumps({"root": str(tmp_path)})], input=prefix, capture_output=True, env=env)
    assert cp.returncode == 0, cp.stderr
    assert (dump / payload.AGENT_PACKAGE / "ops.py").read_text() == (AGENT / "ops.py").read_text()
    assert (dump / "installer" / "__init__.py").is_file()
