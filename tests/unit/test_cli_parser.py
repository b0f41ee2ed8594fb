"""The CLI builds only the sub-parser of the stage its command line names; what it parses
must be what the whole parser parses, and errors must read as the whole parser words them."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from release import cli
from release.errors import ConfigError

LINES = [
    ["deploy"],
    ["--config", "x.toml", "deploy", "--bundle", "b.tar.gz", "--no-plan"],
    ["--config=x.toml", "rollback", "--deploy-id", "D", "--discard-added"],
    ["--conf", "deploy", "rollback"],  # an abbreviated option whose value is a stage name
    ["--config", "rollback", "deploy"],
    ["-v", "--limit", "web", "smoke", "--mode", "dryrun", "--json"],
    ["--limit", "deploy", "status"],
    ["verify", "--deploy-id", "X", "--config", "c.toml"],
    ["promote", "--break-lock"],
    ["plan"],
    ["provision", "--undo"],
    ["bundle", "--reproducible-check", "--sign", "k"],
]


def _parsed(parser_argv: list[str] | None, argv: list[str]) -> dict[str, Any]:
    ns = vars(cli.build_parser(parser_argv).parse_args(argv))
    handler = ns.pop("handler")
    return {**ns, "handler": (handler.__qualname__, [c.cell_contents for c in handler.__closure__ or ()])}


@pytest.mark.parametrize("argv", LINES, ids=[" ".join(a) for a in LINES])
def test_the_stage_parser_alone_parses_as_the_whole_parser(argv: list[str]) -> None:
    assert cli._stage_named(argv) in cli.STAGES
    assert _parsed(argv, argv) == _parsed(None, argv)


def test_no_stage_or_help_builds_every_stage() -> None:
    assert cli._stage_named(["--config", "deploy"]) is None
    assert cli._stage_named(["--help", "deploy"]) is None
    assert cli._stage_named(["nope"]) is None
    assert cli._stage_named(["--", "deploy"]) is None


@pytest.mark.parametrize("argv", [["nope"], ["deploy", "--bogus"], ["--conf", "deploy", "rollback", "--bogus"], []])
def test_usage_errors_read_as_the_whole_parser_words_them(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "ERROR (usage/config)" in err
    if argv == ["nope"]:
        assert "choose from 'bundle', 'deploy', 'rollback'" in err
    with pytest.raises(ConfigError):
        cli.build_parser().parse_args(argv)


def test_only_the_program_freezes_what_its_imports_made(tmp_path: Path) -> None:
    """``gc.freeze()`` (no collection walks the imports' objects again) happens when the CLI
    runs as the program, never when Python code (a test) calls ``main`` with its argv."""
    cfg = tmp_path / "release.toml"
    cfg.write_text(f'name = "app"\n[source]\nrepo = "{tmp_path}"\nhead = "HEAD"\n[target]\nroot = "{tmp_path / "root"}"\n')
    before = gc.get_freeze_count()
    cli.main(["--config", str(cfg), "status"])
    assert gc.get_freeze_count() == before
    program = "import gc, sys\nfrom release.cli import main\nsys.argv[1:] = ['--config', sys.argv[1], 'status']\nmain()\nprint(gc.get_freeze_count())"
    out = subprocess.run([sys.executable, "-c", program, str(cfg)], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1]) > 1000  # the objects of every module the CLI imported (about 11,000)


def test_the_program_exits_with_its_handlers_run_and_its_output_whole(tmp_path: Path) -> None:
    """The console script ends without tearing the interpreter down, but what an exit must
    do is done: the exit handlers run, every byte of a long answer reaches the pipe, the
    exit code is the stage's; with a second thread alive it exits the ordinary way."""
    cfg = tmp_path / "release.toml"
    cfg.write_text(f'name = "app"\n[source]\nrepo = "{tmp_path}"\nhead = "HEAD"\n[target]\nroot = "{tmp_path / "root"}"\n')
    program = (
        "import atexit, sys, threading, time\n"
        "from release import cli\n"
        "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
        "if sys.argv[2] == 'thread':\n"
        "    threading.Thread(target=lambda: (time.sleep(0.3), print('thread ended', file=sys.stderr))).start()\n"
        "sys.argv[1:] = sys.argv[3:]\n"
        "cli.run()\n"
    )
    for mode in ("alone", "thread"):
        done = subprocess.run([sys.executable, "-c", program, "x", mode, "--config", str(cfg), "--json", "status"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "handler ran" in done.stderr
        assert ("thread ended" in done.stderr) == (mode == "thread"), "a live thread is joined, as by any exit"
        assert json.loads(done.stdout)["exit_code"] == 0  # the whole answer, parsed
    missing = subprocess.run([sys.executable, "-c", program, "x", "alone", "--config", str(tmp_path / "nope.toml"), "status"], capture_output=True, text=True)
    assert missing.returncode == 2 and "ERROR (usage/config)" in missing.stderr and "handler ran" in missing.stderr
