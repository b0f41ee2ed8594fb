"""The explicit op registry and the entry point: ``<op> <request-json>`` -> one JSON answer line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from .protocol import AgentError, _answer
from .provision_ops import op_provision, op_unprovision
from .release_ops import op_deploy, op_facts, op_inspect, op_promote, op_repoint, op_rollback, op_status, op_tidy, op_verify
from .smoke_ops import op_smoke

# each op takes its request TypedDict and returns its answer (see messages.py); JSON in, JSON out
OPS: dict[str, Callable[[Any], Any]] = {
    "facts": op_facts,
    "deploy": op_deploy,
    "rollback": op_rollback,
    "promote": op_promote,
    "status": op_status,
    "inspect": op_inspect,
    "tidy": op_tidy,
    "repoint": op_repoint,
    "verify": op_verify,
    "smoke": op_smoke,
    "provision": op_provision,
    "unprovision": op_unprovision,
}


def main(argv: list[str]) -> int:
    import signal

    if len(argv) > 1 and argv[1] in ("deploy", "rollback", "promote", "provision", "unprovision"):
        # a lost connection must not cut an op short: what it started, it finishes or undoes
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        op, raw = argv[1], argv[2]
        req = json.loads(raw)
        handler = OPS.get(op)
        if handler is None:
            raise AgentError(2, f"unknown agent op {op!r}")
        result = handler(req)
        _answer({"ok": True, "result": result})
        return 0
    except AgentError as exc:
        _answer({"ok": False, "exit_code": exc.code, "message": exc.message, "hint": exc.hint})
        return exc.code
    except Exception as exc:
        import traceback

        _answer({"ok": False, "exit_code": 1, "message": f"{type(exc).__name__}: {exc}", "hint": "", "traceback": traceback.format_exc()[-4000:]})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
