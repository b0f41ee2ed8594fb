"""Outcomes the controller did not see, settled with the target before anything else acts.

A deploy whose answer was lost (connection dropped, agent killed, controller killed) is
recorded ``unknown`` (or stays ``started``). It is never read as "failed": before any
later deploy or rollback on the same target, each such record is compared with what the
target holds. If the release folder exists and its DEPLOY-MANIFEST names the record's
deploy id, the deploy landed: the record becomes ``deployed`` with the facts from the
manifest. If not, and no run of it holds the target's lock, it becomes ``failed``. If
its run is still going, nothing acts (exit 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import RefusedError
from .remote.client import Agent
from .remote.transport import Transport
from .state import State, Status, landed_fields, now_iso

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from .agent.messages import InspectRequest

UNSETTLED = (Status.STARTED.value, Status.UNKNOWN.value)


def _same_target(cfg: Config, record: dict[str, Any]) -> bool:
    return record.get("host") == (cfg.host or "localhost") and record.get("root") == cfg.root


def settle(cfg: Config, state: State, transport: Transport, *, running_ok: bool = True) -> list[dict[str, Any]]:
    """Settle every unsettled record of this target; return the records that changed.

    A deploy whose run still holds the target's lock stays unsettled; with
    ``running_ok=False`` (rollback, which must not pick an older release while a newer
    one may be landing) that is a refusal (exit 4).
    """
    changed: list[dict[str, Any]] = []
    for record in state.open_records():
        if record.get("status") not in UNSETTLED or not _same_target(cfg, record):
            continue
        req: InspectRequest = {"root": record["root"], "target": record["target"], "deploy_id": record["deploy_id"]}
        seen = Agent(transport).inspect(req)
        if seen.get("running"):
            if running_ok:
                continue  # its own lock refuses anything that would collide with it
            raise RefusedError(
                f"target root is locked: deploy {record['deploy_id']} is still running on {record['host']} (held by deploy {record['deploy_id']})",
                hint="wait for it to finish, then rerun",
            )
        manifest = seen.get("manifest") or {}
        if seen.get("kind") == "directory" and manifest.get("deploy_id") == record["deploy_id"]:
            before = record["status"]
            record.update(
                landed_fields({**manifest, "manifest_sha256": seen.get("manifest_sha256", "")}),
                reconciled=now_iso(),
                note=f"outcome was {before}; the target holds the release, so it is deployed",
                rerun_pending=True,  # a rerun of the same deploy completes it instead of deploying again
            )
        else:
            record.update(status=Status.FAILED.value, reconciled=now_iso(), note=f"outcome was {record['status']}; the release is not on the target")
        state.save(record)
        state.audit("reconcile", deploy_id=record["deploy_id"], target=f"{record['host']}:{record['target']}", result=record["status"])
        changed.append(record)
    return changed
