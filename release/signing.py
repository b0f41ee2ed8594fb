"""Offline signatures over a bundle's checksum with the OpenSSH tools on every host.

``release bundle --sign KEY`` writes ``<bundle>.sha256.sig`` (``ssh-keygen -Y sign``,
namespace ``release-bundle``); ``deploy`` with ``target.allowed_signers`` set refuses an
unsigned or wrongly signed bundle (exit 4).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import proc
from .errors import BlockedError, RefusedError

NAMESPACE = "release-bundle"


def sign(sums: Path, key: str) -> Path:
    if not Path(key).is_file():
        raise BlockedError(f"signing key not found: {key}", hint="pass the private key file to --sign")
    sig = sums.with_name(sums.name + ".sig")
    if sig.exists():
        raise RefusedError(f"signature already exists: {sig}", hint="it is never overwritten")
    proc.run(["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", NAMESPACE, str(sums)], what="ssh-keygen -Y sign")
    return sig


def verify(bundle: Path, allowed_signers: str, data: bytes) -> str:
    """Verify ``<bundle>.sha256.sig`` over ``data`` (the .sha256 bytes the caller read once and
    will use) against ``allowed_signers``; return the signer. The signature file is read
    once too, into a private copy that both ssh-keygen calls use."""
    sums = bundle.with_name(bundle.name + ".sha256")
    sig = sums.with_name(sums.name + ".sig")
    if not Path(allowed_signers).is_file():
        raise BlockedError(f"target.allowed_signers not found: {allowed_signers}", hint="fix target.allowed_signers")
    if not sig.is_file():
        raise RefusedError(f"unsigned bundle refused: {sig} is missing", hint="sign it with `release bundle --sign KEY`")
    with tempfile.TemporaryDirectory(prefix="release-sig-") as tmp:
        copy = Path(tmp) / "sig"
        copy.write_bytes(sig.read_bytes()[: 1 << 16])
        return _verify_copy(sums, copy, allowed_signers, data)


def _verify_copy(sums: Path, sig: Path, allowed_signers: str, data: bytes) -> str:
    found = proc.run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", allowed_signers], check=False)
    principal = found.out.strip().splitlines()[0] if found.returncode == 0 and found.out.strip() else ""
    if not principal:
        raise RefusedError(f"signature {sums.name}.sig is not by any key in {allowed_signers}", hint="sign with an allowed key")
    cp = proc.run(["ssh-keygen", "-Y", "verify", "-f", allowed_signers, "-I", principal, "-n", NAMESPACE, "-s", str(sig)], input=data, check=False)
    if cp.returncode != 0:
        raise RefusedError(f"bad signature on {sums.name} (signer {principal})", hint="the checksum file or its signature was altered", detail=cp.err)
    return principal
