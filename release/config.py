"""Load and validate the configuration (``release.toml``, ``[tool.release]``, ``--config``).

Every key is checked against a schema; an unknown key is exit 2 naming the key and the
likely intended one, a missing required key names what to add. Relative paths are
relative to the folder of the file that holds the config.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from . import names, service
from .errors import ConfigError
from .schema import Spec as _Spec
from .schema import check_table, kinded_table, typo_hint
from .service import Service

ARTIFACT_KINDS = ("sdist", "wheel")
STRATEGIES = ("side-by-side", "timestamped")
SUBMODULE_CHOICES = ("refuse", "omit")
CHECK_KINDS = ("compileall", "import", "attr", "pytest", "command", "db-readonly")
DIR_PLACEHOLDERS = ("name", "version", "sha", "stamp")
SECRET_WORDS = ("password", "passwd", "token", "secret", "dsn", "credential", "apikey", "api_key", "private")

TOP: _Spec = {"name": (str, ...), "state": (str, ".release")}
SECTIONS: dict[str, _Spec] = {
    "source": {"repo": (str, ...), "head": (str, ...), "subdir": (str, "")},
    "bundle": {
        "out": (str, ".release/bundles"),
        "artifacts": (list, ["sdist", "wheel"]),
        "submodules": (str, "refuse"),
        "version": (str, ""),
        "version_from": (str, ""),
        "exclude": (list, []),
        "include": (list, []),
    },
    "target": {
        "host": (str, ""),
        "root": (str, ...),
        "dir": (str, "{name}-v{version}"),
        "strategy": (str, "side-by-side"),
        "python": (str, "python3"),
        "ssh_config": (str, ""),
        "create_root": (bool, False),
        "allowed_signers": (str, ""),
        "hosts": (list, []),
        "inventory": (str, ""),
        "group": (str, "all"),
        "op_timeout": (int, 3600),
        "shared": (list, []),
        "shared_files": (list, []),
        "keep": (int, 0),
        "trust": (str, ""),
    },
    "fleet": {"forks": (int, 10), "serial": (object, None), "max_fail_percentage": (object, 0)},
    "smoke": {"check": (list, []), "timeout": (int, 600)},
    "service": {"restart": (list, []), "timeout": (object, 60)},
    "health": {"check": (list, [])},
    "provision": {"root": (str, ""), "dirs": (list, []), "config_file": (str, ""), "settings": (dict, {})},
    "environment": {
        "extras": (list, []),
        "groups": (list, []),
        "python": (str, ""),
        "platforms": (list, []),
        "requirements": (list, []),
        "dependencies": (list, []),
    },
}
CHECK_KEYS: dict[str, _Spec] = {
    "compileall": {"paths": (list, ["."]), "exclude": (str, None)},
    "import": {"modules": (list, ...)},
    "attr": {"object": (str, ...), "startswith": (str, None), "equals": (object, None)},
    "pytest": {"args": (list, []), "expect_passed": (int, None)},
    "command": {"argv": (list, ...), "expect_output": (str, None), "expect_exit": (int, 0)},
    "db-readonly": {
        "dsn_env": (str, ...),
        "role": (str, None),
        "queries": (list, []),
        "count_tables": (list, []),
        "forbid_functions": (list, []),
        "allow_functions": (list, []),
        "allow_foreign": (bool, False),
        "via": (str, "controller"),
        "expected_grant_matrix_sha": (str, None),
        "demo": (bool, False),
        "demo_schema": (str, "db/schema.sql"),
    },
}
COMMON_CHECK_KEYS: _Spec = {"kind": (str, ...), "name": (str, None), "timeout": (int, None)}


# The config's records are NamedTuples: immutable, with ``_replace``, and made without the
# import of ``dataclasses`` (and the ``inspect`` it pulls in), about 10 ms of every command.
class Check(NamedTuple):
    kind: str
    name: str
    timeout: int
    options: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "timeout": self.timeout, **dict(self.options)}


class Environment(NamedTuple):
    """``[environment]``: the release carries its own locked environment (its presence turns it on)."""

    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    python: str = ""  # "3.11": resolve without asking the target
    platforms: tuple[str, ...] = ()  # e.g. ("manylinux_2_28_x86_64",)
    requirements: tuple[str, ...] = ()  # requirements files of the commit, relative to the project
    dependencies: tuple[str, ...] = ()  # PEP 508 requirements, a plain list


class Fleet(NamedTuple):
    """``[fleet]``: how a release goes to many hosts."""

    forks: int = 10
    serial: tuple[int | str, ...] = ()  # promotion waves: counts or "25%"; () = all at once
    max_fail_percentage: float = 0.0


class Config(NamedTuple):
    path: Path
    base: Path
    name: str
    state: Path
    repo: str
    head: str
    subdir: str
    out: Path
    artifacts: tuple[str, ...]
    host: str
    root: str
    dir: str
    strategy: str
    python: str
    ssh_config: str
    create_root: bool
    allowed_signers: str
    checks: tuple[Check, ...]
    provision_root: str = ""
    provision_dirs: tuple[str, ...] = ()
    provision_config_file: str = ""
    provision_settings: Mapping[str, Any] = MappingProxyType({})
    environment: Environment | None = None
    hosts: tuple[Any, ...] = ()  # fleet.inventory.Host of every fleet host, once the fleet resolved them (after --limit)
    host_names: tuple[str, ...] = ()  # target.hosts
    submodules: str = "refuse"  # bundle.submodules: a commit's git submodules refuse the bundle, or are left out ("omit")
    version: str = ""  # bundle.version: a plain application's version, PEP 440 normal form
    version_from: str = ""  # bundle.version_from: "git-tag" (the nearest tag) or "" (the build backend)
    exclude: tuple[str, ...] = ()  # bundle.exclude: paths or patterns that do not ship
    include: tuple[str, ...] = ()  # bundle.include: when set, only these ship (then exclude applies)
    fleet: Fleet = Fleet()
    ssh_options: tuple[str, ...] = ()  # per-host connection options (from an inventory)
    connect_to: str = ""  # the ssh destination when it is not ``host``: an inventory's ansible_host
    keep: int = 0  # target.keep: after a successful promote, prune to this many releases that passed smoke (0: never)
    lock_wait: float = 0.0  # --lock-wait: seconds an op waits for a live holder of the target's lock
    shared: tuple[str, ...] = ()  # target.shared: folders kept under <root>/shared/, linked into each release
    service: Service = Service()  # [service] restart and [[health.check]]: run after `current` switches
    trust: str = ""  # target.trust: the allowed_signers file on the target that decides what it deploys
    shared_files: tuple[str, ...] = ()  # target.shared_files: files likewise (never created)
    inventory_path: str = ""
    group: str = "all"  # target.group: the inventory group of the fleet
    op_timeout: float = 3600.0  # target.op_timeout: the deadline of every agent op (a smoke: at least its checks' own)
    local: bool = False  # a fleet host the inventory reaches with ansible_connection=local: this machine, no ssh

    @property
    def is_local(self) -> bool:
        return self.host == "" or self.local

    @property
    def is_fleet(self) -> bool:
        """A fleet: ``target.hosts`` or ``target.inventory`` (its hosts are read by ``fleet``)."""
        return bool(self.host_names or self.inventory_path or self.hosts)

    def repo_location(self) -> str:
        """``source.repo`` as git should see it: a URL, or a path made absolute."""
        if _looks_like_url(self.repo):
            return self.repo
        return str((self.base / self.repo).resolve())


def _looks_like_url(s: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s)) or bool(re.match(r"^[^/\s]+@[^/\s]+:", s))


def _str_list(value: list[Any], key: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{key}' must be a list of strings", hint=f"fix '{key}'")
    return tuple(value)


def parse(data: Mapping[str, Any], path: Path) -> Config:
    """Validate a config table (pure: no I/O) and return a frozen :class:`Config`."""
    known = list(TOP) + list(SECTIONS)
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown config key '{key}'", hint=typo_hint(key, known))
    top = check_table({k: v for k, v in data.items() if k in TOP}, TOP, "")
    sec: dict[str, dict[str, Any]] = {}
    for name, spec in SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"config key '{name}' must be a table", hint=f"write it as [{name}]")
        sec[name] = check_table(table, spec, f"{name}.")

    base = path.parent
    name = names.check_name(top["name"])
    _no_control(data, "")
    artifacts = _str_list(sec["bundle"]["artifacts"], "bundle.artifacts")
    for a in artifacts:
        if a not in ARTIFACT_KINDS:
            raise ConfigError(f"bundle.artifacts: unknown artifact '{a}'", hint=typo_hint(a, list(ARTIFACT_KINDS)))
    submodules = sec["bundle"]["submodules"]
    if submodules not in SUBMODULE_CHOICES:
        raise ConfigError(f"bundle.submodules: unknown choice '{submodules}'", hint=typo_hint(submodules, list(SUBMODULE_CHOICES)))
    t = sec["target"]
    if t["strategy"] not in STRATEGIES:
        raise ConfigError(f"target.strategy: unknown strategy '{t['strategy']}'", hint=typo_hint(t["strategy"], list(STRATEGIES)))
    for ph in re.findall(r"\{([^}]*)\}", t["dir"]):
        if ph not in DIR_PLACEHOLDERS:
            raise ConfigError(f"target.dir: unknown placeholder '{{{ph}}}'", hint=typo_hint(ph, list(DIR_PLACEHOLDERS)))
    if "/" in t["dir"] or t["dir"] in ("", ".", ".."):
        raise ConfigError(f"target.dir must be a single folder name, got {t['dir']!r}", hint="put the parent folder in target.root")
    names.check_folder(t["dir"].format(name=name, version="0", sha="0000000", stamp="20000101T000000Z"))
    if t["host"].startswith("-"):
        raise ConfigError(f"target.host must not start with '-': {t['host']!r}", hint="use an ssh alias or user@host")
    root = t["root"]
    if t["host"] == "":
        root = str((base / root).resolve()) if not Path(root).is_absolute() else root
    elif not root.startswith("/"):
        raise ConfigError("target.root must be an absolute path for an SSH target", hint="write the full path on the host")
    subdir = sec["source"]["subdir"].strip("/")
    if ".." in Path(subdir).parts:
        raise ConfigError("source.subdir must stay inside the repository", hint="remove '..' from source.subdir")

    checks = tuple(_parse_check(i, c, sec["smoke"]["timeout"]) for i, c in enumerate(sec["smoke"]["check"]))
    prov = sec["provision"]
    ssh_config = t["ssh_config"]
    if ssh_config:
        ssh_config = str((base / ssh_config).resolve())
    shared = _shared(t)
    op_timeout = float(_op_timeout(t["op_timeout"]))
    return Config(
        path=path,
        base=base,
        name=name,
        state=(base / top["state"]).resolve(),
        repo=sec["source"]["repo"],
        head=sec["source"]["head"],
        subdir=subdir,
        out=(base / sec["bundle"]["out"]).resolve(),
        artifacts=artifacts,
        submodules=submodules,
        **_bundle_selection(sec["bundle"]),
        keep=_keep(t["keep"]),
        shared=shared["shared"],
        shared_files=shared["shared_files"],
        host=t["host"],
        root=root,
        dir=t["dir"],
        strategy=t["strategy"],
        python=t["python"],
        ssh_config=ssh_config,
        create_root=t["create_root"],
        op_timeout=op_timeout,
        service=service.parse(sec["service"], sec["health"], t["strategy"], op_timeout),
        trust=_trust(t["trust"]),
        allowed_signers=str((base / t["allowed_signers"]).resolve()) if t["allowed_signers"] else "",
        checks=checks,
        provision_root=_provision_root(prov["root"], t["host"], base),
        provision_dirs=tuple(_relative(d, "provision.dirs") for d in _str_list(prov["dirs"], "provision.dirs")),
        provision_config_file=_relative(prov["config_file"], "provision.config_file") if prov["config_file"] else "",
        provision_settings=dict(prov["settings"]),
        environment=_environment(sec["environment"]) if "environment" in data else None,
        host_names=_host_names(t),
        group=t["group"],
        fleet=_fleet(sec["fleet"]),
        inventory_path=str((base / t["inventory"]).resolve()) if t["inventory"] else "",
    )


_STRICT_TABLES = ("name", "state", "source", "bundle", "target", "provision", "fleet", "environment", "service", "health")


def _host_names(t: dict[str, Any]) -> tuple[str, ...]:
    """``target.hosts``, each name checked; an inventory is read by the fleet (``fleet.stages.resolve``)."""
    names = _str_list(t["hosts"], "target.hosts")
    if (names or t["inventory"]) and t["host"]:
        raise ConfigError("target.host and target.hosts / target.inventory are exclusive", hint="use target.hosts for a fleet, target.host for one host")
    if names and t["inventory"]:
        raise ConfigError("target.hosts and target.inventory are exclusive", hint="list the hosts, or name an inventory and a group")
    if names:
        from .fleet.inventory import host_name_problem

        for n in names:
            why = host_name_problem(n)
            if why:
                raise ConfigError(f"target.hosts: {n!r} cannot be a fleet host: {why}", hint="use an ssh alias or user@host (it names a state folder)")
    return names


def _op_timeout(value: int) -> int:
    if value < 1:
        raise ConfigError("target.op_timeout must be at least 1 (seconds)", hint="target.op_timeout = 3600")
    return value


def _fleet(f: dict[str, Any]) -> Fleet:
    forks = f["forks"]
    if forks < 1:
        raise ConfigError("fleet.forks must be at least 1", hint="fleet.forks = 10")
    serial = f["serial"]
    waves: list[int | str] = []
    for item in serial if isinstance(serial, list) else ([] if serial is None else [serial]):
        count = isinstance(item, int) and not isinstance(item, bool) and item > 0
        percent = isinstance(item, str) and re.fullmatch(r"\d{1,3}%", item) is not None and 0 < int(item[:-1]) <= 100
        if not (count or percent):
            raise ConfigError(f"fleet.serial: {item!r} is not a host count or a percentage", hint='e.g. serial = [1, "25%", "100%"]')
        waves.append(item)
    mfp = f["max_fail_percentage"]
    if isinstance(mfp, bool) or not isinstance(mfp, (int, float)) or not 0 <= mfp <= 100:
        raise ConfigError(f"fleet.max_fail_percentage must be a number from 0 to 100, got {mfp!r}", hint="fleet.max_fail_percentage = 0")
    return Fleet(forks, tuple(waves), float(mfp))


def _trust(path: str) -> str:
    """``target.trust``: an absolute path on the target (its own allowed_signers file)."""
    if path and (not path.startswith("/") or "/../" in path + "/" or len(path) > 4096):
        raise ConfigError(f"target.trust must be an absolute path on the target, got {path!r}", hint='target.trust = "/etc/release/allowed_signers"')
    return path


def _keep(value: int) -> int:
    if value < 0 or value > 10_000:
        raise ConfigError(f"target.keep must be between 1 and 10000 (0 or absent: never prune), got {value}", hint="target.keep = 5")
    return value


def _shared(t: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """``target.shared`` / ``shared_files``: paths relative to the release, inside it, each
    named once, none inside another, none a name the deploy writes itself."""
    from .agent import DEPLOY_WRITES

    out: dict[str, tuple[str, ...]] = {}
    seen: list[str] = []
    for key in ("shared", "shared_files"):
        paths = []
        for rel in _str_list(t[key], f"target.{key}"):
            if rel.startswith("/") or ".." in rel.split("/"):
                raise ConfigError(f"target.{key}: {rel!r} leaves the release", hint='write a path relative to the release, e.g. "var/uploads"')
            clean = _relative(rel, f"target.{key}", "the release")
            if clean.split("/")[0] in (*DEPLOY_WRITES, ".venv"):
                raise ConfigError(f"target.{key}: {rel!r} is a name the deploy writes itself", hint="share another path")
            clash = next((s for s in seen if s == clean or clean.startswith(s + "/") or s.startswith(clean + "/")), None)
            if clash is not None:
                raise ConfigError(f"target.{key}: {rel!r} overlaps the shared path {clash!r}", hint="name each shared path once, none inside another")
            seen.append(clean)
            paths.append(clean)
        out[key] = tuple(paths)
    return out


VERSION_FROM = ("", "git-tag")


def _bundle_selection(b: dict[str, Any]) -> dict[str, Any]:
    """``bundle.version`` / ``version_from`` (a plain application's version) and
    ``bundle.include`` / ``exclude`` (what ships)."""
    if b["version_from"] not in VERSION_FROM:
        raise ConfigError(f'bundle.version_from must be "git-tag" or absent, got {b["version_from"]!r}', hint='version_from = "git-tag"')
    if b["version"] and b["version_from"]:
        raise ConfigError("bundle.version and bundle.version_from are exclusive", hint="keep one")
    version = ""
    if b["version"]:
        from packaging.version import InvalidVersion, Version

        try:
            version = names.check_version(str(Version(b["version"])))
        except InvalidVersion:
            raise ConfigError(f"bundle.version {b['version']!r} is not a PEP 440 version", hint='e.g. version = "2.4.0"') from None
    patterns: dict[str, tuple[str, ...]] = {}
    for key in ("include", "exclude"):
        patterns[key] = _str_list(b[key], f"bundle.{key}")
        for p in patterns[key]:
            if not p.strip("/") or p.startswith("/") or ".." in p.split("/"):
                raise ConfigError(f"bundle.{key}: {p!r} is not a path inside the project", hint='e.g. "docs/" or "*.md", relative to the project')
    return {"version": version, "version_from": b["version_from"], **patterns}


def _environment(env: dict[str, Any]) -> Environment:
    python = env["python"]
    if python and not re.fullmatch(r"3\.\d{1,2}", python):
        raise ConfigError(f'environment.python must be a Python version like "3.11", got {python!r}', hint="fix environment.python")
    platforms = _str_list(env["platforms"], "environment.platforms")
    for p in platforms:
        if not re.fullmatch(r"[a-z0-9_]+", p):
            raise ConfigError(f"environment.platforms: {p!r} is not a platform tag", hint='e.g. "manylinux_2_28_x86_64"')
    if bool(python) != bool(platforms):
        raise ConfigError("environment.python and environment.platforms go together", hint="set both, or neither to ask the target")
    requirements = tuple(_relative(r, "environment.requirements", "the project") for r in _str_list(env["requirements"], "environment.requirements"))
    from .source.requirements import requirement  # one rule for a requirement, wherever it is written

    dependencies = tuple(requirement(d, "environment.dependencies") for d in _str_list(env["dependencies"], "environment.dependencies"))
    return Environment(
        _str_list(env["extras"], "environment.extras"), _str_list(env["groups"], "environment.groups"), python, platforms, requirements, dependencies
    )


def _no_control(value: object, key: str) -> None:
    """No NUL anywhere in the config's strings, and no control character at all in names,
    paths and hosts (everything but the smoke checks' scripts): exit 2 naming the key."""
    if isinstance(value, str):
        strict = key.split(".", 1)[0].split("[", 1)[0] in _STRICT_TABLES
        if "\0" in value or (strict and any(ord(c) < 32 or ord(c) == 0x7F for c in value)):
            raise ConfigError(f"config key '{key}' holds a control character (NUL, newline, ...)", hint=f"fix '{key}'")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _no_control(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_control(v, f"{key}[{i}]")


def _relative(rel: str, key: str, inside: str = "provision.root") -> str:
    """A path that must stay inside its root: relative, no '..' or empty component."""
    from .agent import name_problem

    why = name_problem(rel.strip("/")) if not rel.startswith("/") else "absolute path"
    if why:
        raise ConfigError(f"{key}: {rel!r} must be a relative path inside {inside} ({why})", hint=f"fix {key}")
    return rel.strip("/")


def _provision_root(root: str, host: str, base: Path) -> str:
    if not root or Path(root).is_absolute():
        return root
    if host:
        raise ConfigError("provision.root must be an absolute path for an SSH target", hint="write the full path on the host")
    return str((base / root).resolve())


def _parse_check(index: int, raw: Any, default_timeout: int) -> Check:
    where = f"smoke.check[{index}]."
    kind, values = kinded_table(raw, where, "smoke.check", "check", COMMON_CHECK_KEYS, CHECK_KEYS)
    for key in ("modules", "args", "argv", "queries", "count_tables", "forbid_functions", "allow_functions", "paths"):
        if key in values and isinstance(values[key], list):
            values[key] = list(_str_list(values[key], where + key))
    if kind == "attr":
        if (values["startswith"] is None) == (values["equals"] is None):
            raise ConfigError(f"{where}: an attr check needs exactly one of 'startswith' or 'equals'", hint='add startswith = "0.6"')
        if values["startswith"] == "":
            raise ConfigError(f"{where}startswith is empty: every text starts with it", hint='e.g. startswith = "0.6"')
        if ":" not in values["object"]:
            raise ConfigError(f"{where}object must look like 'module:attribute'", hint='e.g. object = "cutter_agent:__version__"')
    for key in ("modules", "paths"):  # an empty list would make a check that cannot fail
        if key in values and not values[key]:
            raise ConfigError(f"{where}{key} must name at least one entry", hint=f"list what the {kind} check covers, or remove the check")
    if kind == "compileall":
        for rel in values["paths"]:
            if not rel or rel.startswith("/") or ".." in rel.split("/"):
                raise ConfigError(f"{where}paths: {rel!r} must be a folder or file inside the release, relative", hint='e.g. paths = ["src", "app.py"]')
        if values["exclude"] is not None:
            try:
                re.compile(values["exclude"])
            except re.error as exc:
                raise ConfigError(f"{where}exclude is not a regular expression: {exc}", hint='e.g. exclude = "/tests/data/"') from None
    if kind == "command" and not values["argv"]:
        raise ConfigError(f"{where}argv must not be empty", hint='e.g. argv = ["{python}", "cli.py", "status"]')
    if kind == "db-readonly" and values["via"] not in ("controller", "target"):
        raise ConfigError(
            f'{where}via must be "controller" or "target", got {values["via"]!r}', hint='via = "target" reaches the database as the target sees it'
        )
    if kind == "db-readonly" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", values["dsn_env"]):
        raise ConfigError(f"{where}dsn_env must be an environment variable name", hint="the DSN itself never goes in the file")
    name = values.pop("name") or f"{kind}"
    timeout = values.pop("timeout") or default_timeout
    values.pop("kind")
    opts = {k: v for k, v in values.items() if v is not None}
    return Check(kind=kind, name=name, timeout=timeout, options=opts)


def find(explicit: str | None, cwd: Path) -> tuple[Path, Mapping[str, Any]]:
    """Locate the config: ``--config``, else ``release.toml``, else ``[tool.release]``."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}", hint="check the --config argument")
        data = _load(path)
        if path.name == "pyproject.toml" or ("tool" in data and "release" in data.get("tool", {})):
            return path.resolve(), _tool_table(data, path)
        return path.resolve(), data
    rt = cwd / "release.toml"
    if rt.is_file():
        return rt.resolve(), _load(rt)
    pp = cwd / "pyproject.toml"
    if pp.is_file():
        data = _load(pp)
        if "release" in data.get("tool", {}):
            return pp.resolve(), _tool_table(data, pp)
    raise ConfigError(
        f"no configuration found in {cwd}",
        hint="create release.toml, add [tool.release] to pyproject.toml, or pass --config PATH",
    )


def _tool_table(data: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    table = data.get("tool", {}).get("release")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path} has no [tool.release] table", hint="add [tool.release] or pass a release.toml")
    return table


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the syntax at the position shown") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nests arrays or tables deeper than the TOML parser can follow", hint="flatten it") from None


def load(explicit: str | None = None, cwd: Path | None = None) -> Config:
    path, data = find(explicit, cwd or Path.cwd())
    return parse(data, path)
