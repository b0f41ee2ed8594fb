import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run(*args):
    return subprocess.run([sys.executable, str(HERE / "cli.py"), *args], capture_output=True, text=True, cwd=HERE)


def test_status_prints_kill_switch():
    cp = run("orchestrate", "status")
    assert cp.returncode == 0
    assert "execution_enabled=False" in cp.stdout
    assert "O4/O6-ready" in cp.stdout


def test_inspect_prints_json():
    cp = run("orchestrate", "inspect")
    assert cp.returncode == 0
    info = json.loads(cp.stdout.splitlines()[0])
    assert info["version"].startswith("0.6")


def test_unknown_action_fails():
    cp = run("orchestrate", "launch")
    assert cp.returncode == 2
