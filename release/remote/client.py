"""The controller's one client of the agent: one typed method per op.

The shape of pypa pyproject-hooks' hook caller: one generic call (``Transport.agent``) and,
over it, one method per op with the op's request and answer types (``agent/messages.py``),
so no stage names an op by a string or reads an untyped answer, and mypy checks both ends.
Which ops exist, and what each does to a target, is the agent's op table
(``agent/ops.py``): a test holds this class to it, method for method.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO, cast

if TYPE_CHECKING:
    from ..agent.messages import (
        DeployRequest,
        DeployResult,
        FactsRequest,
        InspectRequest,
        InspectResult,
        PromoteRequest,
        PromoteResult,
        ProvisionRequest,
        RepointRequest,
        RepointResult,
        RollbackRequest,
        RollbackResult,
        SmokeRequest,
        SmokeResult,
        StatusRequest,
        StatusResult,
        TidyRequest,
        TidyResult,
        UnprovisionRequest,
        VerifyRequest,
        VerifyResult,
    )
    from ..config import Config
    from ..errors import ReleaseError
    from .transport import Transport


# the ops that take the target's lock (``--lock-wait`` applies to them)
LOCKING = frozenset({"deploy", "rollback", "promote", "repoint", "tidy", "provision", "unprovision"})


# the ops whose outcome the target's journal records
JOURNALED = frozenset({"deploy", "rollback", "promote", "repoint", "smoke"})


def who() -> dict[str, str]:
    """The operator (this user) and the controller (this machine) a journal entry names."""
    import getpass

    try:
        operator = getpass.getuser()
    except (KeyError, OSError):
        operator = str(os.getuid())
    # the host name as socket.gethostname() gives it (uname's nodename), without importing socket
    return {"operator": operator, "controller": os.uname().nodename}


def _malformed(op: str, label: str, why: str) -> ReleaseError:
    from ..agent.ops import CHANGING
    from ..errors import OutcomeUnknownError, ReleaseError

    what = f"its answer is not the agent's ({why[:300]})"
    if op in CHANGING:  # what the host did is not known: the next run reconciles it with the host first
        return OutcomeUnknownError(
            f"{op} on {label}: outcome unknown: {what}",
            hint="inspect that host (its interpreter, target.python); the next deploy or rollback reconciles it with the target first",
        )
    return ReleaseError(f"target agent ({op}) on {label}: {what}", hint="inspect that host: its interpreter (target.python) does not run this tool's agent")


class Agent:
    """The agent on one target, reached through ``transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def label(self) -> str:
        return self.transport.label

    def _call(self, op: str, request: Any, *, stdin: BinaryIO | None = None, timeout: float | None = None) -> Any:
        if op in JOURNALED:  # who asked, for the host's journal
            request = {**request, "journal": who()}
        wait = getattr(self.transport, "lock_wait", 0.0)
        if wait and op in LOCKING:  # --lock-wait: the op waits for a live holder of the target's lock
            request = {**request, "lock_wait": wait}
            timeout = (float(getattr(self.transport, "deadline", 3600.0)) if timeout is None else timeout) + wait
        result = self.transport.agent(op, request, stdin=stdin, timeout=timeout)
        from .answers import answer_problem

        why = answer_problem(op, request, result)
        if why:  # a host that lies in its answer: never read as if it had said what the stage expects
            raise _malformed(op, self.label, why)
        return result

    def facts(self, req: FactsRequest) -> dict[str, Any]:
        """What a plan or a bundle needs to know of the target (root, parent, target folder, lock, interpreter)."""
        return cast("dict[str, Any]", self._call("facts", req))

    def deploy(self, req: DeployRequest, *, stdin: BinaryIO | None = None) -> DeployResult:
        return cast("DeployResult", self._call("deploy", req, stdin=stdin))

    def rollback(self, req: RollbackRequest) -> RollbackResult:
        return cast("RollbackResult", self._call("rollback", req))

    def promote(self, req: PromoteRequest) -> PromoteResult:
        return cast("PromoteResult", self._call("promote", req))

    def repoint(self, req: RepointRequest) -> RepointResult:
        return cast("RepointResult", self._call("repoint", req))

    def status(self, req: StatusRequest) -> StatusResult:
        return cast("StatusResult", self._call("status", req))

    def verify(self, req: VerifyRequest) -> VerifyResult:
        return cast("VerifyResult", self._call("verify", req))

    def inspect(self, req: InspectRequest) -> InspectResult:
        return cast("InspectResult", self._call("inspect", req))

    def tidy(self, req: TidyRequest) -> TidyResult:
        return cast("TidyResult", self._call("tidy", req))

    def smoke(self, req: SmokeRequest, *, timeout: float | None = None) -> SmokeResult:
        return cast("SmokeResult", self._call("smoke", req, timeout=timeout))

    def provision(self, req: ProvisionRequest) -> dict[str, Any]:
        return cast("dict[str, Any]", self._call("provision", req))

    def unprovision(self, req: UnprovisionRequest) -> dict[str, Any]:
        return cast("dict[str, Any]", self._call("unprovision", req))


def for_config(cfg: Config) -> Agent:
    """The agent of ``cfg``'s target."""
    from . import transport

    return Agent(transport.for_config(cfg))
