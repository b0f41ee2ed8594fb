"""The bundle's provenance: an in-toto v1 Statement with an SLSA v1 provenance predicate,
built and checked with the in-toto-attestation bindings.

The subject is the bundle (its file name and sha256). The build definition names this
tool's build type, the external parameters (the repository, the recorded commit, the
config's digest, the name and version) and the resolved dependencies (the commit, and
each wheel the bundle carries with its sha256); the run details name the builder (this
tool and its version), the CI run when the ``GITHUB_*`` variables say there is one, and
when the build started and finished. Written beside the bundle (``<bundle>.intoto.json``)
and listed in the signed checksum file: it names the bundle's digest, so it cannot be
inside the bundle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from typing import Any

from .agent import trust

SUFFIX = trust.PROVENANCE_SUFFIX
STATEMENT_TYPE = trust.STATEMENT_TYPE
PREDICATE_TYPE = trust.PREDICATE_TYPE

BUILD_TYPE = "urn:release-pipeline:buildtype:bundle:v1"
BUILDER_ID = "urn:release-pipeline:builder"
MAX_BYTES = 16 << 20  # a provenance file read by verify or the agent


def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ci_run() -> str:
    """The CI run's URL, when GitHub Actions' variables say this runs in one ('' otherwise)."""
    server, repo, run = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if server and repo and run:
        attempt = os.environ.get("GITHUB_RUN_ATTEMPT", "")
        return f"{server}/{repo}/actions/runs/{run}" + (f"/attempts/{attempt}" if attempt else "")
    return ""


def build(
    bundle_name: str,
    bundle_sha256: str,
    *,
    repository: str,
    commit: str,
    config_sha256: str,
    name: str,
    version: str,
    wheels: Mapping[str, str],
    started: dt.datetime,
    finished: dt.datetime,
) -> bytes:
    """The statement's JSON. ``wheels``: each wheel's path in the bundle -> sha256."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement

    from . import __version__
    from .redact import redact

    repo = redact(repository)
    deps = [ResourceDescriptor(uri=f"git+{repo}@{commit}", digest={"gitCommit": commit}).pb]
    deps += [ResourceDescriptor(name=path, digest={"sha256": digest}).pb for path, digest in sorted(wheels.items())]
    predicate = provenance_pb2.Provenance()
    bd = predicate.build_definition
    bd.build_type = BUILD_TYPE
    bd.external_parameters.update({"repository": repo, "commit": commit, "config_sha256": config_sha256, "name": name, "version": version})
    bd.resolved_dependencies.extend(deps)
    rd = predicate.run_details
    rd.builder.id = BUILDER_ID
    rd.builder.version["release-pipeline"] = __version__
    run = ci_run()
    if run:
        rd.metadata.invocation_id = run
    rd.metadata.started_on.FromDatetime(started.astimezone(dt.UTC).replace(microsecond=0))
    rd.metadata.finished_on.FromDatetime(finished.astimezone(dt.UTC).replace(microsecond=0))
    statement = Statement(
        [ResourceDescriptor(name=bundle_name, digest={"sha256": bundle_sha256}).pb],
        PREDICATE_TYPE,
        json_format.MessageToDict(predicate),
    )
    statement.validate()
    doc = json_format.MessageToDict(statement.pb)
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def read(data: bytes) -> dict[str, Any]:
    """What a statement says, read once with bounds and checked by the bindings: subject
    name and digest, commit, config digest, builder, CI run, wheels (any other shape is a
    ValueError naming why)."""
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    from .agent import jsonio

    doc = jsonio.loads_bounded(data, MAX_BYTES)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    pb = statement_pb2.Statement()
    try:
        json_format.ParseDict(doc, pb)
    except json_format.ParseError as exc:
        raise ValueError(f"not an in-toto statement: {exc}") from None
    Statement.copy_from_pb(pb).validate()
    from .agent.trust import provenance_facts

    return provenance_facts(doc)
