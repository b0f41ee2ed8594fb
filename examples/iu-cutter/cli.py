"""iu-cutter command line: `python cli.py orchestrate status|inspect`."""

from __future__ import annotations

import argparse
import json
import sys

from cutter_agent import orchestrator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cli.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("orchestrate")
    o.add_argument("action", choices=["status", "inspect"])
    args = p.parse_args(argv)
    info = orchestrator.status()
    if args.action == "status":
        print(f"milestone {info['milestone']}, execution_enabled={info['execution_enabled']}")
    else:
        print(json.dumps(info, sort_keys=True))
        print(f"execution_enabled={info['execution_enabled']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
