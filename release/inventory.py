"""Fleet targets: ``target.hosts``, or an Ansible inventory (INI or YAML) and ``target.group``.

The inventory is read the way ``ansible-inventory --list`` reads it (tested against
ansible-core): groups, ``[group:children]``, ``[group:vars]``, host variables inline or
under ``vars:``, variables inherited from parent groups (a child group's value wins,
the host's own value wins over any group's), ``all`` and ``ungrouped``, host entries with
a port or ranges (``hostpatterns``). Of the
variables, the ones a connection needs are used: ``ansible_host``, ``ansible_port``,
``ansible_user``, ``ansible_python_interpreter``.

``--limit PATTERN`` selects hosts by host or group names, comma-separated (``:`` also
separates, as in Ansible; ``!name`` excludes).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import hostpatterns
from .errors import ConfigError


@dataclass(frozen=True)
class Host:
    """One target host: its inventory name and how to reach it."""

    name: str
    address: str = ""  # ansible_host ("" = the name itself, resolved by ssh_config)
    port: int = 0
    user: str = ""
    python: str = ""  # ansible_python_interpreter ("" = target.python)


@dataclass
class Inventory:
    hosts: dict[str, dict[str, Any]]  # host -> its own variables
    groups: dict[str, dict[str, Any]]  # group -> {"hosts": [...], "children": [...], "vars": {...}}

    def members(self, group: str) -> list[str]:
        """Every host of ``group`` and of its children, in inventory order."""
        if group not in self.groups:
            raise ConfigError(f"target.group: the inventory has no group {group!r}", hint="groups: " + ", ".join(sorted(self.groups)))
        out: list[str] = []
        seen: set[str] = set()
        done: set[str] = set()  # walked whole: a group reached again adds nothing (groups may share children)

        def walk(g: str, path: tuple[str, ...]) -> None:
            if g in path:
                raise ConfigError(f"inventory group {g!r} is its own child", hint="fix the [group:children] sections")
            if g in done:
                return
            for h in self.groups[g].get("hosts", []):
                if h not in seen:
                    seen.add(h)
                    out.append(h)
            for c in self.groups[g].get("children", []):
                walk(c, (*path, g))
            done.add(g)

        walk(group, ())
        return out

    def parents(self, group: str) -> list[str]:
        return [g for g, d in self.groups.items() if group in d.get("children", [])]

    def host_vars(self, host: str) -> dict[str, Any]:
        """Variables of ``host``: all < parent groups < child groups < the host's own."""
        depths: dict[str, int] = {}  # each group's once: the longest path up to it, not every path

        def depth(g: str, seen: tuple[str, ...] = ()) -> int:
            if g not in depths:
                ps = [p for p in self.parents(g) if p not in seen]
                depths[g] = 0 if not ps else 1 + max(depth(p, (*seen, g)) for p in ps)
            return depths[g]

        groups = [g for g in self.groups if host in self.members(g)]  # members refuses a cycle first
        order = sorted(groups, key=lambda g: (depth(g), g))
        merged: dict[str, Any] = {}
        for g in order:
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
        try:
            port = int(v.get("ansible_port", v.get("ansible_ssh_port", 0)) or 0)
        except (TypeError, ValueError):
            raise ConfigError(f"inventory: ansible_port of {name} is not a number: {v.get('ansible_port')!r}", hint="fix the inventory") from None
        return Host(
            name=name,
            address=str(v.get("ansible_host", v.get("ansible_ssh_host", "")) or ""),
            port=port,
            user=str(v.get("ansible_user", v.get("ansible_ssh_user", "")) or ""),
            python=str(v.get("ansible_python_interpreter", "") or ""),
        )


def host_name_problem(name: str) -> str:
    """Why ``name`` cannot name a fleet host, or '': it is an ssh destination (an alias,
    ``user@host``) and the name of the host's own state folder, so it is one plain path
    component."""
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
    return ""


def _value(text: str) -> Any:
    """An INI variable value the way Ansible's INI plugin reads it (literals where they parse)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError, MemoryError):  # nested past the parser's limits: text too
        return text


def _add_group(inv: Inventory, name: str) -> dict[str, Any]:
    return inv.groups.setdefault(name, {"hosts": [], "children": [], "vars": {}})


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
            if line not in group["children"]:
                group["children"].append(line)
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
        if name not in group["hosts"]:
            group["hosts"].append(name)


def parse_yaml(text: str, where: str) -> Inventory:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}", hint="fix the inventory") from None
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
        group["vars"].update(body.get("vars") or {})
        for child, cbody in (body.get("children") or {}).items():
            if child not in group["children"]:
                group["children"].append(str(child))
            walk(str(child), cbody, (*path, name))

    for name, body in data.items():
        walk(str(name), body)
    _finish(inv)
    return inv


def _finish(inv: Inventory) -> None:
    """Ansible's implicit structure: every group is a child of all; hosts in no group are ungrouped."""
    grouped = {h for g, d in inv.groups.items() if g not in ("all", "ungrouped") for h in d["hosts"]}
    for h in inv.hosts:
        if h not in grouped and h not in inv.groups["ungrouped"]["hosts"]:
            inv.groups["ungrouped"]["hosts"].append(h)
    inv.groups["ungrouped"]["hosts"] = [h for h in inv.groups["ungrouped"]["hosts"] if h not in grouped]
    inv.groups["all"]["hosts"] = [h for h in inv.groups["all"]["hosts"] if h not in grouped and h not in inv.groups["ungrouped"]["hosts"]]
    top = [g for g in inv.groups if g != "all" and not any(g in d["children"] for o, d in inv.groups.items() if o != "all")]
    for g in top:
        if g not in inv.groups["all"]["children"]:
            inv.groups["all"]["children"].append(g)


def load(path: Path) -> Inventory:
    if not path.is_file():
        raise ConfigError(f"target.inventory not found: {path}", hint="fix target.inventory")
    text = path.read_text()
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


def select(names: list[str], inv: Inventory | None, pattern: str) -> list[str]:
    """Apply ``--limit`` as Ansible does: host or group names or shell-style wildcards
    (``web*``), ',' or ':' separated; the plain ones are joined, then ``&name`` keeps only
    hosts also in it, then ``!name`` drops hosts. A name that matches nothing is an error,
    never an empty run."""
    import fnmatch

    if not pattern:
        return names
    include: set[str] = set()
    within: list[set[str]] = []
    exclude: set[str] = set()
    any_include = False
    for part in _limit_parts(pattern):
        kind = part[0] if part[0] in "!&" else ""
        name = part[len(kind) :]
        groups = [g for g in (inv.groups if inv is not None else {}) if g == name or fnmatch.fnmatchcase(g, name)]
        found = {h for g in groups for h in inv.members(g)} if inv is not None else set()
        found |= {h for h in names if h == name or fnmatch.fnmatchcase(h, name)}
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
