"""An inventory host entry as Ansible reads it: a port suffix, then ranges.

``web1:2222`` is host ``web1`` with ``ansible_port`` 2222 (``[fe80::1]:2222`` for IPv6);
``web[01:03].example.com`` is three hosts, ``web01`` to ``web03`` (a leading zero sets the
width), ``db-[a:c]`` three more, ``[0:10:5]`` takes a step, and an entry may hold several
ranges. The rules follow ansible-core's ``parse_address`` and ``expand_hostname_range``
(the tests compare with ``ansible-inventory --list``); a range inside an IPv6 address is
checked with the range as one number.
"""

from __future__ import annotations

import ipaddress
import re
import string

from ..errors import ConfigError

MAX_HOSTS = 100_000  # what ranges may expand to, per inventory entry: a typo must not fill memory

_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.IGNORECASE)  # an IPv4 address is one too
_BRACKETED_PORT = re.compile(r"\[(.+)\]:([0-9]+)")
_HOST_PORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)")


def _is_ipv6(text: str) -> bool:
    if "[" in text:  # a range in an address: checked with each range as one number
        text = re.sub(r"\[[0-9a-fA-F]+:[0-9a-fA-F]+(?::[0-9]+)?\]", "0", text)
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def is_address(text: str) -> bool:
    """Whether ``text`` is a host name, an IPv4 or an IPv6 address (ranges allowed)."""
    return bool(_HOSTNAME.fullmatch(text)) or _is_ipv6(text)


def split_port(entry: str) -> tuple[str, int | None]:
    """(host pattern, port or None); an entry that is no valid address is taken whole."""
    address, port = entry, None
    for pattern in (_BRACKETED_PORT, _HOST_PORT):
        m = pattern.fullmatch(address)
        if m:
            address, port = m.group(1), int(m.group(2))
    if is_address(address):
        return address, port
    return entry, None


def _expand(pattern: str, where: str, out: list[str]) -> None:
    head, _, rest = pattern.partition("[")
    body, closed, tail = rest.partition("]")
    if not closed:
        raise ConfigError(f"{where}: host range without its ']': {pattern!r}", hint="write ranges as [begin:end] or [begin:end:step]")
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ConfigError(f"{where}: a host range must be begin:end or begin:end:step: {pattern!r}", hint="fix the inventory")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ConfigError(f"{where}: a host range must name its end: {pattern!r}", hint="fix the inventory")
    width = len(begin) if begin[0] == "0" and len(begin) > 1 else 0
    if width and len(end) != width:
        raise ConfigError(f"{where}: a zero-padded host range needs begin and end of one length: {pattern!r}", hint="fix the inventory")
    try:
        step = int(step_text)
        if begin in string.ascii_letters and end in string.ascii_letters:
            first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
            if first > last:
                raise ConfigError(f"{where}: a host range must have begin <= end: {pattern!r}", hint="fix the inventory")
            items: list[str] | range = list(string.ascii_letters[first : last + 1 : step])
        else:
            items = range(int(begin), int(end) + 1, step)
    except ValueError:
        raise ConfigError(f"{where}: not a host range: [{body}] in {pattern!r}", hint="use numbers or single letters, and a step above 0") from None
    if len(out) + len(items) > MAX_HOSTS:
        raise ConfigError(f"{where}: {pattern!r} expands to more than {MAX_HOSTS} hosts", hint="check the range")
    for item in items:
        name = f"{head}{str(item).zfill(width) if width else item}{tail}"
        if "[" in name:
            _expand(name, where, out)
        else:
            out.append(name)


def expand(entry: str, where: str) -> tuple[list[str], int | None]:
    """The host names an inventory entry stands for, and the port it gives them."""
    pattern, port = split_port(entry)
    if entry.strip().endswith(":") and port is None:
        raise ConfigError(f"{where}: host {entry!r} ends in ':', which is reserved for a port", hint="write host:port, or remove the ':'")
    if "[" not in pattern:
        return [pattern], port
    names: list[str] = []
    _expand(pattern, where, names)
    return names, port
