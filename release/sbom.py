"""The bundle's SBOM: CycloneDX 1.6 JSON, built with cyclonedx-python-lib.

The application is the BOM's subject (``metadata.component``); every wheel of the release's
environment is a component with its name, version, purl, sha256 and the licence its
metadata states (``License-Expression``, else ``License``, else its licence classifiers);
the dependency graph is what each wheel's ``Requires-Dist`` asks for, evaluated for the
target's Python and platform, among the wheels the bundle carries. Deterministic: the
serial number is derived from the commit and the environment's lock, the timestamp is the
commit's time, so two builds of one commit give the same bytes (the copy inside the
bundle keeps ``--reproducible-check`` true). Written inside the bundle (``SBOM.cdx.json``)
and beside it (``<bundle>.cdx.json``), listed in the signed checksum file.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zipfile
from collections.abc import Mapping
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from .agent import trust

NAME = trust.SBOM_NAME  # inside the bundle
SUFFIX = trust.SBOM_SUFFIX  # beside it: <bundle>.cdx.json

MAX_METADATA = 16 << 20  # bytes of a wheel's METADATA read


def _metadata(wheel: Path) -> Any:
    """The wheel's METADATA headers (an email message), read to at most 16 MiB."""
    with zipfile.ZipFile(wheel) as z:
        name = next((n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        if name is None:
            return HeaderParser().parsestr("")
        with z.open(name) as f:
            text = f.read(MAX_METADATA).decode("utf-8", "replace")
    return HeaderParser().parsestr(text)


def _licences(meta: Any) -> list[Any]:
    from cyclonedx.contrib.license.factories import LicenseFactory

    factory = LicenseFactory()
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return [factory.make_from_string(expression)]
    stated = (meta.get("License") or "").strip()
    if stated and "\n" not in stated and len(stated) <= 100:
        return [factory.make_from_string(stated)]
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return [factory.make_with_name(c) for c in sorted(set(classifiers)) if c and c != "OSI Approved"]


def marker_environment(target: Mapping[str, Any]) -> dict[str, str]:
    """PEP 508 marker values of the target (its Python version and platform tags)."""
    version = str(target.get("python", ""))
    platforms = list(target.get("platforms") or [])
    machine = ""
    for tag in platforms:
        for arch in ("x86_64", "aarch64", "armv7l", "ppc64le", "s390x", "i686"):
            if tag.endswith(arch):
                machine = arch
                break
        if machine:
            break
    return {
        "python_version": version,
        "python_full_version": version + ".0" if version.count(".") == 1 else version,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def _requires(meta: Any, env: dict[str, str], extras: tuple[str, ...] = ()) -> set[str]:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    out: set[str] = set()
    for line in meta.get_all("Requires-Dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
            out.add(canonicalize_name(req.name))
    return out


def build(
    name: str,
    version: str,
    commit: str,
    commit_time: int,
    environment: Mapping[str, Any] | None,
    wheels: Mapping[str, Path],
    extras: tuple[str, ...] = (),
    app_wheel: tuple[str, str] | None = None,
) -> bytes:
    """The SBOM of a bundle: ``environment`` is BUNDLE-MANIFEST's (None: no environment),
    ``wheels`` maps each package's path in the bundle to its file here (for its metadata),
    ``app_wheel`` is the application's own wheel (its path in the bundle, its sha256)."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL
    from packaging.utils import canonicalize_name

    from . import __version__

    packages = list((environment or {}).get("packages") or [])
    app_entry = next((p for p in packages if str(p["path"]).startswith("dist/")), None)
    if app_entry is None and app_wheel is not None:
        app_entry = {"name": name, "version": version, "path": app_wheel[0], "sha256": app_wheel[1]}
    bom = Bom()
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, f"release:{name}@{version}:{commit}:{(environment or {}).get('lock_sha256', '')}")
    bom.metadata.timestamp = dt.datetime.fromtimestamp(commit_time, dt.UTC)
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="release-pipeline", version=__version__))
    app = Component(
        type=ComponentType.APPLICATION,
        name=name,
        version=version,
        bom_ref=f"app:{name}@{version}",
        purl=PackageURL(type="pypi", name=str(canonicalize_name(app_entry["name"] if app_entry else name)), version=version),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=app_entry["sha256"])] if app_entry else [],
        properties=[Property(name="release:commit", value=commit), *([Property(name="release:path", value=str(app_entry["path"]))] if app_entry else [])],
    )
    bom.metadata.component = app
    env = marker_environment(environment or {})
    by_name: dict[str, Any] = {}
    metas: dict[str, Any] = {}
    for p in packages:
        if p is app_entry:
            continue
        key = str(canonicalize_name(p["name"]))
        path = wheels.get(p["path"])
        meta = _metadata(path) if path is not None else HeaderParser().parsestr("")
        metas[key] = meta
        component = Component(
            type=ComponentType.LIBRARY,
            name=str(p["name"]),
            version=str(p["version"]),
            bom_ref=f"pkg:pypi/{key}@{p['version']}",
            purl=PackageURL(type="pypi", name=key, version=str(p["version"]), qualifiers={"file_name": Path(str(p["path"])).name}),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=str(p["sha256"]))],
            licenses=_licences(meta),
            properties=[Property(name="release:path", value=str(p["path"]))],
        )
        bom.components.add(component)
        by_name[key] = component
    needed: set[str] = set()
    for key, component in by_name.items():
        deps = sorted(_requires(metas[key], env) & set(by_name) - {key})
        needed.update(deps)
        bom.register_dependency(component, [by_name[d] for d in deps])
    asked = _requires(_metadata(wheels[app_entry["path"]]), env, extras) if app_entry and app_entry["path"] in wheels else set()
    # the application's own requirements, and every package nothing else needs (a plain
    # application's requirements, a dependency group's)
    roots = sorted((asked & set(by_name)) | (set(by_name) - needed))
    bom.register_dependency(app, [by_name[r] for r in roots])
    return (JsonV1Dot6(bom).output_as_string(indent=1) + "\n").encode()


def validate(text: str) -> str:
    """'' when ``text`` is a valid CycloneDX 1.6 JSON document, else why not."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return "" if error is None else str(error)[:500]


def wheels_of(doc: Mapping[str, Any]) -> dict[str, str]:
    """The wheels an SBOM lists: their path in the bundle -> sha256 (the agent's rule)."""
    from .agent.trust import sbom_wheels

    return sbom_wheels(doc)
