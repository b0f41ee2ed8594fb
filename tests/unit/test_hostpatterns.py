"""Inventory host entries: ports and ranges as Ansible reads them (the equality with
``ansible-inventory --list`` is tested in test_fleet), and the entries refused."""

from __future__ import annotations

import time

import pytest

from release.errors import ConfigError
from release.fleet import hostpatterns


@pytest.mark.parametrize(
    ("entry", "names", "port"),
    [
        ("web1", ["web1"], None),
        ("web1:2222", ["web1"], 2222),
        ("[fe80::1]:2201", ["fe80::1"], 2201),
        ("fe80::1", ["fe80::1"], None),
        ("10.0.0.[8:10]", ["10.0.0.8", "10.0.0.9", "10.0.0.10"], None),
        ("web[08:10]", ["web08", "web09", "web10"], None),
        ("n[:2]", ["n0", "n1", "n2"], None),
        ("x[a:c]-[1:2]:22", ["xa-1", "xa-2", "xb-1", "xb-2", "xc-1", "xc-2"], 22),
        ("s[0:10:5]", ["s0", "s5", "s10"], None),
        ("z[y:B]", ["zy", "zz", "zA", "zB"], None),  # Ansible's letters: a-z, then A-Z
        ("user@web:22", ["user@web:22"], None),  # not an address: taken whole, as Ansible does
    ],
)
def test_entries_expand_as_ansible_reads_them(entry: str, names: list[str], port: int | None) -> None:
    assert hostpatterns.expand(entry, "hosts.ini:1") == (names, port)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("web[1:2:3:4]", "begin:end or begin:end:step"),
        ("web[1:]", "name its end"),
        ("web[01:100]", "one length"),
        ("web[c:a]", "begin <= end"),
        ("web[1:3:0]", "not a host range"),
        ("web[1:x]", "not a host range"),
        ("web[1:3", "without its ']'"),
        ("web1:", "reserved for a port"),
    ],
)
def test_malformed_entries_are_exit_2_naming_the_line(entry: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        hostpatterns.expand(entry, "hosts.ini:7")
    assert why in err.value.message and "hosts.ini:7" in err.value.message and err.value.exit_code == 2


def test_a_range_too_large_is_refused_before_it_fills_memory() -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        hostpatterns.expand("web[0:999999999999]-[0:999999999999]", "hosts.ini:3")
    assert "more than 100000 hosts" in err.value.message
    assert time.monotonic() - started < 5


def test_a_limit_that_matches_nothing_is_exit_2_never_a_run_on_no_host() -> None:
    from release.fleet import inventory

    names = ["web1", "web2", "db1"]
    assert inventory.select(names, None, "web*") == ["web1", "web2"]
    assert inventory.select(names, None, "web*:&*2") == ["web2"]
    for pattern, why in (("cache*", "matches no target host"), ("web1:!web*", "selects no host")):
        with pytest.raises(ConfigError) as err:
            inventory.select(names, None, pattern)
        assert why in err.value.message and err.value.exit_code == 2
