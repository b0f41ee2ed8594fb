"""Fleet targets: ``target.hosts``, or an Ansible inventory (INI or YAML) and ``target.group``.

The inventory is read the way ``ansible-inventory --list`` reads it (tested against
ansible-core): groups, ``[group:children]``, ``[group:vars]``, host variables inline or
under ``vars:``, variables inherited from parent groups (a child group's value wins,
the host's own value wins over any group's), ``all`` and ``ungrouped``, host entries with
a port or ranges (``hostpatterns``). Of the
variables, the ones a connection needs are used: ``ansible_host``, ``ansible_port``,
``ansible_user``, ``ansible_python_interpreter``, ``ansible_ssh_private_key_file``, the
safe part of ``ansible_ssh_common_args`` / ``ansible_ssh_extra_args`` (``ssh_args``), and
``ansible_connection`` (ssh, or local: this machine; any other is refused).

``--limit PATTERN`` selects hosts by host or group names, comma-separated (``:`` also
separates, as in Ansible; ``!name`` excludes).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import hostpatterns


@dataclass(frozen=True)
class Host:
    """One target host: its inventory name and how to reach it."""

    name: str
    address: str = ""  # ansible_host ("" = the name itself, resolved by ssh_config)
    port: int = 0
    user: str = ""
    python: str = ""  # ansible_python_interpreter ("" = target.python)
    ssh_args: tuple[str, ...] = ()  # ansible_ssh_private_key_file and the safe part of ansible_ssh_common_args / extra_args
    local: bool = False  # ansible_connection=local: this machine, as Ansible runs such a host


@dataclass
class Inventory:
    """Hosts and groups as read; a group's ``hosts`` and ``children`` are ordered sets (dicts
    of None), so reading and resolving an inventory is linear in hosts times groups."""

    hosts: dict[str, dict[str, Any]]  # host -> its own variables
    groups: dict[str, dict[str, Any]]  # group -> {"hosts": {...}, "children": {...}, "vars": {...}}

    def __post_init__(self) -> None:
        self._members: dict[str, list[str]] = {}
        self._order: list[str] | None = None
        self._of_host: dict[str, list[str]] | None = None

    def members(self, group: str) -> list[str]:
        """Every host of ``group`` and of its children, in inventory order (computed once)."""
        if group not in self.groups:
            raise ConfigError(f"target.group: the inventory has no group {group!r}", hint="groups: " + ", ".join(sorted(self.groups)))
        if group in self._members:
            return self._members[group]
        out: dict[str, None] = {}
        done: set[str] = set()  # walked whole: a group reached again adds nothing (groups may share children)
        stack: list[tuple[str, tuple[str, ...]]] = [(group, ())]
        while stack:  # depth first, in order, without recursion (a chain of 10,000 groups)
            g, path = stack.pop()
            if g in path:
                raise ConfigError(f"inventory group {g!r} is its own child", hint="fix the [group:children] sections")
            if g in done:
                continue
            done.add(g)
            out.update(dict.fromkeys(self.groups[g].get("hosts", {})))
            below = (*path, g) if len(path) < 64 else None
            if below is None:
                raise ConfigError(f"inventory groups nest more than 64 deep below {group!r}", hint="flatten the [group:children] sections")
            stack.extend((c, below) for c in reversed(list(self.groups[g].get("children", {}))))
        self._members[group] = list(out)
        return self._members[group]

    def parents(self, group: str) -> list[str]:
        return [g for g, d in self.groups.items() if group in d.get("children", {})]

    def _group_order(self) -> list[str]:
        """Groups in the order their variables apply: by depth (the longest path from a top
        group), then name; computed once for all hosts."""
        if self._order is None:
            parents: dict[str, list[str]] = {g: [] for g in self.groups}
            for g, d in self.groups.items():
                for c in d.get("children", {}):
                    parents.setdefault(c, []).append(g)
            depths: dict[str, int] = {}
            for start in self.groups:
                self.members(start)  # refuses a cycle first
                stack = [start]
                while stack:
                    g = stack[-1]
                    todo = [p for p in parents.get(g, []) if p not in depths]
                    if todo:
                        stack.extend(todo)
                        continue
                    stack.pop()
                    depths[g] = 1 + max((depths[p] for p in parents.get(g, [])), default=-1)
            self._order = sorted(self.groups, key=lambda g: (depths[g], g))
        return self._order

    def host_vars(self, host: str) -> dict[str, Any]:
        """Variables of ``host``: all < parent groups < child groups < the host's own."""
        if self._of_host is None:
            of_host: dict[str, list[str]] = {}
            for g in self._group_order():
                for h in self.members(g):
                    of_host.setdefault(h, []).append(g)
            self._of_host = of_host
        merged: dict[str, Any] = {}
        for g in self._of_host.get(host, []):
            merged.update(self.groups[g].get("vars", {}))
        merged.update(self.hosts.get(host, {}))
        return merged

    def host(self, name: str) -> Host:
        why = host_name_problem(name)
        if why:
            raise ConfigError(
                f"inventory: host {name!r} cannot be a fleet host: {why}",
                hint="rename it in the inventory (an ssh alias or user@host; ansible_host gives the address)",
            )
        v = self.host_vars(name)
        raw_port = v.get("ansible_port", v.get("ansible_ssh_port", 0))
        port = port_number(raw_port)
        if port is None:
            raise ConfigError(f"inventory: ansible_port of {name} is not a port number (1-65535): {str(raw_port)[:80]!r}", hint="fix the inventory")
        address = str(v.get("ansible_host", v.get("ansible_ssh_host", "")) or "")
        if address and not is_destination(address):
            raise ConfigError(
                f"inventory: ansible_host of {name} is not a host name or an IP address: {address[:80]!r}",
                hint="ansible_host must be a DNS name or an IP literal (it reaches ssh and, through ProxyCommand %h, a shell)",
            )
        user = str(v.get("ansible_user", v.get("ansible_ssh_user", "")) or "")
        if user and not _USER.fullmatch(user):
            raise ConfigError(f"inventory: ansible_user of {name} is not a user name: {user[:80]!r}", hint="letters, digits, '.', '_', '-' (not first)")
        python = str(v.get("ansible_python_interpreter", "") or "")
        if python and ((not python.startswith("/") and "/" in python) or any(c.isspace() or not c.isprintable() for c in python)):
            raise ConfigError(f"inventory: ansible_python_interpreter of {name} is not a path or a command name: {python[:80]!r}", hint="fix the inventory")
        connection = str(v.get("ansible_connection", "") or "ssh").removeprefix("ansible.builtin.")
        if connection not in CONNECTIONS:
            raise ConfigError(
                f"inventory: ansible_connection of {name} is {connection[:80]!r}: this tool reaches a host over ssh or, for local, on this machine",
                hint="release to it another way, or leave it out of target.group (--limit '!NAME')",
            )
        local = connection == "local"
        return Host(name=name, address=address, port=port, user=user, python=python, ssh_args=() if local else ssh_args(name, v), local=local)


# ansible_connection values with a meaning here: ssh (Ansible's own names for it), and local;
# any other (docker, winrm, ...) would have been reached over ssh by its name, maybe another machine
CONNECTIONS = frozenset({"ssh", "smart", "paramiko", "paramiko_ssh", "local"})


# the ssh options an inventory's ansible_ssh_common_args / ansible_ssh_extra_args may carry:
# how to authenticate and check the host, and a jump host; never a command (ProxyCommand,
# LocalCommand, KnownHostsCommand, ...), a forward, another configuration file, nor what this
# tool itself manages (connection sharing, its log level: OpenSSH's messages name a failure)
SAFE_SSH_OPTIONS = frozenset(
    s.lower()
    for s in (
        "StrictHostKeyChecking", "UserKnownHostsFile", "GlobalKnownHostsFile", "HostKeyAlias", "CheckHostIP", "UpdateHostKeys",
        "IdentityFile", "IdentitiesOnly", "IdentityAgent", "CertificateFile", "PubkeyAuthentication", "PasswordAuthentication",
        "PreferredAuthentications", "PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes", "HostKeyAlgorithms", "KexAlgorithms",
        "Ciphers", "MACs", "ConnectTimeout", "ConnectionAttempts", "ServerAliveInterval", "ServerAliveCountMax", "TCPKeepAlive",
        "Compression", "AddressFamily", "ProxyJump",
    )
)  # fmt: skip
SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")


def ssh_args(name: str, v: dict[str, Any]) -> tuple[str, ...]:
    """What the host's inventory says ssh must be given beyond its address, port and user, as
    Ansible gives it: ``-i <key file>`` for ``ansible_ssh_private_key_file``, and the options
    of ``ansible_ssh_common_args`` / ``ansible_ssh_extra_args`` (``-o Key=Value`` of
    ``SAFE_SSH_OPTIONS``, ``-J`` / ``-i``). Any other option is refused (exit 2) naming the
    host and the variable: before, these were ignored, and a host meant to be reached through
    a bastion was reached directly. Nothing here reaches a shell."""
    out: list[str] = []
    key = next((v[k] for k in KEY_VARS if v.get(k)), "")
    if key:
        out += ["-i", _plain_value(name, "ansible_ssh_private_key_file", str(key))]
    for var in SSH_ARG_VARS:
        raw = v.get(var)
        if not raw:
            continue
        try:
            words = shlex.split(str(raw))
        except ValueError as exc:
            raise ConfigError(f"inventory: {var} of {name} is not a command line ({exc})", hint="fix the inventory") from None
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("-o", "-J", "-i") or (word.startswith(("-o", "-J", "-i")) and len(word) > 2):
                flag, value = (word, words[i + 1] if i + 1 < len(words) else "") if len(word) == 2 else (word[:2], word[2:])
                i += 2 if len(word) == 2 else 1
                value = _plain_value(name, var, value)
                if flag == "-o":
                    key, _sep, setting = value.partition("=") if "=" in value else value.partition(" ")
                    option = key.strip().lower()
                    if option not in SAFE_SSH_OPTIONS:
                        raise ConfigError(
                            f"inventory: {var} of {name} sets ssh option {option!r}, which this tool does not take from an inventory",
                            hint="set it in target.ssh_config (the ssh configuration every host is reached with) instead",
                        )
                    if option == "proxyjump":
                        _jump_hosts(name, var, setting.strip())
                elif flag == "-J":
                    _jump_hosts(name, var, value)
                out += [flag, value]
                continue
            raise ConfigError(
                f"inventory: {var} of {name} holds {word[:80]!r}, which this tool does not take from an inventory",
                hint="only -o Key=Value (authentication, host keys, time limits, ProxyJump), -J and -i are taken; set the rest in target.ssh_config",
            )
    return tuple(out)


def _plain_value(name: str, var: str, value: str) -> str:
    if not value or value.startswith("-") or any(not c.isprintable() for c in value):
        raise ConfigError(f"inventory: {var} of {name}: {value[:80]!r} is empty, unprintable or starts with '-'", hint="fix the inventory")
    return value


def _jump_hosts(name: str, var: str, hops: str) -> None:
    """ProxyJump's ``[user@]host[:port]`` list: each hop a destination (ssh runs itself for it,
    no shell; ``none`` is none)."""
    if hops.lower() == "none":
        return
    for hop in hops.split(","):
        user, _at, rest = hop.strip().rpartition("@")
        host, _colon, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
        if (user and not _USER.fullmatch(user)) or not is_destination(host) or (port and port_number(port) in (None, 0)):
            raise ConfigError(f"inventory: {var} of {name} names a jump host that is not [user@]host[:port]: {hop[:80]!r}", hint="fix the inventory")


# a user name as useradd and OpenSSH's remote user take it (no shell or ssh_config token)
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def port_number(value: object) -> int | None:
    """A port from an inventory (0 = not set), or None when it is not one: 1 - 65535."""
    if value in (None, "", 0):
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 0 < int(text) <= 65535:
        return None
    return int(text)


def is_destination(text: str) -> bool:
    """Whether ``text`` is a DNS host name (labels of letters, digits, '-' and '_', no range)
    or an IP literal: the only forms that reach ssh as a host, where a ProxyCommand's %h
    hands them to a shell."""
    import ipaddress

    if not text or len(text) > 253 or text.startswith(("-", ".")):
        return False
    if _DNS_NAME.fullmatch(text):
        return True
    try:
        ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


_DNS_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?")


def host_name_problem(name: str) -> str:
    """Why ``name`` cannot name a fleet host, or '': it is an ssh destination (an alias or a
    host name, an IP address, optionally ``user@`` first) and the name of the host's own
    state folder. Nothing else reaches ssh: a ProxyCommand's %h or %r would hand it to a
    shell (``$(cmd)``)."""
    if not name:
        return "it is empty"
    if name.startswith(("-", ".")):
        return "it starts with '-' or '.'"
    if "/" in name or "\\" in name:
        return "it holds a slash"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "it holds a space or a control character"
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        return "it is longer than 255 bytes"
    user, at, host = name.rpartition("@")
    if at and not _USER.fullmatch(user):
        return f"{user[:40]!r} is not a user name"
    if not is_destination(host):
        return "it is not a host name, an alias of letters, digits, '.', '_' and '-', or an IP address"
    return ""


def _value(text: str) -> Any:
    """An INI variable value the way Ansible's INI plugin reads it (literals where they parse)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError, MemoryError):  # nested past the parser's limits: text too
        return text


def _add_group(inv: Inventory, name: str) -> dict[str, Any]:
    return inv.groups.setdefault(name, {"hosts": {}, "children": {}, "vars": {}})


def parse_ini(text: str, where: str) -> Inventory:
    inv = Inventory(hosts={}, groups={})
    _add_group(inv, "all")
    _add_group(inv, "ungrouped")
    section, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            name, _, suffix = line[1:-1].partition(":")
            if suffix not in ("", "children", "vars"):
                raise ConfigError(f"{where}:{n}: unknown section [{line[1:-1]}]", hint="use [group], [group:children] or [group:vars]")
            section, kind = name, suffix or "hosts"
            _add_group(inv, section)
            continue
        group = _add_group(inv, section)
        if kind == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                raise ConfigError(f"{where}:{n}: expected key=value in [{section}:vars]", hint="fix the inventory")
            group["vars"][key.strip()] = _value(value.strip())
        elif kind == "children":
            _add_group(inv, line)
            group["children"][line] = None
        else:
            try:
                parts = shlex.split(line, comments=True)
            except ValueError as exc:  # an unclosed quote
                raise ConfigError(f"{where}:{n}: {exc}", hint="fix the quoting on that line") from None
            if not parts:
                continue
            values: dict[str, Any] = {}
            for a in parts[1:]:
                key, eq, value = a.partition("=")
                if not eq:
                    raise ConfigError(f"{where}:{n}: expected key=value after the host name, got {a!r}", hint="fix the inventory")
                values[key] = _value(value)
            _add_hosts(inv, group, parts[0], values, f"{where}:{n}")
    _finish(inv)
    return inv


def _add_hosts(inv: Inventory, group: dict[str, Any], entry: str, values: dict[str, Any], where: str) -> None:
    """The hosts one inventory entry stands for (``web[1:3]:2222``), into ``group``: a port
    in the entry is the host's ``ansible_port`` when the host is new (as Ansible sets it),
    then the entry's own variables."""
    names, port = hostpatterns.expand(entry, where)
    for name in names:
        new = name not in inv.hosts
        hv = inv.hosts.setdefault(name, {})
        if new and port:
            hv["ansible_port"] = port
        hv.update(values)
        group["hosts"][name] = None


def parse_yaml(text: str, where: str) -> Inventory:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}", hint="fix the inventory") from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise ConfigError(f"{where} nests too deeply to be an inventory", hint="fix the inventory") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: an inventory is a mapping of groups (all:, ...)", hint="fix the inventory")
    inv = Inventory(hosts={}, groups={})
    _add_group(inv, "all")
    _add_group(inv, "ungrouped")

    walked: set[tuple[str, int]] = set()

    def walk(name: str, body: Any, path: tuple[str, ...] = ()) -> None:
        """One group; YAML anchors may make the document a graph, even a cycle (a group
        that is its own child: refused, as Ansible refuses it) or a fan-out that repeats
        the same group body millions of times (each (name, body) is walked once)."""
        if name in path:
            raise ConfigError(f"{where}: group {name!r} is its own child ({' > '.join((*path, name))})", hint="remove the loop from children:")
        if len(path) >= 64:
            raise ConfigError(f"{where}: groups nest more than 64 deep at {name!r}", hint="flatten the children:")
        if (name, id(body)) in walked:
            return
        walked.add((name, id(body)))
        group = _add_group(inv, name)
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: group {name!r} must be a mapping", hint="hosts:, children:, vars:")
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise ConfigError(f"{where}: hosts of group {name!r} must be a mapping (host: its variables)", hint="write hosts: {web1: {}, web2: {}}")
        for host, hv in hosts.items():
            if not isinstance(hv or {}, dict):
                raise ConfigError(f"{where}: the variables of host {host!r} must be a mapping", hint="write host: {ansible_host: ...}")
            _add_hosts(inv, group, str(host), dict(hv or {}), f"{where}: group {name!r}")
        gvars = body.get("vars") or {}
        children = body.get("children") or {}
        if not isinstance(gvars, dict) or not isinstance(children, dict):
            raise ConfigError(f"{where}: vars and children of group {name!r} must be mappings", hint="write vars: {key: value}, children: {group: {...}}")
        group["vars"].update(gvars)
        for child, cbody in children.items():
            group["children"][str(child)] = None
            walk(str(child), cbody, (*path, name))

    for name, body in data.items():
        walk(str(name), body)
    _finish(inv)
    return inv


def _finish(inv: Inventory) -> None:
    """Ansible's implicit structure: every group is a child of all; hosts in no group are ungrouped."""
    grouped = {h for g, d in inv.groups.items() if g not in ("all", "ungrouped") for h in d["hosts"]}
    ungrouped = inv.groups["ungrouped"]["hosts"]
    for h in inv.hosts:
        if h not in grouped:
            ungrouped[h] = None
    inv.groups["ungrouped"]["hosts"] = {h: None for h in ungrouped if h not in grouped}
    inv.groups["all"]["hosts"] = {h: None for h in inv.groups["all"]["hosts"] if h not in grouped and h not in inv.groups["ungrouped"]["hosts"]}
    children = {c for o, d in inv.groups.items() if o != "all" for c in d["children"]}
    for g in inv.groups:
        if g != "all" and g not in children:
            inv.groups["all"]["children"][g] = None


MAX_INVENTORY = 16 << 20  # bytes of an inventory file


def load(path: Path) -> Inventory:
    """Read an inventory (untrusted input): at most ``MAX_INVENTORY`` bytes of UTF-8, parsed in
    time linear in hosts times groups; anything malformed is exit 2 naming the file."""
    if not path.is_file():
        raise ConfigError(f"target.inventory not found: {path}", hint="fix target.inventory")
    with path.open("rb") as f:
        raw = f.read(MAX_INVENTORY + 1)
    if len(raw) > MAX_INVENTORY:
        raise ConfigError(f"target.inventory {path} is larger than {MAX_INVENTORY >> 20} MiB", hint="split it, or use groups")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"target.inventory {path} is not UTF-8 ({exc.reason} at byte {exc.start})", hint="fix the inventory") from None
    if path.suffix in (".yml", ".yaml") or text.lstrip().startswith(("all:", "---")):
        return parse_yaml(text, str(path))
    return parse_ini(text, str(path))


def _limit_parts(pattern: str) -> list[str]:
    """``--limit`` split as Ansible splits it: on ',' if there is one, else the whole text when
    it is one address (``fe80::1``), else on ':' (outside brackets)."""
    import re

    pattern = pattern.strip()
    if "," in pattern:
        parts = pattern.split(",")
    elif hostpatterns.split_port(pattern)[0] != pattern or hostpatterns.is_address(pattern):
        parts = [pattern]
    else:
        parts = re.findall(r"(?:[^\s:\[\]]|\[[^\]]*\])+", pattern)
    return [p.strip() for p in parts if p.strip()]


# Ansible's host pattern subscript (inventory/manager.py PATTERN_WITH_SUBSCRIPT): ``[i]``,
# ``[-i]``, ``[a:b]`` (inclusive end), ``[a:]``; a ``~regex`` is never subscripted
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
MAX_LIMIT = 4096  # bytes of a --limit pattern


def _subscript(name: str) -> tuple[str, tuple[int, int | None] | None]:
    if name.startswith("~"):
        return name, None
    m = _SUBSCRIPT.match(name)
    if not m:
        return name, None
    expr, index, start, _sep, end = m.groups()
    if index is not None:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def _matcher(name: str, pattern: str) -> Callable[[str], bool]:
    """Whether a name matches: ``~regex`` (re.match, as Ansible), else a shell-style glob."""
    import fnmatch

    if name.startswith("~"):
        try:
            rx = re.compile(name[1:])
        except re.error as exc:
            raise ConfigError(f"--limit: {name!r} is not a regular expression ({exc})", hint="after '~' comes a Python regular expression") from None
        return lambda text: rx.match(text) is not None
    if not any(c in name for c in "*?["):
        return lambda text: text == name
    glob = re.compile(fnmatch.translate(name))
    return lambda text: glob.match(text) is not None


def _enumerate(names: list[str], inv: Inventory | None, part: str, pattern: str) -> list[str]:
    """The hosts one pattern names, in Ansible's order (its groups' hosts, then hosts by
    name), with a subscript applied to that list as Ansible applies it."""
    expr, sub = _subscript(part)
    match = _matcher(expr, pattern)
    found: dict[str, None] = {}
    groups = [g for g in (inv.groups if inv is not None else {}) if match(g)]
    for g in groups:
        found.update(dict.fromkeys(inv.members(g) if inv is not None else []))
    if not groups or expr.startswith("~") or any(c in expr for c in ".?*["):
        found.update(dict.fromkeys(h for h in names if match(h)))
    hosts = list(found)
    if sub is None:
        return hosts
    start, end = sub
    try:
        if end is None:
            return [hosts[start]]
        return hosts[start : (len(hosts) - 1 if end == -1 else end) + 1]
    except IndexError:
        raise ConfigError(f"--limit: no host at position {start} of {expr!r} ({len(hosts)} hosts, counted from 0)", hint="hosts: " + ", ".join(hosts)) from None


def select(names: list[str], inv: Inventory | None, pattern: str) -> list[str]:
    """Apply ``--limit`` as Ansible does: host or group names, shell-style wildcards
    (``web*``), ``~regex``, each with an optional subscript (``web[0]``, ``web[-1]``,
    ``web[1:3]`` inclusive, ``web[2:]``), ',' or ':' separated; the plain ones are joined,
    then ``&name`` keeps only hosts also in it, then ``!name`` drops hosts. A name that
    matches nothing is an error, never an empty run."""
    if not pattern:
        return names
    if len(pattern.encode("utf-8", "surrogateescape")) > MAX_LIMIT:
        raise ConfigError(f"--limit is longer than {MAX_LIMIT} bytes", hint="use groups or a shorter pattern")
    include: set[str] = set()
    within: list[set[str]] = []
    exclude: set[str] = set()
    any_include = False
    for part in _limit_parts(pattern):
        kind = part[0] if part[0] in "!&" else ""
        name = part[len(kind) :]
        found = set(_enumerate(names, inv, name, pattern))
        if not found:
            raise ConfigError(f"--limit: {name!r} matches no target host and no inventory group", hint="hosts: " + ", ".join(names))
        if kind == "!":
            exclude |= found
        elif kind == "&":
            within.append(found)
        else:
            any_include = True
            include |= found
    chosen = [h for h in names if (h in include or not any_include) and all(h in w for w in within) and h not in exclude]
    if not chosen:
        raise ConfigError(f"--limit {pattern!r} selects no host", hint="hosts: " + ", ".join(names))
    return chosen
