"""Signed checksums with ssh-keygen -Y; deploy enforces them when allowed_signers is set."""

from __future__ import annotations

from pathlib import Path

from ..support import Repo, keypair, run_release, write_config


def test_signed_bundle_is_required_and_verified(project: Repo, tmp_path: Path) -> None:
    good, bad = keypair(tmp_path, "release-signer"), keypair(tmp_path, "intruder")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"release@example.invalid {(good.with_suffix('.pub')).read_text().strip()}\n")
    root = tmp_path / "target"
    cfg = write_config(tmp_path / "release.toml", project.path, target={"root": str(root), "allowed_signers": str(signers)})

    cp = run_release("--config", cfg, "--json", "bundle")  # unsigned
    assert cp.returncode == 0
    cp = run_release("--config", cfg, "deploy")
    assert cp.returncode == 4 and "unsigned" in cp.stderr
    assert not list(root.glob("demo-app*"))

    import time

    time.sleep(1.1)
    cp = run_release("--config", cfg, "bundle", "--sign", str(bad))
    assert cp.returncode == 0, cp.stderr
    cp = run_release("--config", cfg, "deploy")
    assert cp.returncode == 4 and "not by any key" in cp.stderr

    time.sleep(1.1)
    cp = run_release("--config", cfg, "--json", "bundle", "--sign", str(good))
    assert cp.returncode == 0, cp.stderr
    sums = sorted((tmp_path / "bundles").glob("*.sha256"))[-1]
    assert sums.with_name(sums.name + ".sig").is_file()
    # tampering with the signed checksum file is caught
    original = sums.read_text()
    sums.write_text(original.replace(original[0], "f" if original[0] != "f" else "e", 1))
    cp = run_release("--config", cfg, "deploy")
    assert cp.returncode == 4 and "bad signature" in cp.stderr
    sums.write_text(original)
    cp = run_release("--config", cfg, "deploy")
    assert cp.returncode == 0, cp.stderr
