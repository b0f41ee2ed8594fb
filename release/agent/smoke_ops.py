"""Op smoke (G5): the checks in the deployed folder, bounded, with a clean environment."""

from __future__ import annotations

import os
import time

from . import journal, jsonio
from .children import become_subreaper, clean_env, expand, kill_descendants, run_bounded
from .fsutil import open_dir, path_kind
from .leftovers import _remove_marked, make_marked_dir
from .names import checked_id
from .protocol import DEPLOY_MANIFEST, AgentError, say
from .release_tree import read_deploy_manifest
from .status_ops import op_verify

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from .messages import CheckResult, CheckSpec, SmokeRequest, SmokeResult

# ----------------------------------------------------------------------------- smoke (G5)

_ATTR_SCRIPT = """
import importlib, json, sys

mod, _, attr = sys.argv[1].partition(":")
obj = importlib.import_module(mod)
for part in attr.split("."):
    obj = getattr(obj, part)
try:
    print(json.dumps(obj))
except TypeError:
    print(json.dumps(repr(obj)))
"""

_IMPORT_SCRIPT = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n    print('imported', m)\n"


def _pytest_counts(output: str) -> dict[str, int]:
    import re

    counts: dict[str, int] = {}
    for line in reversed(output.strip().splitlines()):
        if re.search(r"\bin [0-9.]+s\b", line) and re.search(r"\d+ (passed|failed|error|errors|skipped|no tests ran)", line):
            for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)", line):
                key = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[key] = counts.get(key, 0) + int(n)
            break
    return counts


def _junit_counts(path: str) -> dict[str, int]:
    """The counts of pytest's JUnit XML report: what the smoke reads when the project's own
    options (``-q`` in its addopts, plus ours) leave no summary line. Only the attributes of
    its first ``<testsuite`` are read, from the file's first 64 KiB, by pattern: no XML
    parser (and no entity it could be made to expand) sees what the app's tests wrote."""
    import re

    try:
        with open(path, "rb") as f:
            head = f.read(64 << 10).decode("utf-8", "replace")
    except OSError:
        return {}
    m = re.search(r"<testsuite\b([^>]*)>", head)
    if not m:
        return {}
    attrs = dict(re.findall(r'\b(tests|failures|errors|skipped)="(\d{1,9})"', m[1]))
    n = {k: int(attrs.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    counts = {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"], "failed": n["failures"], "errors": n["errors"], "skipped": n["skipped"]}
    return {k: v for k, v in counts.items() if v > 0}


_ANSI = None


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences and other control characters but newline and tab."""
    import re

    global _ANSI
    if _ANSI is None:
        _ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")
    return _ANSI.sub("", text.replace("\r\n", "\n"))


# pytest options whose value is a path (resolved against the release) or not a path (left alone)
_PYTEST_PATH_OPTIONS = ("--ignore", "--ignore-glob", "--deselect", "-c", "--config-file", "--confcutdir", "--rootdir")
_PYTEST_VALUE_OPTIONS = ("-k", "-m", "-p", "-o", "-W", "-n", "-r", "--tb", "--maxfail", "--junitxml", "--basetemp", "--durations", "--log-level")


def in_release(arg: str, target: str, *, any_name: bool = False) -> str:
    """``arg`` as the release sees it: a relative path that names something in the release
    becomes that absolute path (a check runs in a scratch folder, its arguments keep
    resolving against the release, as when checks ran in it). ``any_name``: a bare name
    (``tests``) counts; otherwise only what reads as a path (a ``/`` in it, or a ``.py``
    file), so a subcommand word is never taken for a file. A pytest node id keeps its ``::``."""
    if not arg or arg.startswith("-") or os.path.isabs(arg):
        return arg
    path, sep, node = arg.partition("::")
    if not (any_name or "/" in path or path.endswith(".py")):
        return arg
    full = os.path.normpath(os.path.join(target, path))
    if full != target and not full.startswith(target.rstrip("/") + "/"):
        return arg
    if not os.path.lexists(full):
        return arg
    return full + sep + node


def pytest_argv(args: list[str], target: str) -> list[str]:
    """The project's pytest arguments run from a scratch folder: its paths (and the values of
    path options) resolved against the release, ``--rootdir`` the release (so its pytest
    configuration is still the project's), and the release itself when no path was given."""
    out: list[str] = []
    named = False
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            path_value = args[i - 1] in _PYTEST_PATH_OPTIONS
            out.append(in_release(arg, target, any_name=True) if path_value else arg)
            continue
        if arg in _PYTEST_PATH_OPTIONS or arg in _PYTEST_VALUE_OPTIONS:
            skip = True
            out.append(arg)
            continue
        opt, eq, value = arg.partition("=")
        if eq and opt in _PYTEST_PATH_OPTIONS:
            out.append(f"{opt}={in_release(value, target, any_name=True)}")
            continue
        mapped = in_release(arg, target, any_name=True)
        named = named or mapped != arg
        out.append(mapped)
    if not any(a == "--rootdir" or a.startswith("--rootdir=") for a in args):
        out = [f"--rootdir={target}", *out]
    return out if named else [*out, target]


def run_check(check: CheckSpec, target: str, python: str, env: dict[str, str], budget: float | None = None, cwd: str = "") -> CheckResult:
    kind = check["kind"]
    opts = check["options"]
    timeout = float(check["timeout"]) if budget is None else max(0.1, min(float(check["timeout"]), budget))
    t0 = time.monotonic()
    status, detail, data = "passed", "", {}
    if kind == "compileall":
        skip = ["-x", opts["exclude"]] if opts.get("exclude") else []
        paths = {rel: os.path.normpath(os.path.join(target, rel)) for rel in opts.get("paths", ["."])}
        missing = [rel for rel, full in paths.items() if not os.path.lexists(full)]
        if missing:  # compileall passes a path that is not there: this check must not
            detail = "not in the release: " + ", ".join(missing)
            return {"name": check["name"], "kind": kind, "status": "failed", "duration": 0.0, "detail": detail, "data": {}}
        argv = [python, "-m", "compileall", "-q", *skip, *paths.values()]
    elif kind == "import":
        argv = [python, "-c", _IMPORT_SCRIPT, *opts["modules"]]
    elif kind == "attr":
        argv = [python, "-c", _ATTR_SCRIPT, opts["object"]]
    elif kind == "pytest":
        junit = os.path.join(env.get("TMPDIR", cwd or target), f"junit-{os.getpid()}-{time.monotonic_ns()}.xml")
        argv = [python, "-m", "pytest", "-p", "no:cacheprovider", *pytest_argv(list(opts.get("args", [])), target), f"--junitxml={junit}"]
    elif kind == "command":
        argv = [in_release(expand(a, python, target), target) for a in opts["argv"]]
    else:
        return {"name": check["name"], "kind": kind, "status": "error", "duration": 0.0, "detail": f"unknown check kind {kind!r}", "data": {}}
    try:
        code, out, ran = run_bounded(argv, cwd or target, env, timeout)
    except OSError as exc:
        code, out, ran = -1, f"cannot run {argv[0]}: {exc}", 0.0
    out = strip_ansi(out)
    tail = out.strip()[-3000:]
    if code is None:
        status, detail = "timeout", f"timed out after {timeout:g}s: every process it started was killed (ran {ran:.1f}s)\n{tail}"
    elif kind == "attr":
        if code != 0:
            status, detail = "failed", tail
        else:
            import json as _json

            value = _json.loads(out.strip().splitlines()[-1])
            data["value"] = value
            if "startswith" in opts:
                ok = isinstance(value, str) and value.startswith(opts["startswith"])
                detail = f"{opts['object']} = {value!r}; expected to start with {opts['startswith']!r}"
            else:
                ok = value == opts["equals"] and type(value) is type(opts["equals"])
                detail = f"{opts['object']} = {value!r}; expected {opts['equals']!r}"
            status = "passed" if ok else "failed"
    elif kind == "pytest":
        counts = _pytest_counts(out) or _junit_counts(junit)
        data["counts"] = counts
        want = opts.get("expect_passed")
        reasons = []
        if code != 0:
            reasons.append(f"pytest exit code {code}")
        if counts.get("failed") or counts.get("errors"):
            reasons.append(f"{counts.get('failed', 0)} failed, {counts.get('errors', 0)} errors")
        if want is not None and counts.get("passed", 0) != want:
            reasons.append(f"{counts.get('passed', 0)} passed, expected {want}")
        status = "failed" if reasons else "passed"
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no summary line"
        detail = (("; ".join(reasons) + "\n") if reasons else "") + summary + ("\n" + tail if reasons else "")
    elif kind == "command":
        want_code = int(opts.get("expect_exit", 0))
        expect = opts.get("expect_output")
        reasons = []
        if code != want_code:
            reasons.append(f"exit code {code}, expected {want_code}")
        if expect is not None and expect not in out:
            reasons.append(f"output lacks {expect!r}")
        status = "failed" if reasons else "passed"
        detail = ("; ".join(reasons) + "\n" if reasons else "") + tail
    else:
        status = "passed" if code == 0 else "failed"
        detail = tail if code != 0 else (tail or "ok")
    return {
        "name": check["name"],
        "kind": kind,
        "status": status,
        "duration": round(time.monotonic() - t0, 3),
        "detail": detail,
        "data": data,
    }


CACHES = {
    "HYPOTHESIS_STORAGE_DIRECTORY": "hypothesis",  # else .hypothesis/ in the release
    "COVERAGE_FILE": ".coverage",  # else .coverage in the release
    "MYPY_CACHE_DIR": "mypy",  # else .mypy_cache/
    "RUFF_CACHE_DIR": "ruff",  # else .ruff_cache/
    "XDG_CACHE_HOME": "cache",
}


def check_env(scratch: str, target: str, own_env: bool) -> dict[str, str]:
    """The clean environment of a check: an allowlist of the agent's variables (never a DSN,
    password or token) plus what keeps the release unwritten: ``HOME``, ``TMPDIR`` and the
    caches test tools write are in the run's scratch folder. The release's tree is on the
    path (a check runs in the scratch folder, so a flat layout imports from the release as
    it did when checks ran in it); without an environment of its own, so is its src/
    folder for a src layout. With one (``own_env``: its .venv runs every check) a src
    layout's application is imported as its wheel installed it (compiled extensions and
    generated files included), never shadowed by src/."""
    env = clean_env()
    env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPYCACHEPREFIX": os.path.join(scratch, "pycache"),
            "HOME": os.path.join(scratch, "home"),
            "TMPDIR": os.path.join(scratch, "tmp"),
        }
    )
    env.update({k: os.path.join(scratch, d) for k, d in CACHES.items()})
    # pytest writes its cache into its rootdir (the release) however it is started (a
    # command check's `coverage run -m pytest` included): no cache ("-o cache_dir" is an
    # unknown option, refused under --strict-config, once the plugin is off)
    env["PYTEST_ADDOPTS"] = "-p no:cacheprovider"
    if own_env:  # as an activated environment: its scripts first on PATH (a test plugin that runs `mypy` finds the release's)
        env["PATH"] = os.path.join(target, ".venv", "bin") + os.pathsep + env["PATH"]
        env["VIRTUAL_ENV"] = os.path.join(target, ".venv")
    paths = [target] + ([os.path.join(target, "src")] if not own_env and os.path.isdir(os.path.join(target, "src")) else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


SCRATCH_DIRS = ("work", "home", "tmp")  # the checks' working folder, HOME and TMPDIR


def op_smoke(req: SmokeRequest) -> SmokeResult:
    """Run G5 checks in the deployed folder; bytecode and caches go to a private temp dir."""
    target = req["target"]
    if path_kind(target) != "directory" or not os.path.isfile(os.path.join(target, DEPLOY_MANIFEST)):
        raise AgentError(3, f"no deployed release at {target}", "deploy first")

    python = req["python"]
    venv_python = os.path.join(target, ".venv", "bin", "python")
    own_env = os.path.exists(venv_python)
    if own_env:
        python = venv_python  # the release's own environment runs every check and {python}
    # the run's scratch folder: beside the release (never in it), private, marked with this
    # run so that one left by a killed agent is removed by the next deploy or rollback
    parent = os.path.dirname(target.rstrip("/"))
    deploy_id = checked_id(read_deploy_manifest(target).get("deploy_id", ""))
    parent_fd = open_dir(parent)
    try:
        name = make_marked_dir(parent_fd, "smoke", deploy_id, "smoke")
    except BaseException:
        os.close(parent_fd)
        raise
    scratch = os.path.join(parent, name)
    for sub in SCRATCH_DIRS:
        os.mkdir(os.path.join(scratch, sub), 0o700)
    env = check_env(scratch, target, own_env)
    become_subreaper()
    deadline = time.monotonic() + float(req.get("total_timeout") or sum(float(c["timeout"]) for c in req["checks"]) + 5)
    results: list[CheckResult] = []
    try:
        for check in req["checks"]:
            say(f"smoke: {check['name']}")
            left = deadline - time.monotonic()
            if left <= 0:
                results.append(
                    {
                        "name": check["name"],
                        "kind": check["kind"],
                        "status": "timeout",
                        "duration": 0.0,
                        "detail": "not run: the smoke's total time was used up",
                        "data": {},
                    }
                )
                continue
            results.append(run_check(check, target, python, env, left, cwd=os.path.join(scratch, "work")))
    finally:
        kill_descendants()
        try:
            _remove_marked(parent_fd, name)
        finally:
            os.close(parent_fd)
    # in the same connection: prove the smoke left the deployed tree unchanged
    verify = op_verify({"target": target, "tree_sha256": req.get("tree_sha256"), "manifest_sha256": req.get("manifest_sha256", "")})
    root = req.get("root")
    if root and os.path.isdir(root):
        import hashlib

        passed = verify["clean"] and all(r["status"] == "passed" for r in results)
        digest = hashlib.sha256(jsonio.dumps({"results": results, "verify": verify}).encode()).hexdigest()
        journal.append(root, "smoke passed" if passed else "smoke failed", deploy_id, dict(req), results_sha256=digest)
    return {"target": target, "results": results, "verify": verify}
