"""The host decides what it runs (#24 item 4): with `target.trust`, the agent on the target
checks the bundle against the host's own allowed_signers before it writes anything; every
bad input is refused (exit 4, naming the file and the reason) with the target root byte
for byte as it was (its journal included), over both transports. `status` shows who
signed each release."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support import copy_bundle, keypair, make_project, run_release, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A signed bundle (its own wheel: the SBOM lists it), and one of another commit."""
    base = tmp_path_factory.mktemp("trust")
    repo = make_project(base / "app")
    key = keypair(base, "builder")
    cfg = write_config(base / "release.toml", repo.path, bundle={"artifacts": ["wheel"]})
    first = run_release("--config", cfg, "--json", "bundle", "--sign", str(key))
    assert first.returncode == 0, first.stderr[-2000:]
    repo.write("demo_app/core.py", "def answer():\n    return 43\n")
    repo.commit("another commit")
    other = run_release("--config", cfg, "--json", "bundle", "--sign", str(key))
    assert other.returncode == 0, other.stderr[-2000:]
    repo.git("checkout", "-q", "HEAD~1")
    yield {"repo": repo, "key": key, "first": json.loads(first.stdout), "other": json.loads(other.stdout), "base": base}


def trust_file(folder: Path, key: Path, principal: str = "release@example") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "allowed_signers"
    path.write_text(f"{principal} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}\n")
    path.chmod(0o644)
    return path


def sign(sums: Path, key: Path, namespace: str = "release-bundle") -> None:
    sums.with_name(sums.name + ".sig").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", namespace, str(sums)], check=True)


def rewrite_sums(bundle: Path, key: Path) -> None:
    """The checksum file made again over the files as they are now, and signed (an attacker with a key)."""
    sums = bundle.with_name(bundle.name + ".sha256")
    lines = []
    for line in sums.read_text().splitlines():
        name = line.split("  ", 1)[1]
        lines.append(f"{hashlib.sha256((bundle.parent / name).read_bytes()).hexdigest()}  {name}")
    sums.write_text("\n".join(lines) + "\n")
    sign(sums, key)


def repack(bundle: Path, change: Callable[[str, bytes], bytes]) -> None:
    """The bundle rewritten with members changed (the manifest's digests kept true)."""
    with tarfile.open(bundle) as tf:
        members = [(m, tf.extractfile(m).read() if m.isreg() else None) for m in tf]  # type: ignore[union-attr]
    changed = {m.name: change(m.name, data) for m, data in members if data is not None}
    digests = {name.split("/", 1)[1]: hashlib.sha256(data).hexdigest() for name, data in changed.items() if "/" in name}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in members:
            if data is not None:
                data = changed[m.name]
                if m.name.endswith("/BUNDLE-MANIFEST.json"):
                    doc = json.loads(data)
                    for f in doc["files"]:
                        if f["path"] in digests and "sha256" in f:
                            f["sha256"], f["size"] = digests[f["path"]], len(changed[m.name.rsplit("/", 1)[0] + "/" + f["path"]])
                    data = json.dumps(doc).encode()
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    bundle.write_bytes(gzip.compress(out.getvalue(), mtime=0))


def root_state(root: Path) -> dict[str, Any]:
    """Every entry with its mode, and a file's mtime and content (a folder's own mtime aside:
    a check after the scan ran in a private staging folder, made and removed)."""
    out: dict[str, Any] = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        is_file = p.is_file() and not p.is_symlink()
        out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns if is_file else 0, hashlib.sha256(p.read_bytes()).hexdigest() if is_file else "")
    return out


def setup_target(signed: dict[str, Any], tmp_path: Path, transport: dict[str, object], signers: Path | None = None) -> tuple[Path, Path, Path]:
    bundle = copy_bundle(signed["first"], tmp_path / "bundles")
    root = tmp_path / "srv"
    root.mkdir()
    (root / "keep.txt").write_text("the operator's file\n")
    signers = signers or trust_file(tmp_path / "etc", signed["key"])
    cfg = write_config(
        tmp_path / "release.toml", signed["repo"].path, bundle={"artifacts": ["wheel"]}, target={"root": str(root), "trust": str(signers), **transport}
    )
    return cfg, bundle, root


def test_a_bundle_signed_by_a_key_the_host_trusts_is_deployed_and_status_says_who(signed: dict[str, Any], tmp_path: Path, transport: dict[str, object]) -> None:
    cfg, bundle, root = setup_target(signed, tmp_path, transport)
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan", "--bundle", str(bundle))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    target = Path(json.loads(cp.stdout)["target"])
    assert "signed_by: release@example" in (target / "DEPLOY-MANIFEST.txt").read_text()
    st = run_release("--config", cfg, "status")
    assert st.returncode == 0 and "signed by release@example" in st.stdout, st.stdout


ATTACKS = [
    "unsigned",
    "unlisted key",
    "another namespace",
    "signature over another checksum file",
    "provenance removed",
    "provenance altered",
    "provenance of another commit (re-signed)",
    "provenance of another bundle's digest (re-signed)",
    "sbom beside swapped (re-signed)",
    "sbom lists a wheel the bundle lacks (re-packed, re-signed)",
    "sbom lacks the wheel the bundle carries (re-packed, re-signed)",
    "trust file missing",
    "trust file a symlink",
    "trust file group-writable",
    "trust file empty",
    "trust file not owned by root",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_bad_input_is_refused_on_the_target_and_nothing_is_written(
    signed: dict[str, Any], tmp_path: Path, transport: dict[str, object], attack: str
) -> None:
    cfg, bundle, root = setup_target(signed, tmp_path, transport)
    key = signed["key"]
    signers = tmp_path / "etc" / "allowed_signers"
    sums = bundle.with_name(bundle.name + ".sha256")
    prov = bundle.with_name(bundle.name + ".intoto.json")
    sbom_beside = bundle.with_name(bundle.name + ".cdx.json")
    other = copy_bundle(signed["other"], tmp_path / "other")
    if attack == "unsigned":
        sums.with_name(sums.name + ".sig").unlink()
        why = "unsigned bundle refused"
    elif attack == "unlisted key":
        sign(sums, keypair(tmp_path, "stranger"))
        why = "is not by any key in this host's"
    elif attack == "another namespace":
        sign(sums, key, "file")
        why = "bad signature on"
    elif attack == "signature over another checksum file":
        shutil.copy2(other.with_name(other.name + ".sha256.sig"), sums.with_name(sums.name + ".sig"))
        why = "bad signature on"
    elif attack == "provenance removed":
        prov.unlink()
        why = f"{prov.name} is missing"
    elif attack == "provenance altered":
        prov.write_text(prov.read_text().replace('"name": "demo-app"', '"name": "evil-app"'))
        why = f"{prov.name}: its sha256 is not the one"
    elif attack == "provenance of another commit (re-signed)":
        prov.write_text(prov.read_text().replace(signed["first"]["head"], signed["other"]["head"]))
        rewrite_sums(bundle, key)
        why = f"names commit {signed['other']['head'][:12]}"
    elif attack == "provenance of another bundle's digest (re-signed)":
        prov.write_text(prov.read_text().replace(signed["first"]["sha256"], signed["other"]["sha256"]))
        rewrite_sums(bundle, key)
        why = "is the provenance of another bundle"
    elif attack == "sbom beside swapped (re-signed)":
        shutil.copy2(other.with_name(other.name + ".cdx.json"), sbom_beside)
        rewrite_sums(bundle, key)
        why = "SBOM.cdx.json is not the SBOM its checksum file lists"
    elif attack.startswith("sbom lists a wheel") or attack.startswith("sbom lacks"):
        lacks = attack.startswith("sbom lacks")

        def change(name: str, data: bytes) -> bytes:
            if not name.endswith("/SBOM.cdx.json"):
                return data
            doc = json.loads(data)
            if lacks:
                doc["metadata"]["component"]["properties"] = [p for p in doc["metadata"]["component"]["properties"] if p["name"] != "release:path"]
            else:
                evil = {
                    "type": "library",
                    "name": "evil",
                    "version": "1.0",
                    "bom-ref": "pkg:pypi/evil@1.0",
                    "hashes": [{"alg": "SHA-256", "content": "0" * 64}],
                }
                evil["properties"] = [{"name": "release:path", "value": "release-env/wheels/evil-1.0-py3-none-any.whl"}]
                doc.setdefault("components", []).append(evil)
            new = json.dumps(doc).encode()
            sbom_beside.write_bytes(new)
            return new

        old_sha = hashlib.sha256(bundle.read_bytes()).hexdigest()
        repack(bundle, change)
        # the attacker, holding a key, makes the provenance of the new bundle too
        prov.write_text(prov.read_text().replace(old_sha, hashlib.sha256(bundle.read_bytes()).hexdigest()))
        rewrite_sums(bundle, key)
        why = "does not list" if lacks else "lists release-env/wheels/evil-1.0-py3-none-any.whl, which the bundle does not carry"
    elif attack == "trust file missing":
        signers.unlink()
        why = "does not exist on this host"
    elif attack == "trust file a symlink":
        real = signers.with_name("real_signers")
        signers.rename(real)
        signers.symlink_to(real)
        why = "is a symbolic link"
    elif attack == "trust file group-writable":
        signers.chmod(0o664)
        why = "is writable by its group or by everyone"
    elif attack == "trust file empty":
        signers.write_text("")
        why = "is empty: it trusts no key"
    else:
        os.chown(signers, 65534, 0)
        why = "not root"
    before = root_state(root)
    cp = run_release("--config", cfg, "deploy", "--no-plan", "--bundle", str(bundle))
    assert cp.returncode == 4, cp.stdout + cp.stderr
    assert why in cp.stderr, cp.stderr
    assert root_state(root) == before, "the target root is byte for byte as it was, its journal included"


@pytest.mark.parametrize("attack", ["provenance removed", "provenance of another bundle (re-signed)", "sbom altered"])
def test_the_controller_refuses_first_when_it_checks_signatures(signed: dict[str, Any], tmp_path: Path, attack: str) -> None:
    """The controller's own check stays: with target.allowed_signers it refuses a bundle
    whose provenance or SBOM beside it does not hold, before anything is shipped."""
    bundle = copy_bundle(signed["first"], tmp_path / "bundles")
    root = tmp_path / "srv"
    root.mkdir()
    here = trust_file(tmp_path / "controller", signed["key"])
    cfg = write_config(
        tmp_path / "release.toml", signed["repo"].path, bundle={"artifacts": ["wheel"]}, target={"root": str(root), "allowed_signers": str(here)}
    )
    prov = bundle.with_name(bundle.name + ".intoto.json")
    if attack == "provenance removed":
        prov.unlink()
        why = f"{prov} is missing"
    elif attack == "sbom altered":
        sbom_file = bundle.with_name(bundle.name + ".cdx.json")
        sbom_file.write_text(sbom_file.read_text().replace("demo-app", "demo-app2", 1))
        why = "its sha256 is not the one"
    else:
        other = copy_bundle(signed["other"], tmp_path / "other")
        shutil.copy2(other.with_name(other.name + ".intoto.json"), prov)
        rewrite_sums(bundle, signed["key"])
        why = "names another bundle"
    before = root_state(root)
    cp = run_release("--config", cfg, "deploy", "--no-plan", "--bundle", str(bundle))
    assert cp.returncode == 4 and why in cp.stderr, cp.stdout + cp.stderr
    assert root_state(root) == before
