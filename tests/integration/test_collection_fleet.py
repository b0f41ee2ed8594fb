"""The collection on a fleet of 8 namespace hosts (#25): Ansible's own fan-out (`serial`
waves, `forks`) drives deploy, smoke and promote, each host with its own sshd and root.
A host that is down, a host whose releases path is taken, a host that receives a
tampered bundle and a host whose disk fills each fail alone, nothing of theirs
overwritten or left behind, while the others land; a rollback play takes back exactly
what landed, every root byte for byte as before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..netns import NsFleet, available
from ..support import ROOT, make_project, need, run_release, tree_state, write_config

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

HOSTS = [f"h{i}" for i in range(8)]  # h6: no sshd (down); h7: its root is a 512 KiB tmpfs


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsFleet]:
    why = available()
    need(not why, why)
    base = tmp_path_factory.mktemp("collfleet")
    f = NsFleet(base, base / "srv")
    try:
        f.start(len(HOSTS), no_sshd=(6,), tmpfs={7: "512k"})
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import runpy

    assemble = runpy.run_path(str(ROOT / "scripts" / "build_collection.py"))["assemble"]
    return Path(assemble(tmp_path_factory.mktemp("coll"))).parents[2]


def run_play(collection: Path, folder: Path, inventory: Path, play: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path = folder / "play.yml"
    path.write_text(play)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collection),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_LOCAL_TEMP": str(folder / "ansible-local"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(folder / "cp"),
    }
    exe = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(exe), "-i", str(inventory), "-f", "8", str(path), *extra], capture_output=True, text=True, env=env, cwd=folder)


@pytest.mark.parametrize("max_fail", [None, 25])
def test_waves_land_on_every_good_host_each_bad_one_fails_alone_and_a_rollback_play_undoes_exactly(
    fleet: NsFleet, collection: Path, tmp_path: Path, max_fail: int | None
) -> None:
    """Without max_fail_percentage every good host lands, deploy to promote; with it (25 %,
    exceeded in the second wave) the play stops after the deploy task there, and the
    rollback play finds what landed by each host's own records."""
    repo = make_project(tmp_path / "app")
    repo.write("data/blob.txt", os.urandom(350 * 1024).hex())  # 700 KiB: more than h7's disk holds
    repo.commit("data")
    root = str(fleet.root / tmp_path.name)
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        target={"root": root, "create_root": True, "strategy": "timestamped"},
        checks=[{"kind": "import", "modules": ["demo_app"]}],
    )
    assert run_release("--config", cfg, "bundle").returncode == 0
    roots = {h.name: h.folder / tmp_path.name for h in fleet.hosts}
    # on h2, something the operator made stands where the releases folder would be
    roots["h2"].mkdir(parents=True)
    taken = roots["h2"] / "releases"
    taken.write_text("the operator's\n")
    bundle = next((tmp_path / "bundles").glob("*.tar.gz"))
    # h3 receives a tampered copy of the bundle (its checksum file the original's)
    tampered = tmp_path / "tampered" / bundle.name
    tampered.parent.mkdir()
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    shutil.copy2(bundle.with_name(bundle.name + ".sha256"), tampered.with_name(tampered.name + ".sha256"))
    before = {h: tree_state(r) if r.exists() else None for h, r in roots.items()}
    inventory = tmp_path / "hosts.ini"
    per_host = {"h3": f" release_bundle={tampered}"}
    inventory.write_text(
        "[web]\n"
        + "".join(f"{h} ansible_python_interpreter=python3{per_host.get(h, '')}\n" for h in HOSTS)
        + f"[web:vars]\nansible_ssh_common_args='-F {fleet.ssh_config}'\nrelease_bundle={bundle}\n"
    )
    play = f"""- hosts: web
  gather_facts: false
  serial: [1, "100%"]
{f"  max_fail_percentage: {max_fail}" if max_fail else ""}
  tasks:
    - name: deploy
      release.pipeline.deploy: {{config: "{cfg}", bundle: "{{{{ release_bundle }}}}"}}
      register: deployed
    - release.pipeline.smoke: {{config: "{cfg}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - release.pipeline.promote: {{config: "{cfg}", deploy_id: "{{{{ deployed.deploy_id }}}}"}}
    - ansible.builtin.copy:
        content: "{{{{ deployed.deploy_id }}}}"
        dest: "{tmp_path}/landed-{{{{ inventory_hostname }}}}"
      delegate_to: localhost
"""
    cp = run_play(collection, tmp_path, inventory, play)
    assert cp.returncode != 0, cp.stdout[-4000:]
    out = cp.stdout
    assert "is a file, not a folder" in out, out[-4000:]  # h2
    assert "checksum mismatch on the target" in out, out[-4000:]  # h3
    assert "UNREACHABLE" in out, out[-4000:]  # h6
    assert "free space" in out or "no space left" in out, out[-4000:]  # h7
    assert taken.read_text() == "the operator's\n", "nothing of h2 was overwritten"
    released = {h for h, r in roots.items() if (r / "releases").is_dir() and any((r / "releases").iterdir())}
    assert released == {"h0", "h1", "h4", "h5"}, released
    if max_fail:
        assert not (roots["h1"] / "current").exists(), "the play stopped before the second wave's promote"
        # the documented rollback play (ansible/playbooks/undo.yml): by each host's own records
        undo = (ROOT / "ansible" / "playbooks" / "undo.yml").read_text()
        cp = run_play(collection, tmp_path, inventory, undo, "-e", f"release_root={root}")
        assert "UNREACHABLE" in cp.stdout, cp.stdout[-3000:]  # h6 is still down
        recap = cp.stdout.split("PLAY RECAP")[-1]
        assert recap.count("changed=1") == 4 and recap.count("unreachable=1") == 1 and "failed=1" not in recap, recap
    else:
        landed = {h: (tmp_path / f"landed-{h}").read_text().strip() for h in HOSTS if (tmp_path / f"landed-{h}").exists()}
        assert set(landed) == released, landed
        for h in landed:
            assert os.readlink(roots[h] / "current").startswith("releases/"), h
        # the rollback play: exactly what landed, host by host, by the deploy ids the play recorded
        undo = "- hosts: web\n  gather_facts: false\n  tasks:\n" + "".join(
            f'    - release.pipeline.rollback: {{root: "{root}", deploy_id: "{landed[h]}"}}\n      when: inventory_hostname == "{h}"\n' for h in landed
        )
        cp = run_play(collection, tmp_path, inventory, undo)
        assert cp.returncode == 0, cp.stdout[-4000:]
    for h, r in roots.items():
        assert (tree_state(r) if r.exists() else None) == before[h], f"{h}: the root is back byte for byte"
