"""Inventories are untrusted input: every value that reaches ssh is a host name or an IP
literal, a user name or a port number (a ProxyCommand's %h hands the destination to a
shell), and reading one is linear in hosts times groups."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from release.errors import ConfigError
from release.fleet import inventory

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('web1 ansible_host="$(touch /tmp/pwned)"', "ansible_host of web1"),
        ("web1 ansible_host=`id`", "ansible_host of web1"),
        ("web1 ansible_host=-oProxyCommand=sh", "ansible_host of web1"),
        ("web1 ansible_host=a;b", "ansible_host of web1"),
        ("web1 ansible_host=10.0.0.1%eth0", "ansible_host of web1"),
        ('web1 ansible_user="x$(id)"', "ansible_user of web1"),
        ("web1 ansible_user=-oFoo", "ansible_user of web1"),
        ("web1 ansible_port=70000", "ansible_port of web1"),
        ("web1 ansible_port=22;id", "ansible_port of web1"),
        ("web1 ansible_port=-1", "ansible_port of web1"),
        ("web1 ansible_port=True", "ansible_port of web1"),
        ("$(id)", "cannot be a fleet host"),
        ("`id`", "cannot be a fleet host"),
        ("a%h", "cannot be a fleet host"),
        ("x$(id)@web1", "cannot be a fleet host"),
    ],
)
def test_a_value_that_could_reach_a_shell_through_ssh_is_refused(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(f"[web]\n{line}\n")
    inv = inventory.load(path)
    with pytest.raises(ConfigError) as err:
        for h in inv.members("web"):
            inv.host(h)
    assert words in err.value.message and err.value.exit_code == 2, err.value.message


@pytest.mark.parametrize(
    ("line", "address", "user", "port"),
    [
        ("web1 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=deploy", "10.0.0.1", "deploy", 2222),
        ("web1 ansible_host=fe80::1 ansible_port='22'", "fe80::1", "", 22),
        ("web1 ansible_host=web-1.example.com. ansible_user=svc_app.x", "web-1.example.com.", "svc_app.x", 0),
        ("web1", "", "", 0),
    ],
)
def test_the_forms_people_write_are_taken(tmp_path: Path, line: str, address: str, user: str, port: int) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(f"[web]\n{line}\n")
    host = inventory.load(path).host("web1")
    assert (host.address, host.user, host.port) == (address, user, port)


@pytest.mark.parametrize("name", ["web1", "deploy@web1", "10.0.0.1", "fe80::1", "db-2.internal", "web_1"])
def test_target_hosts_of_plain_names_are_taken(name: str) -> None:
    assert inventory.host_name_problem(name) == ""


def test_a_one_line_range_of_6000_hosts_reads_in_linear_time(tmp_path: Path) -> None:
    """`h[0000:5999]`: one 17-byte line once took 15 s before any stage started."""
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nh[0000:5999]\n")
    start = time.process_time()
    inv = inventory.load(path)
    hosts = [inv.host(h) for h in inv.members("web")]
    assert len(hosts) == 6000 and hosts[-1].name == "h5999"
    assert time.process_time() - start < 2


def test_many_hosts_in_many_groups_resolve_in_hosts_times_groups(tmp_path: Path) -> None:
    """5,000 hosts in 50 groups (each host in five), variables on every group: every host's
    variables are resolved once per group, not once per group per host."""
    lines = []
    for g in range(50):
        lines.append(f"[g{g}]")
        lines += [f"h{i:04d}" for i in range(5000) if i % 10 in (g % 10, (g + 1) % 10, (g + 2) % 10, (g + 3) % 10, (g + 4) % 10) and i % 5 == g % 5]
        lines.append(f"[g{g}:vars]\nansible_user=u{g}")
    lines.append("[all:children]\n" + "\n".join(f"g{g}" for g in range(50)))
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    start = time.process_time()
    inv = inventory.load(path)
    hosts = [inv.host(h) for h in inv.members("all")]
    assert len(hosts) == 5000 and all(h.user.startswith("u") for h in hosts)
    assert time.process_time() - start < 3


def test_a_chain_of_nested_groups_is_bounded_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[g0]\nweb1\n" + "".join(f"[g{i + 1}:children]\ng{i}\n" for i in range(5000)))
    inv = inventory.load(path)
    with pytest.raises(ConfigError) as err:
        inv.members("g5000")
    assert "more than 64 deep" in err.value.message


@pytest.mark.parametrize(
    ("pattern", "chosen"),
    [
        ("web[0]", ["web1"]),
        ("web[-1]", ["web4"]),
        ("web[1:2]", ["web2", "web3"]),
        ("web[2:]", ["web3", "web4"]),
        ("~web[12]", ["web1", "web2"]),
        ("~w.b[34]$,db1", ["web3", "web4", "db1"]),
    ],
)
def test_limit_subscripts_are_positions_and_tilde_is_a_regex(tmp_path: Path, pattern: str, chosen: list[str]) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nweb1\nweb2\nweb3\nweb4\n[db]\ndb1\n")
    inv = inventory.load(path)
    assert inventory.select(list(inv.hosts), inv, pattern) == chosen


def test_a_subscript_past_the_end_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nweb1\nweb2\n")
    inv = inventory.load(path)
    with pytest.raises(ConfigError) as err:
        inventory.select(list(inv.hosts), inv, "web[5]")
    assert "position 5" in err.value.message


def test_an_inventorys_key_file_and_safe_ssh_args_are_what_ssh_is_given() -> None:
    from release.fleet.inventory import ssh_args

    v = {
        "ansible_ssh_private_key_file": "~/.ssh/deploy key.pem",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o 'UserKnownHostsFile /dev/null' -J deploy@bastion:2222,jump2",
        "ansible_ssh_extra_args": "-oConnectTimeout=7 -i /keys/other",
    }
    assert ssh_args("web1", v) == (
        "-i",
        "~/.ssh/deploy key.pem",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile /dev/null",
        "-J",
        "deploy@bastion:2222,jump2",
        "-o",
        "ConnectTimeout=7",
        "-i",
        "/keys/other",
    )
    assert ssh_args("web1", {"ansible_private_key_file": "/k"}) == ("-i", "/k")
    assert ssh_args("web1", {}) == ()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ('-o ProxyCommand="sh -c \\"touch /tmp/x\\""', "sets ssh option 'proxycommand'"),
        ("-o LocalCommand=id -o PermitLocalCommand=yes", "sets ssh option 'localcommand'"),
        ("-oKnownHostsCommand=/bin/evil", "sets ssh option 'knownhostscommand'"),
        ("-o RemoteForward=9000:localhost:22", "sets ssh option 'remoteforward'"),
        ("-F /tmp/other_config", "holds '-F'"),
        ("-L 8080:db:5432", "holds '-L'"),
        ("-J '$(touch /tmp/x)'", "jump host that is not"),
        ("-o ProxyJump=a@b;c", "jump host that is not"),
        ("-o", "is empty, unprintable or starts with '-'"),
        ("-i -oProxyCommand=x", "is empty, unprintable or starts with '-'"),
        ("-o 'unterminated", "is not a command line"),
    ],
)
def test_an_inventorys_ssh_args_that_could_run_or_forward_anything_are_refused(args: str, said: str) -> None:
    from release.fleet.inventory import ssh_args

    with pytest.raises(ConfigError) as err:
        ssh_args("web1", {"ansible_ssh_common_args": args})
    assert said in err.value.message and "web1" in err.value.message, err.value.message


@pytest.mark.parametrize(
    ("connection", "local"),
    [("", False), ("ssh", False), ("ansible.builtin.ssh", False), ("paramiko", False), ("local", True), ("ansible.builtin.local", True)],
)
def test_ansible_connection_ssh_or_local_is_taken(tmp_path: Path, connection: str, local: bool) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(f"[web]\nweb1 {'ansible_connection=' + connection if connection else ''} ansible_ssh_common_args='-o ConnectTimeout=3'\n")
    host = inventory.load(path).host("web1")
    assert host.local is local and host.ssh_args == (() if local else ("-o", "ConnectTimeout=3"))


@pytest.mark.parametrize("connection", ["docker", "community.docker.docker", "winrm", "psrp", "kubectl"])
def test_an_ansible_connection_this_tool_cannot_make_is_refused(tmp_path: Path, connection: str) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(f"[web]\nweb1 ansible_connection={connection}\n")
    with pytest.raises(ConfigError, match=f"ansible_connection of web1 is '{connection}'"):
        inventory.load(path).host("web1")
