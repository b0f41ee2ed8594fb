"""The test and runtime dependencies a project states outside PEP 621/735, read from the
recorded commit with bounds: requirements files (``environment.requirements``), Poetry
dependency groups (``[tool.poetry.group.<name>.dependencies]``, and the old
``[tool.poetry.dev-dependencies]`` as the group ``dev``) and a plain list
(``environment.dependencies``).

A requirements file is the project's, but a release's packages come only from the
operator's indexes: a line that names an index, a link to look in, a trusted host, an
editable install from a repository or a path other than the project's own folder is
refused (exit 4) naming the file and line; ``-e .[dev]`` (or ``.``), the project itself,
is its own wheel with those extras; ``-r`` and ``-c`` are
followed inside the exported tree only, never through a link, at most ``MAX_DEPTH`` deep.
Every requirement is parsed by ``packaging`` (PEP 508): a direct URL or a VCS reference is
refused as it is in the project's own dependencies.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RefusedError

MAX_FILE = 1 << 20  # bytes of one requirements file
MAX_LINES = 20_000  # requirement lines in all files together
MAX_DEPTH = 8  # -r / -c nesting
MAX_FILES = 64  # files read through -r / -c
# options that choose where packages come from: the operator's indexes decide that
_SOURCE_OPTIONS = ("-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links", "--trusted-host")
_EDITABLE = ("-e", "--editable")
# options that change nothing of what is resolved here (pip's install-time switches)
_HARMLESS = ("--pre", "--prefer-binary", "--only-binary", "--no-binary", "--require-hashes", "--use-feature")


@dataclass
class Read:
    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the files read, relative to the tree
    self_extras: list[str] = field(default_factory=list)  # `-e .[dev]` / `.[dev]`: the project itself, with these extras
    names_self: bool = False  # a line names the project itself (`-e .`, `.`): its own wheel is in the environment already


_EXTRA = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")  # a PEP 508 extra name


def _path_line(value: str) -> tuple[str, list[str]] | None:
    """``(path, extras)`` when a requirement line (or ``-e``'s value) is a local path, as pip
    reads ``.``, ``./sub``, ``.[dev]``, ``../lib``, ``/abs`` and ``file:.``; None otherwise."""
    text = value.removeprefix("file:")
    if not text.startswith((".", "/")):
        return None
    path, _, rest = text.partition("[")
    extras = [e.strip() for e in rest.rstrip("]").split(",") if e.strip()] if rest else []
    return path.strip(), extras


def _open_inside(tree: Path, rel: str, where: str) -> bytes:
    """The file ``rel`` of the exported tree, opened component by component without
    following a link, at most MAX_FILE bytes."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or ".." in parts or not parts:
        raise ConfigError(f"{where}: {rel!r} is not a file inside the project", hint="name requirements files relative to the project's folder")
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                raise ConfigError(f"{where}: {rel} is not in the recorded commit", hint="commit it, or fix the path") from None
            except OSError:
                raise RefusedError(f"{where}: {rel} passes through a link or is not a file", hint="name the file itself, not a link to it") from None
            os.close(fd)
            fd = nfd
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RefusedError(f"{where}: {rel} is not a regular file", hint="name a requirements file")
        data = os.read(fd, MAX_FILE + 1)
        while len(data) <= MAX_FILE:
            more = os.read(fd, MAX_FILE + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    if len(data) > MAX_FILE:
        raise RefusedError(f"{where}: {rel} is larger than {MAX_FILE >> 20} MiB", hint="a requirements file is a list of names")
    return data


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) with ``\\`` continuations joined and comments removed, as pip reads them."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = n
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        line = buf + raw
        buf = ""
        if line.lstrip().startswith("#"):
            continue
        line = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if line:
            out.append((start, " ".join(line.split())))
    if buf.strip():
        out.append((start, " ".join(buf.split())))
    return out


def requirement(text: str, where: str) -> str:
    """One PEP 508 requirement, checked: never a direct URL or a VCS reference."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"{where}: {text[:200]!r} is not a requirement ({exc})", hint="write name[extras] specifier ; marker, as pip reads it") from None
    if req.url:
        raise RefusedError(f"{where}: direct URL / VCS dependency refused: {text[:200]!r}", hint="publish it as a wheel on your index")
    return str(req)


def read_files(tree: Path, files: tuple[str, ...]) -> Read:
    """Every requirement of ``files`` (and of the files they include), bounded."""
    out = Read()
    seen: set[str] = set()

    def one(rel: str, depth: int, constraint: bool, where: str) -> None:
        norm = os.path.normpath(rel)
        if norm in seen:
            return
        if depth > MAX_DEPTH:
            raise RefusedError(f"{where}: includes nest deeper than {MAX_DEPTH}", hint="flatten the requirements files")
        if len(seen) >= MAX_FILES:
            raise RefusedError(f"{where}: more than {MAX_FILES} requirements files", hint="flatten the requirements files")
        seen.add(norm)
        out.files.append(norm)
        raw = _open_inside(tree, norm, where)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: {norm} is not UTF-8 text", hint="save it as UTF-8") from None
        for n, line in _logical_lines(text):
            at = f"{norm}:{n}"
            if len(out.requirements) + len(out.constraints) >= MAX_LINES:
                raise RefusedError(f"{at}: more than {MAX_LINES} requirements", hint="a release's requirements are a list of names")
            if line.startswith("-"):
                opt, _, value = line.replace("=", " ", 1).partition(" ")
                value = value.strip()
                if opt in ("-r", "--requirement", "-c", "--constraint"):
                    base = os.path.dirname(norm)
                    one(os.path.join(base, value) if base else value, depth + 1, constraint or opt in ("-c", "--constraint"), at)
                elif opt in _EDITABLE:
                    project_itself(value, norm, at)
                elif opt in _SOURCE_OPTIONS:
                    raise RefusedError(
                        f"{at}: {opt} in a requirements file is refused: a release's packages come from the operator's indexes",
                        hint="remove the line; set the index with UV_DEFAULT_INDEX / PIP_INDEX_URL on the controller (docs: environments)",
                    )
                elif opt in _HARMLESS:
                    continue
                else:
                    raise ConfigError(f"{at}: option {opt} is not understood here", hint="leave requirement lines, -r and -c")
                continue
            spec = line.split(" --hash", 1)[0].strip()  # the resolver records every hash itself, from the index
            if _path_line(spec) is not None:
                project_itself(spec, norm, at)
                continue
            (out.constraints if constraint else out.requirements).append(requirement(spec, at))

    def project_itself(value: str, norm: str, at: str) -> None:
        """``-e .[dev]`` or ``.`` (``pip install -r requirements-dev.txt`` installing the project
        itself): the project's own wheel is in the environment, with those extras; any other
        path (``-e ../lib``, ``./vendor/pkg``) is refused."""
        found = _path_line(value)
        if found is None:
            raise RefusedError(
                f"{at}: -e {value[:200]} (an editable install from a repository) is refused",
                hint="name the package (publish it on your index); a release installs wheels only",
            )
        path, extras = found
        if os.path.normpath(path) != ".":  # pip reads such a path from the folder it runs in: the project's
            raise RefusedError(
                f"{at}: {value[:200]!r} is a path dependency outside the project's own folder: refused",
                hint="publish it as a wheel on your index and name it, or list it in the project's own dependencies",
            )
        bad = next((e for e in extras if not _EXTRA.fullmatch(e)), None)
        if bad is not None:
            raise ConfigError(f"{at}: {bad[:100]!r} is not an extra's name", hint="name extras as the project's [project.optional-dependencies] does")
        out.names_self = True
        out.self_extras += [e for e in extras if e not in out.self_extras]

    for f in files:
        one(f, 0, False, "environment.requirements")
    return out


def poetry_group(pyproject: dict[str, Any], name: str) -> list[str] | None:
    """The Poetry group ``name`` as PEP 508 requirements (poetry-core converts ``^``, ``~``,
    tables with ``version`` / ``python`` / ``markers`` / ``extras``), or None when the
    project has no such group. Path, URL and VCS dependencies are refused."""
    poetry = pyproject.get("tool", {}).get("poetry", {})
    table = poetry.get("group", {}).get(name, {}).get("dependencies")
    if table is None and name == "dev":
        table = poetry.get("dev-dependencies")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.poetry.group.{name}.dependencies] is not a table", hint="fix the project's pyproject.toml")
    from poetry.core.factory import Factory

    out = []
    for dep_name, spec in table.items():
        where = f"[tool.poetry.group.{name}.dependencies] {dep_name}"
        if dep_name.lower() == "python":
            continue
        # several constraints for one name (a list of tables, each with its own python or
        # markers) are several dependencies, as Poetry reads them
        for one in spec if isinstance(spec, list) else [spec]:
            try:
                dep = Factory.create_dependency(dep_name, one)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise ConfigError(f"{where}: {str(exc)[:200]}", hint="fix the project's pyproject.toml") from None
            if dep.is_vcs() or dep.is_url() or dep.is_file() or dep.is_directory():
                raise RefusedError(f"{where}: a path, URL or VCS dependency is refused", hint="publish it as a wheel on your index")
            out.append(requirement(dep.to_pep_508(), where))
    return out
