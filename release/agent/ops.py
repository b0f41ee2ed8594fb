"""The explicit op registry and the entry point: ``<op> <request-json>`` -> one JSON answer line."""

from __future__ import annotations

import sys

from . import jsonio
from .protocol import AgentError, _answer

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Op:
    """One op the agent may be asked to run: where it lives, and what it does to a target.

    ``changes``: it changes the target, so a lost answer is an unknown outcome (reconciled
    before anything else acts) and the op ignores a hangup (a lost connection must not cut
    it short: what it started, it finishes or undoes). ``forkable``: on this machine, with
    the controller's own interpreter, it may run in a forked child of the CLI
    (``release/remote/inprocess.py``): it reads no stdin and starts no process of the release.
    """

    __slots__ = ("answer", "changes", "forkable", "function", "module")

    def __init__(self, module: str, function: str, answer: str, *, changes: bool = False, forkable: bool = False) -> None:
        self.module = module
        self.function = function
        self.answer = answer  # the name of its answer's TypedDict in messages.py: the controller holds every answer to it
        self.changes = changes
        self.forkable = forkable


# The one op table: every other list of ops (the hangup-proof ones, the controller's
# changing ones, the forkable ones, the client's methods) is derived from it or tested
# against it. Modules are imported when their op runs, so a call compiles only what it uses.
OPS: dict[str, Op] = {
    "facts": Op("deploy_ops", "op_facts", "FactsResult"),
    "deploy": Op("deploy_ops", "op_deploy", "DeployResult", changes=True, forkable=True),
    "rollback": Op("rollback_ops", "op_rollback", "RollbackResult", changes=True, forkable=True),
    "promote": Op("pointer_ops", "op_promote", "PromoteResult", changes=True, forkable=True),
    "repoint": Op("pointer_ops", "op_repoint", "RepointResult", changes=True, forkable=True),
    "status": Op("status_ops", "op_status", "StatusResult", forkable=True),
    "inspect": Op("status_ops", "op_inspect", "InspectResult", forkable=True),
    "tidy": Op("status_ops", "op_tidy", "TidyResult", forkable=True),  # removes only what killed runs left: a lost answer changes nothing to know
    "verify": Op("status_ops", "op_verify", "VerifyResult", forkable=True),
    "smoke": Op("smoke_ops", "op_smoke", "SmokeResult"),
    "provision": Op("provision_ops", "op_provision", "ProvisionResult", changes=True),
    "unprovision": Op("provision_ops", "op_unprovision", "UnprovisionResult", changes=True),
}
CHANGING = frozenset(name for name, op in OPS.items() if op.changes)
FORKABLE = frozenset(name for name, op in OPS.items() if op.forkable)


def handler(op: str) -> Callable[[Any], Any] | None:
    """Each op takes its request TypedDict and returns its answer (see messages.py)."""
    entry = OPS.get(op)
    if entry is None:
        return None
    module = __import__(f"{__package__}.{entry.module}", fromlist=[entry.function])  # the submodule itself (no importlib to import)
    fn: Callable[[Any], Any] = getattr(module, entry.function)
    return fn


def main(argv: list[str]) -> int:
    try:
        import _signal as signal  # type: ignore[import-not-found]  # the C module: `signal` imports enum (about 5 ms)
    except ImportError:
        import signal

    if len(argv) > 1 and argv[1] in CHANGING:
        # a lost connection must not cut an op short: what it started, it finishes or undoes
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        op, raw = argv[1], argv[2]
        req = jsonio.loads(raw)
        run = handler(op)
        if run is None:
            raise AgentError(2, f"unknown agent op {op!r}")
        result = run(req)
        _answer({"ok": True, "result": result})
        return 0
    except AgentError as exc:
        _answer({"ok": False, "exit_code": exc.code, "message": exc.message, "hint": exc.hint, "kind": exc.kind})
        return exc.code
    except OSError as exc:  # a state of the target no op foresaw: named, with its way out, never a bare traceback
        import traceback

        from .protocol import _io_error

        err = _io_error(exc, f"{argv[1] if len(argv) > 1 else 'agent'}: unexpected state of {exc.filename or 'the target'}")
        _answer({"ok": False, "exit_code": err.code, "message": err.message, "hint": err.hint, "kind": err.kind, "traceback": traceback.format_exc()[-4000:]})
        return err.code
    except Exception as exc:
        import traceback

        _answer({"ok": False, "exit_code": 1, "message": f"{type(exc).__name__}: {exc}", "hint": "", "traceback": traceback.format_exc()[-4000:]})
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
