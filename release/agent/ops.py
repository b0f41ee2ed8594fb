"""The explicit op registry and the entry point: ``<op> <request-json>`` -> one JSON answer line."""

from __future__ import annotations

import sys

from . import jsonio
from .protocol import AgentError, _answer

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


# the explicit op registry: op -> (module, function). Modules are imported when their op
# runs, so a call compiles only what it uses (the agent travels as source).
OPS: dict[str, tuple[str, str]] = {
    "facts": ("release_ops", "op_facts"),
    "deploy": ("release_ops", "op_deploy"),
    "rollback": ("release_ops", "op_rollback"),
    "promote": ("release_ops", "op_promote"),
    "status": ("release_ops", "op_status"),
    "inspect": ("release_ops", "op_inspect"),
    "tidy": ("release_ops", "op_tidy"),
    "repoint": ("release_ops", "op_repoint"),
    "verify": ("release_ops", "op_verify"),
    "smoke": ("smoke_ops", "op_smoke"),
    "provision": ("provision_ops", "op_provision"),
    "unprovision": ("provision_ops", "op_unprovision"),
}


def handler(op: str) -> Callable[[Any], Any] | None:
    """Each op takes its request TypedDict and returns its answer (see messages.py)."""
    entry = OPS.get(op)
    if entry is None:
        return None
    module = __import__(f"{__package__}.{entry[0]}", fromlist=[entry[1]])  # the submodule itself (no importlib to import)
    fn: Callable[[Any], Any] = getattr(module, entry[1])
    return fn


def main(argv: list[str]) -> int:
    try:
        import _signal as signal  # type: ignore[import-not-found]  # the C module: `signal` imports enum (about 5 ms)
    except ImportError:
        import signal

    if len(argv) > 1 and argv[1] in ("deploy", "rollback", "promote", "provision", "unprovision"):
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
        _answer({"ok": False, "exit_code": exc.code, "message": exc.message, "hint": exc.hint})
        return exc.code
    except OSError as exc:  # a state of the target no op foresaw: named, with its way out, never a bare traceback
        import traceback

        from .protocol import _io_error

        err = _io_error(exc, f"{argv[1] if len(argv) > 1 else 'agent'}: unexpected state of {exc.filename or 'the target'}")
        _answer({"ok": False, "exit_code": err.code, "message": err.message, "hint": err.hint, "traceback": traceback.format_exc()[-4000:]})
        return err.code
    except Exception as exc:
        import traceback

        _answer({"ok": False, "exit_code": 1, "message": f"{type(exc).__name__}: {exc}", "hint": "", "traceback": traceback.format_exc()[-4000:]})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
