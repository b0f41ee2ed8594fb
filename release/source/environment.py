"""``[environment]``: every release carries its own locked, offline environment.

At bundle time, for the target's interpreter and platform (asked of the target, or
``environment.python`` + ``environment.platforms``):

1. the requirements: the commit's lock when it has one (``uv.lock`` through
   ``uv export --frozen``, or ``pylock.toml``), pinned exactly, with hashes; else the
   application's wheel with ``extras`` plus the PEP 735 ``groups``, resolved by pip;
2. the wheels, downloaded by pip for that interpreter and platform only
   (``--only-binary :all:``); a dependency without a wheel for the target is built into
   a wheel here when it is pure Python, else refused (exit 3) naming it; a direct URL or
   VCS dependency is refused unless locked by hash;
3. ``pylock.toml`` (PEP 751) pinning every wheel by sha256, and the same list in
   BUNDLE-MANIFEST.json's ``environment`` (what the agent reads: it needs no TOML
   parser on an old Python).

At deploy the agent builds ``<release>/.venv`` from those wheels only, inside the staging
folder, with pypa ``installer`` (carried in the agent's program, never taken from the
bundle), before the atomic rename.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import normalize, proc, tomlinput
from ..config import Environment
from ..errors import BlockedError, ConfigError, RefusedError, ReleaseError
from . import indexes

LOCK_NAME = "pylock.toml"
WHEELS = "env/wheels"


@dataclass(frozen=True)
class TargetPython:
    """The interpreter the environment is resolved for."""

    version: str  # "3.11"
    implementation: str  # "cp"
    platforms: tuple[str, ...]  # pip --platform values, most specific first
    full_version: str = ""  # "3.11.7", when the target was asked

    @property
    def machine(self) -> str:
        for tag in self.platforms:
            for prefix in ("manylinux_", "musllinux_", "manylinux2014_", "linux_"):
                if tag.startswith(prefix):
                    rest = tag[len(prefix) :]
                    return rest if prefix in ("manylinux2014_", "linux_") else rest.split("_", 2)[-1]
        return "x86_64"

    def markers(self) -> dict[str, str]:
        """PEP 508 marker values of the target (pip evaluates markers against the interpreter
        running it, whatever --python-version says: pypa/pip#11010)."""
        full = self.full_version or self.version
        return {
            "python_version": self.version,
            "python_full_version": full,
            "implementation_name": "cpython",
            "implementation_version": full,
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_release": "",
            "platform_version": "",
        }

    def uv_platform(self) -> str:
        """The target as ``uv pip compile --python-platform`` names it."""
        for tag in self.platforms:
            m = re.fullmatch(r"manylinux_2_(\d+)_(x86_64|aarch64)", tag)
            if m:
                have = int(m[1])
                known = next((y for y in (40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 28, 17) if y <= have), None)
                if known is not None:
                    return f"{m[2]}-manylinux_2_{known}"
            m = re.fullmatch(r"musllinux_\d+_\d+_(x86_64|aarch64)", tag)
            if m:
                return f"{m[1]}-unknown-linux-musl"
        return "linux"

    @property
    def abis(self) -> tuple[str, ...]:
        nodot = self.version.replace(".", "")
        return (f"{self.implementation}{nodot}", "abi3", "none")

    def to_dict(self) -> dict[str, Any]:
        return {"python": self.version, "implementation": self.implementation, "platforms": list(self.platforms)}


def platforms_for(machine: str, libc: str, system: str = "Linux") -> tuple[str, ...]:
    """pip platform tags a Linux interpreter accepts: manylinux for its glibc (or musllinux), then linux."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())
    if system != "Linux":
        raise BlockedError(f"the target runs {system}: environments are built for Linux targets", hint="set environment.python and environment.platforms")
    out: list[str] = []
    m = re.match(r"glibc (\d+)\.(\d+)", libc)
    if m and int(m[1]) == 2:
        minor = int(m[2])
        out += [f"manylinux_2_{y}_{arch}" for y in range(minor, 16, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        out += [f"{name}_{arch}" for y, name in legacy.items() if y <= minor]
    m = re.match(r"musl (\d+)\.(\d+)", libc)
    if m:
        out += [f"musllinux_{m[1]}_{y}_{arch}" for y in range(int(m[2]), 0, -1)]
    out.append(f"linux_{arch}")
    return tuple(out)


def target_python(env: Environment, facts: dict[str, Any] | None) -> TargetPython:
    if env.python:
        return TargetPython(env.python, "cp", env.platforms)
    if not facts:
        raise BlockedError("cannot ask the target for its interpreter", hint="make the target reachable, or set environment.python and environment.platforms")
    interp = facts["interpreter"]
    if interp["implementation"] != "cpython":
        raise BlockedError(f"the target's interpreter is {interp['implementation']}: environments are built for CPython", hint="set target.python to a CPython")
    version = ".".join(str(interp["version"]).split(".")[:2])
    return TargetPython(version, "cp", platforms_for(interp["machine"], interp["libc"], interp.get("system", "Linux")), str(interp["version"]))


# ----------------------------------------------------------------------------- requirements


def _groups(pyproject: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """Dependency groups as requirement strings: PEP 735 ``[dependency-groups]`` (with
    include-group), else Poetry's ``[tool.poetry.group.<name>.dependencies]``."""
    from . import requirements

    table = pyproject.get("dependency-groups", {})
    out: list[str] = []

    def add(name: str, seen: tuple[str, ...]) -> None:
        if name in seen:
            raise ConfigError(f"dependency group {name!r} includes itself", hint="fix [dependency-groups]")
        if name not in table:
            poetry = requirements.poetry_group(pyproject, name) if not seen else None
            if poetry is not None:
                out.extend(poetry)
                return
            raise ConfigError(
                f"environment.groups: the project has no dependency group {name!r} (PEP 735 [dependency-groups] or [tool.poetry.group.{name}])",
                hint="add it to the project, or fix environment.groups",
            )
        for item in table[name]:
            if isinstance(item, dict) and "include-group" in item:
                add(item["include-group"], (*seen, name))
            elif isinstance(item, str):
                out.append(item)

    for n in names:
        add(n, ())
    return out


def _refuse_direct(reqs: list[str]) -> None:
    for r in reqs:
        if "@" in r.split(";")[0] or r.startswith(("git+", "http:", "https:", "file:")):
            raise RefusedError(f"direct URL / VCS dependency refused: {r!r}", hint="publish it as a wheel, or lock it by hash (uv.lock / pylock.toml)")


MAX_LOCK = 16 << 20  # bytes of a commit's pylock.toml
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _from_pylock(path: Path) -> list[str]:
    """pylock.toml (PEP 751) -> pinned requirement lines with every wheel's hash. The commit's
    lock is untrusted input: at most ``MAX_LOCK`` bytes, every value of the type PEP 751
    gives it (a name, a version, a marker, sha256 hex), else exit 4 naming the entry."""
    from packaging.requirements import InvalidRequirement, Requirement

    def bad(why: str) -> RefusedError:
        return RefusedError(f"{path.name}: {why}", hint="regenerate the lock (uv lock / pip lock)")

    with path.open("rb") as f:
        raw = f.read(MAX_LOCK + 1)
    try:
        data = tomlinput.parse(raw, MAX_LOCK)
    except tomlinput.TomlInputError as exc:
        raise bad(str(exc)) from None
    packages = data.get("packages", [])
    if not isinstance(packages, list):
        raise bad("`packages` is not an array of tables")
    lines = []
    for pkg in packages:
        if not isinstance(pkg, dict) or not all(isinstance(pkg.get(k), str) for k in ("name", "version")):
            raise bad(f"a package entry without a name and a version: {str(pkg)[:80]!r}")
        name, version, marker = pkg["name"], pkg["version"], pkg.get("marker")
        wheels = pkg.get("wheels", [])
        sdist = pkg.get("sdist", {})
        if (
            not isinstance(wheels, list)
            or not all(isinstance(w, dict) and isinstance(w.get("hashes", {}), dict) for w in wheels)
            or not isinstance(sdist, dict)
        ):
            raise bad(f"{name}: malformed wheels or sdist entries")
        hashes = [str(w["hashes"]["sha256"]) for w in wheels if "sha256" in w.get("hashes", {})]
        if isinstance(sdist.get("hashes"), dict) and "sha256" in sdist["hashes"]:
            hashes.append(str(sdist["hashes"]["sha256"]))
        if not hashes:
            raise RefusedError(f"{path.name}: {name} is not locked by hash", hint="regenerate the lock with hashes")
        if not all(_SHA256.fullmatch(h) for h in hashes):
            raise bad(f"{name}: a sha256 that is not 64 hex digits")
        text = f"{name}=={version}" + (f" ; {marker}" if marker else "")  # the marker is decided for the target by for_target
        try:
            Requirement(text)
        except InvalidRequirement:
            raise bad(f"{name}: not a valid name, version or marker: {text[:120]!r}") from None
        lines.append(text + " " + " ".join(f"--hash=sha256:{h}" for h in hashes))
    return lines


def for_target(lines: list[str], target: TargetPython) -> list[str]:
    """Pinned requirement lines (``name==v ; marker --hash=...``) for the target alone: a
    line whose marker the target does not match is dropped, the others lose their marker."""
    from packaging.requirements import InvalidRequirement, Requirement

    env = target.markers()
    out = []
    for line in lines:
        words = line.split()
        hashes = [w for w in words if w.startswith("--hash=")]
        text = " ".join(w for w in words if not w.startswith("--hash="))
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise ReleaseError(f"a locked requirement does not parse: {text!r}", detail=str(exc), hint="regenerate the lock") from None
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        req.marker = None
        out.append(" ".join([str(req), *hashes]))
    return out


def resolve(
    target: TargetPython, app_wheel: Path | None, extras: tuple[str, ...], groups: list[str], workdir: Path, constraints: list[str] | None = None
) -> list[str]:
    """The environment's requirements, resolved for the target by ``uv pip compile`` (its
    Python version and platform decide every marker), pinned ``name==version``; the
    application itself is its own wheel (a plain application has none: its requirements
    are the whole environment)."""
    from packaging.utils import parse_wheel_filename

    lines = list(groups)
    argv = [uv_bin(), "pip", "compile", "--no-config", "--quiet", "--no-header", "--no-annotate", "--generate-hashes"]
    if app_wheel is not None:
        name = str(parse_wheel_filename(app_wheel.name)[0])
        _refuse_direct(_metadata_fields(app_wheel, "Requires-Dist"))  # before uv would fetch (and build) it
        root = f"{name}[{','.join(extras)}] @ {app_wheel.resolve().as_uri()}" if extras else f"{name} @ {app_wheel.resolve().as_uri()}"
        lines.insert(0, root)
        argv += ["--no-emit-package", name]
    if not lines:
        return []  # nothing to resolve: an environment of no packages
    infile = workdir / "environment.in"
    infile.write_text("\n".join(lines) + "\n")
    if constraints:
        cfile = workdir / "constraints.txt"
        cfile.write_text("\n".join(constraints) + "\n")
        argv += ["--constraint", str(cfile)]
    # an sdist-only dependency is built by uv to read its metadata: its setup.py runs with the
    # interpreter running this tool, in a private HOME, with no ssh agent (as a wheel built from it)
    argv += ["--python", sys.executable, "--python-version", target.full_version or target.version, "--python-platform", target.uv_platform(), str(infile)]
    with tempfile.TemporaryDirectory(prefix="release-build-home-") as home:
        env = {**indexes.read().uv_env, **untrusted_build_env(home)}
        cp = proc.run(argv, cwd=workdir, env=env, check=False, what="uv pip compile of the environment")
    if cp.returncode != 0:
        raise BlockedError(
            f"the environment cannot be resolved for Python {target.version} on {target.uv_platform()}",
            detail=cp.err[-4000:],
            hint="see uv's message above (a private index is set with UV_DEFAULT_INDEX / UV_INDEX)",
        )
    pinned = _requirement_lines(cp.out)
    unhashed = [line for line in pinned if "--hash=" not in line]
    if unhashed:
        raise RefusedError(f"the resolver gave no hash for {unhashed[0].split()[0]}", hint="the index must serve sha256 hashes (PEP 503 / 691)")
    _refuse_direct(pinned)  # a dependency of the project itself given as a URL or VCS reference
    return pinned


def untrusted_build_env(home: str) -> dict[str, str]:
    """What a dependency's build backend runs with, over the index settings: ``home`` as its
    HOME (the operator's dotfiles are not where ``~`` leads) and no ssh agent. uv's own
    cache, its managed Pythons and the operator's ``.netrc`` stay where they were found."""
    real = os.path.expanduser("~")
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(real, ".cache")
    xdg_data = os.environ.get("XDG_DATA_HOME") or os.path.join(real, ".local", "share")
    env = {
        "HOME": home,
        "SSH_AUTH_SOCK": "",
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or os.path.join(xdg_cache, "uv"),
        "UV_PYTHON_INSTALL_DIR": os.environ.get("UV_PYTHON_INSTALL_DIR") or os.path.join(xdg_data, "uv", "python"),
    }
    netrc = os.environ.get("NETRC") or os.path.join(real, ".netrc")
    if os.path.isfile(netrc):
        env["NETRC"] = netrc
    return env


def _requirement_lines(text: str) -> list[str]:
    """requirements.txt text (with ``\\`` continuations and comments) as one line per requirement."""
    lines = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(" ".join(line.split()))
    return lines


def uv_bin() -> str:
    """uv's executable (the one this tool depends on, else the one on PATH)."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise BlockedError("uv is not installed (it resolves an environment for the target, and exports a uv.lock)", hint="pip install uv") from None
        return found


def locked_requirements(tree: Path, env: Environment) -> tuple[list[str], str] | None:
    """The commit's own lock as pinned, hashed requirement lines, and where they came from."""
    if (tree / "uv.lock").is_file():
        argv = [uv_bin(), "export", "--locked", "--no-emit-project", "--no-header", "--no-default-groups", "--format", "requirements-txt"]
        argv += [a for e in env.extras for a in ("--extra", e)] + [a for g in env.groups for a in ("--group", g)]
        cp = proc.run(argv, cwd=tree, check=False, what="uv export of the commit's uv.lock")
        if cp.returncode != 0:
            raise BlockedError("the commit's uv.lock cannot be exported for this environment", hint="run `uv lock` and commit it", detail=cp.err)
        return _requirement_lines(cp.out), "uv.lock"
    if (tree / LOCK_NAME).is_file():
        return _from_pylock(tree / LOCK_NAME), LOCK_NAME
    return None


# ----------------------------------------------------------------------------- download


_NO_DIST = re.compile(r"(?:No matching distribution found for|Could not find a version that satisfies the requirement) (\S+)")


def _pip_download(target: TargetPython, dest: Path, args: list[str], find_links: Path, pip_env: dict[str, str]) -> proc.Completed:
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:", "--dest", str(dest)]
    argv += ["--python-version", target.full_version or target.version, "--implementation", target.implementation]
    argv += [a for abi in target.abis for a in ("--abi", abi)]
    argv += [a for p in target.platforms for a in ("--platform", p)]
    argv += ["--find-links", str(find_links), *args]
    return proc.run(argv, env=pip_env, check=False, what="pip download of the environment's wheels")


def _build_from_sdist(requirement: str, dest: Path, pinned: list[str], pip_env: dict[str, str], target: TargetPython) -> Path:
    """Build ``requirement`` into a wheel here, only from an sdist whose sha256 the resolver
    recorded (``--require-hashes``), with a private HOME and no ssh agent: its build backend
    runs, but on verified code and without the operator's credentials. A pure-Python wheel
    is taken; compiled code only when the target can install it, built with a Python of the
    target's version found here (``interpreters``), else exit 3 naming both versions."""
    from . import interpreters

    built = _pip_wheel(requirement, dest, pinned, pip_env, "")
    if built.name.endswith("-none-any.whl") or interpreters.fits(built, target):
        return built
    exe = interpreters.find(target.version)
    if not exe or exe == sys.executable:
        raise interpreters.missing(
            f"{requirement} (no wheel for the target on the index; its sdist builds {built.name})", interpreters.controller_version(), target
        )
    built.unlink()
    again = _pip_wheel(requirement, dest, pinned, pip_env, exe)
    if not interpreters.fits(again, target):
        raise BlockedError(
            f"{requirement} has no wheel for the target, and the one built with {exe} ({again.name}) does not fit it",
            hint="publish a wheel for the target's platform",
        )
    return again


def _pin_of(pinned: list[str], requirement: str) -> int:
    """The index of ``requirement``'s line among the pins (-1 when none)."""
    from packaging.utils import canonicalize_name

    wanted = canonicalize_name(re.split(r"[=<>!~ ;\[]", requirement, maxsplit=1)[0])
    return next((i for i, p in enumerate(pinned) if canonicalize_name(re.split(r"[=<>!~ ;\[]", p, maxsplit=1)[0]) == wanted), -1)


def _with_hash(pinned: list[str], requirement: str, sha256: str) -> list[str]:
    """The pins with ``sha256`` added to ``requirement``'s line (its requirement part first:
    a marker after ``;`` stays before the hashes)."""
    i = _pin_of(pinned, requirement)
    out = list(pinned)
    if i >= 0 and f"--hash=sha256:{sha256}" not in out[i]:
        out[i] = f"{out[i]} --hash=sha256:{sha256}"
    return out


def _pip_wheel(requirement: str, dest: Path, pinned: list[str], pip_env: dict[str, str], python: str) -> Path:
    """``pip wheel`` of the hash-checked sdist of ``requirement`` (with ``python``'s build
    environment when given: ``pip --python``)."""

    i = _pin_of(pinned, requirement)
    line = pinned[i] if i >= 0 else ""
    if "--hash=" not in line:
        raise RefusedError(
            f"{requirement} has no wheel for the target and no hash to check its sdist against", hint="publish a wheel for the target's platform"
        )
    out = Path(tempfile.mkdtemp(prefix=".built-", dir=dest))  # this build's alone: what it made is all that is in it
    with tempfile.TemporaryDirectory(prefix="release-build-home-") as home:
        req = Path(home) / "requirement.txt"
        req.write_text(line + "\n")
        argv = [sys.executable, "-m", "pip", *(["--python", python] if python else []), "wheel", "--disable-pip-version-check", "--no-deps", "--require-hashes"]
        argv += ["--wheel-dir", str(out), "-r", str(req)]
        env = {**pip_env, **untrusted_build_env(home), "PIP_CONFIG_FILE": os.devnull, "SOURCE_DATE_EPOCH": str(normalize.ZIP_EPOCH)}
        cp = proc.run(argv, env=env, check=False, what=f"pip wheel {requirement}")
    wheels = sorted(out.glob("*.whl"))
    if cp.returncode != 0 or not wheels:
        raise BlockedError(
            f"no wheel of {requirement} for the target, and it cannot be built here", hint="publish a wheel for the target's platform", detail=cp.err
        )
    _refuse_other_wheel(wheels, line)
    normalize.wheel(wheels[0], normalize.ZIP_EPOCH)  # the same sdist builds the same bytes: a bundle built twice agrees
    return wheels[0]


def _refuse_other_wheel(wheels: list[Path], pin: str) -> None:
    """A build must make one wheel, of the name and version pinned: an sdist whose build
    names itself otherwise (another project's name, to be taken in its place) is refused."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import InvalidVersion, Version

    m = re.match(r"\s*([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", pin)
    try:
        made = [parse_wheel_filename(w.name)[:2] for w in wheels]
        ok = m is not None and len(made) == 1 and made[0][0] == canonicalize_name(m[1]) and made[0][1] == Version(m[2])
    except (InvalidWheelFilename, InvalidVersion):
        ok = False
    if not ok:
        raise RefusedError(
            f"the sdist pinned as {pin.split()[0]} built {', '.join(w.name for w in wheels)}: not one wheel of that name and version",
            hint="the package's sdist builds something else than it is published as; nothing of it is used",
        )


def download(
    target: TargetPython,
    dest: Path,
    app_wheel: Path | None,
    extras: tuple[str, ...],
    groups: list[str],
    locked: list[str] | None,
    constraints: list[str] | None = None,
) -> None:
    """Every wheel of the environment into ``dest``, for the target only."""
    dest.mkdir(parents=True, exist_ok=True)
    links = dest.parent / "built-wheels"
    links.mkdir(exist_ok=True)
    req = dest.parent / "requirements.txt"
    if locked is not None:
        pinned = for_target(locked, target)
    else:
        _refuse_direct(groups)
        pinned = resolve(target, app_wheel, extras, groups, dest.parent, constraints)
    req.write_text("\n".join(pinned) + "\n")
    # every file is one the lock (or the resolver) recorded by sha256: an impostor of the same
    # name and version on another index is refused
    jobs = ([["--no-deps", "--require-hashes", "-r", str(req)]] if pinned else []) + ([["--no-deps", str(app_wheel)]] if app_wheel is not None else [])
    pip_env = indexes.read().pip_env()  # read once: every download and build of this run uses the same indexes
    for job in jobs:
        for _ in range(20):
            cp = _pip_download(target, dest, job, links, pip_env)
            if cp.returncode == 0:
                break
            err = cp.err
            if "THESE PACKAGES DO NOT MATCH THE HASHES" in err or ("hash" in err.lower() and "require" in err.lower() and "mismatch" in err.lower()):
                if locked is not None:
                    raise RefusedError(
                        "a wheel does not match the hash in the commit's lock",
                        hint="the lock or the index was tampered with; regenerate the lock",
                        detail=err[-3000:],
                    )
                raise RefusedError(
                    "a file the index served does not match the hash the resolver recorded for it",
                    hint="the index serves another file than it listed (tampered, or changed since); nothing was built from it",
                    detail=err[-3000:],
                )
            m = _NO_DIST.search(err)
            if not m:
                raise ReleaseError("pip could not download the environment's wheels", detail=err[-4000:], hint="see pip's message above")
            requirement = m[1].strip("'\"")
            if locked is not None:  # on the locked path nothing is ever built from a source the lock did not verify
                raise RefusedError(
                    f"the commit's lock pins {requirement}, but no wheel of it for the target (Python {target.version}, {target.uv_platform()}) matches",
                    hint="lock a wheel for the target's platform (or remove the pin); an sdist is never built on the locked path",
                    detail=err[-2000:],
                )
            built = _build_from_sdist(requirement, links, pinned, pip_env, target)
            shutil.copy2(built, links / built.name)
            # the wheel was made here from the sdist the pin's hash verified: its own hash
            # joins that pin, so the hash-checked download takes this wheel and nothing else
            pinned = _with_hash(pinned, requirement, hashlib.sha256(built.read_bytes()).hexdigest())
            req.write_text("\n".join(pinned) + "\n")
        else:
            raise ReleaseError("pip download did not settle after building 20 pure-Python wheels")


def lock_entries(wheels: list[Path], rel: dict[Path, str]) -> list[dict[str, str]]:
    from packaging.utils import parse_wheel_filename

    out = []
    for w in sorted(wheels, key=lambda p: p.name.lower()):
        name, version, _, _ = parse_wheel_filename(w.name)
        out.append({"name": str(name), "version": str(version), "path": rel[w], "sha256": hashlib.sha256(w.read_bytes()).hexdigest()})
    return out


def pylock_text(entries: list[dict[str, str]], target: TargetPython, requires_python: str) -> str:
    """PEP 751 ``pylock.toml``: every package pinned to one wheel by sha256."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ['lock-version = "1.0"', 'created-by = "release"']
    if requires_python:
        lines.append(f"requires-python = {q(requires_python)}")
    marker = f'python_version == "{target.version}"'
    lines.append(f"environments = ['{marker}']")  # a TOML literal string: the marker holds double quotes
    for e in entries:
        lines += ["", "[[packages]]", f"name = {q(e['name'])}", f"version = {q(e['version'])}", "", "[[packages.wheels]]"]
        lines += [f"name = {q(Path(e['path']).name)}", f"path = {q(e['path'])}", f"hashes = {{sha256 = {q(e['sha256'])}}}"]
    return "\n".join(lines) + "\n"


def _metadata_fields(app_wheel: Path, field: str) -> list[str]:
    """Every value of ``field`` in the wheel's METADATA headers."""
    import zipfile

    out: list[str] = []
    with zipfile.ZipFile(app_wheel) as zf:
        meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None)
        if meta is None:
            return out
        for line in zf.read(meta).decode("utf-8", "replace").splitlines():
            if not line:
                break
            if line.startswith(field + ":"):
                out.append(line.split(":", 1)[1].strip())
    return out


def requires_python_of(app_wheel: Path) -> str:
    found = _metadata_fields(app_wheel, "Requires-Python")
    return found[0] if found else ""


def check_requires_python(requires: str, version: str) -> None:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    spec = SpecifierSet(requires)
    if requires and Version(version + ".0") not in spec and Version(version + ".99") not in spec:
        raise BlockedError(
            f"the target's Python {version} does not satisfy the project's requires-python {requires!r}",
            hint="deploy to an interpreter it supports (target.python)",
        )


@dataclass(frozen=True)
class Built:
    manifest: dict[str, Any]  # BUNDLE-MANIFEST's "environment"
    files: list[tuple[str, Path]]  # (path inside the bundle, file)
    lock: str


def _project_toml(tree: Path) -> dict[str, Any]:
    """The exported project's pyproject.toml ({} when there is none), read with its bounds."""
    path = tree / "pyproject.toml"
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        raw = f.read(tomlinput.MAX_PYPROJECT + 1)
    try:
        return tomlinput.parse(raw, tomlinput.MAX_PYPROJECT)
    except tomlinput.TomlInputError as exc:
        raise ConfigError(f"the project's pyproject.toml {exc}", hint="fix pyproject.toml at the recorded commit") from None


def build(env: Environment, target: TargetPython, tree: Path, app_wheel: Path | None, app_rel: str, workdir: Path) -> Built:
    """Resolve, download and lock the environment of the project exported at ``tree``: the
    application's wheel (none for a plain application) with its extras, the dependency
    groups, the requirements files and the plain list, resolved together for the target."""
    from . import requirements

    pyproject = _project_toml(tree)
    requires = requires_python_of(app_wheel) if app_wheel is not None else str(pyproject.get("project", {}).get("requires-python", ""))
    check_requires_python(requires, target.version)
    locked = locked_requirements(tree, env)
    constraints: list[str] = []
    extras = env.extras
    if locked is None:
        read = requirements.read_files(tree, env.requirements)
        extra = _groups(pyproject, env.groups) + read.requirements + [requirements.requirement(d, "environment.dependencies") for d in env.dependencies]
        constraints = read.constraints
        if read.names_self and app_wheel is None:
            raise ConfigError(
                "a requirements file installs the project itself (-e . or .), but the project has no build backend to make it a wheel",
                hint="remove that line (a plain application ships as its tree), or give the project a [build-system]",
            )
        extras = tuple(dict.fromkeys([*env.extras, *read.self_extras]))  # `-e .[dev]`: the project's own extras
    else:
        if env.requirements or env.dependencies:
            raise ConfigError(
                f"the commit's {locked[1]} decides the environment: environment.requirements and environment.dependencies cannot add to it",
                hint=f"add them to the project and lock again ({locked[1]}), or remove them from [environment]",
            )
        extra = []
    dest = workdir / "wheels"
    download(target, dest, app_wheel, extras, extra, locked[0] if locked else None, constraints)
    wheels = sorted(p for p in dest.glob("*.whl") if app_wheel is None or p.name != app_wheel.name)
    rel = {w: f"{WHEELS}/{w.name}" for w in wheels}
    if app_wheel is not None:
        rel[app_wheel] = app_rel
    entries = lock_entries([*wheels, *([app_wheel] if app_wheel is not None else [])], rel)
    lock = pylock_text(entries, target, requires)
    manifest = {
        **target.to_dict(),
        "requires_python": requires,
        "lock": LOCK_NAME,
        "lock_sha256": hashlib.sha256(lock.encode()).hexdigest(),
        "locked_from": locked[1] if locked else "resolved",
        "packages": entries,
    }
    return Built(manifest, [(rel[w], w) for w in wheels], lock)
