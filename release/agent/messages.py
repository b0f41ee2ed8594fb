"""The typed protocol: every agent request and answer, as the controller builds and reads them.

Plain ``TypedDict`` (standard library, Python 3.8+): the messages are JSON on the wire, and
mypy checks both ends against these definitions.
"""

from __future__ import annotations

from typing import Any, TypedDict

# ----------------------------------------------------------------------------- requests


class FactsRequest(TypedDict, total=False):
    root: str
    parent: str
    dir: str


class Expect(TypedDict):
    name: str
    version: str
    commit: str


class _DeployBase(TypedDict):
    root: str
    parent: str
    dir: str
    deploy_id: str
    bundle: str
    bundle_sha256: str
    create_root: bool
    break_lock: bool
    ship_only: bool
    expect: Expect
    manifest: dict[str, str]


class TrustRequest(TypedDict):
    """``target.trust``: what the host checks against its own signers before it writes anything."""

    signers: str  # the allowed_signers file on the target
    sums: str  # the checksum file's text (bundle, SBOM, provenance)
    sig: str  # its signature ('' when there is none: refused)
    provenance: str  # the provenance statement's text ('' when there is none: refused)


class DeployRequest(_DeployBase, total=False):
    trust: TrustRequest
    bundle_path: str  # same machine: the agent reads the bundle where it lies
    shared: list[str]  # target.shared: folders under <root>/shared/ linked into the release
    shared_files: list[str]  # target.shared_files: files likewise (never created)


class _RollbackBase(TypedDict):
    root: str
    target: str
    deploy_id: str
    previous_current: str | None
    remove_parent_if_empty: bool
    parent_existed: bool
    parent_listing_sha256_before: str
    manifest_sha256: str
    tree_sha256: str
    names_sha256: str  # the release's entry names as deployed ("" when not recorded): see names_sha256
    discard_added: bool
    break_lock: bool


class RollbackRequest(_RollbackBase, total=False):
    journal_event: str  # "pruned": a removal by prune, journalled as such on the host
    from_host: bool  # no controller record (a deploy the Ansible collection made): the host's records describe it
    service: ServiceSpec  # restart and health-check the release `current` goes back to, when it was this one


class _PromoteBase(TypedDict):
    root: str
    target: str
    deploy_id: str
    break_lock: bool


class HealthSpec(TypedDict, total=False):
    """One ``[[health.check]]``: http (url, status, contains), tcp (address) or command (argv)."""

    name: str
    kind: str  # http | tcp | command
    url: str
    status: int
    contains: str
    address: str  # host:port
    argv: list[str]
    retries: int
    interval: float
    timeout: float


class ServiceSpec(TypedDict):
    """``[service]`` and ``[[health.check]]``: what runs on the target after `current` switches."""

    restart: list[str]  # an argv, run in the release folder ([]: no restart)
    timeout: float
    checks: list[HealthSpec]


class PromoteRequest(_PromoteBase, total=False):
    force: bool  # --force: promote without a passing smoke on the host (journalled)
    service: ServiceSpec  # restart and health checks after the switch; a failure reverts it


class _RepointBase(TypedDict):
    root: str
    deploy_id: str
    to: str | None  # a release relative to the root, or None: remove `current`
    from_host: bool  # the controller never saw the promote answer: the host's own record decides


class RepointRequest(_RepointBase, total=False):
    service: ServiceSpec  # restart and health-check the release `current` points at afterwards
    undo: bool  # the undo of this deploy's promotion (a failed wave): the journal's previous is the one before it


class StatusRequest(TypedDict):
    root: str


class _VerifyBase(TypedDict):
    target: str


class VerifyRequest(_VerifyBase, total=False):
    tree_sha256: str | None
    manifest_sha256: str
    env_sha256: str


class InspectRequest(TypedDict):
    root: str
    target: str
    deploy_id: str


class TidyRequest(TypedDict):
    root: str
    parent: str
    deploy_id: str
    break_lock: bool


class CheckSpec(TypedDict):
    kind: str
    name: str
    timeout: int
    options: dict[str, Any]


class _SmokeBase(TypedDict):
    target: str
    python: str
    checks: list[CheckSpec]


class SmokeRequest(_SmokeBase, total=False):
    tree_sha256: str | None
    manifest_sha256: str
    total_timeout: float
    root: str  # the target root: its journal records the smoke's verdict


class ProvisionRequest(TypedDict):
    root: str
    dirs: list[str]
    config_file: str
    config_text: str
    lock_root: str
    create_lock_root: bool
    id: str


class Created(TypedDict, total=False):
    type: str
    path: str
    sha256: str


class UnprovisionRequest(TypedDict):
    created: list[Created]
    lock_root: str
    id: str


# ----------------------------------------------------------------------------- answers


class FactsResult(TypedDict):
    host: str
    python: str
    root: str
    root_exists: bool
    parent: str
    parent_listing_sha256: str  # 'absent' when there is no such folder
    target: str
    target_kind: str
    lock: dict[str, Any] | None
    interpreter: dict[str, Any]
    deployed_env: dict[str, Any]


class ShippedResult(TypedDict):
    """A deploy with ``ship_only`` (the benchmark's): the bundle arrived and was checked."""

    shipped: bool
    bundle_sha256: str


class _DeployResultBase(TypedDict):
    target: str
    files: int
    tree_sha256: str
    manifest: dict[str, str]


class DeployResult(_DeployResultBase, total=False):
    shipped: bool
    bundle_sha256: str
    manifest_sha256: str
    parent: str
    parent_existed: bool
    parent_listing_sha256_before: str
    cleaned: list[str]
    env_sha256: str
    env_packages: int
    names_sha256: str
    root_created: list[str]  # the root and the folders above it that create_root made, top down


class _RollbackResultBase(TypedDict):
    removed: str
    pointer: str
    current: str
    removed_parent: bool
    finished_interrupted: bool
    manifest_drift: bool
    discarded: list[str]
    parent_listing_sha256_before: str
    parent_listing_sha256_after: str
    parent_restored: bool
    added_check: str  # "names": the walk matched the deployed names; "manifest": checked against the manifests
    pointer_restored: bool  # `current` is back where it was before the promotion (or was never moved)
    already_removed: bool  # the release was gone already (a killed rollback's rerun, or a hand)


class RollbackResult(_RollbackResultBase, total=False):
    removed_root: list[str]  # the root create_root made, and the folders above it it made, deepest first
    back_to: str  # `current` pointed at the release removed and was pointed back at this one (relative to the root)
    service: ServiceResult  # the restart and health checks run there (with `[service]` / `[[health.check]]`)


class VerifyResult(TypedDict):
    target: str
    added: list[str]
    removed: list[str]
    changed: list[str]
    special: list[str]
    manifest_intact: bool
    deploy_manifest_intact: bool
    files: int
    clean: bool


class CheckResult(TypedDict):
    name: str
    kind: str
    status: str  # passed | failed | timeout | refused | error
    duration: float
    detail: str
    data: dict[str, Any]


class SmokeResult(TypedDict):
    target: str
    results: list[CheckResult]
    verify: VerifyResult


class RestartResult(TypedDict):
    argv: list[str]
    status: str  # ok | failed | timeout | error
    exit: int | None
    seconds: float
    output: str  # the tail of what it printed


class HealthResult(TypedDict):
    name: str
    kind: str
    status: str  # passed | failed
    attempts: int
    seconds: float
    detail: str  # the last attempt's answer


class ServiceResult(TypedDict):
    release: str  # relative to the root
    restart: RestartResult | None  # None: no restart configured
    health: list[HealthResult]  # the checks that ran (none after a failed restart)
    ok: bool


class _PromoteResultBase(TypedDict):
    current: str | None  # the release `current` points at, relative to the root (None: no pointer, after a revert to nothing)
    previous: str | None  # what it pointed at before this deploy's promotion (None: nothing)
    unchanged: bool  # it already pointed there: nothing was changed


class PromoteResult(_PromoteResultBase, total=False):
    service: ServiceResult  # the restart and health checks of the new release
    reverted: bool  # they failed: `current` went back to ``previous``
    revert_service: ServiceResult | None  # the restart and health checks of the release gone back to


class _RepointResultBase(TypedDict):
    current: str  # the pointer as it is now (pointer_state)


class RepointResult(_RepointResultBase, total=False):
    unchanged: bool
    service: ServiceResult  # the restart and health checks of the release pointed back at


class TidyResult(TypedDict):
    cleaned: list[str]


class ReleaseInfo(TypedDict):
    """One release under a root, as ``status`` finds it (its DEPLOY-MANIFEST and the journal)."""

    path: str
    version: str | None
    head: str | None
    release_stamp: str | None
    deploy_id: str | None
    strategy: str | None
    promoted: bool  # ``current`` points at it
    signed_by: str
    journal: str  # its last event in the host's journal ('' when none)
    order: int | None  # where the journal's ``deployed`` entry of it stands (None: not journalled)
    smoke: str
    health: str


class StatusResult(TypedDict):
    root: str
    releases: list[ReleaseInfo]
    lock: dict[str, Any] | None
    entries: list[str]  # the root's other entries, by name
    leftovers: list[str]
    current: str
    previous: str | None
    journal_skipped_lines: int


class ProvisionResult(TypedDict):
    created: list[Created]
    existed: list[str]


class UnprovisionResult(TypedDict):
    removed: list[str]


class InspectResult(TypedDict):
    target: str
    kind: str
    running: bool
    manifest: dict[str, str] | None
    manifest_sha256: str


class Answer(TypedDict, total=False):
    """The one JSON line the agent prints."""

    ok: bool
    result: dict[str, Any]
    exit_code: int
    message: str
    hint: str
    traceback: str
    kind: str  # a failure the controller tells apart ("disk-full"), named where it was raised
