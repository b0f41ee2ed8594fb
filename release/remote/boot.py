"""The program that runs first on every target: ``python -I -S -c <this program>``.

A real module (linted and typed here), never imported: ``transport`` reads its source, fills
the constants below, and minifies it (docstrings, comments and annotations removed, one
space per indent) into the boot program of a run, about 1.5 KB. It must compile on any
Python 3 (3.6 included: an old target gets the too-old answer, not a syntax error), so it
uses nothing newer than 3.6.

What it does, in order: answer "too old" on a Python before 3.8 and stop; read the agent's
code from stdin (``CODE_SIZE`` bytes: this controller's compiled modules, zlib'd marshal
of {"package/path": code}, used when the target's bytecode format is ``MAGIC``; then
``SOURCE_SIZE`` bytes: their sources, zlib'd JSON, compiled there only otherwise); serve
the packages of ``INDEX`` from memory through a ``sys.meta_path`` finder; run the op's
``main`` and leave with ``os._exit`` once the answer is flushed (the interpreter's teardown
of every module, 4 - 6 ms, has nothing left to do for anyone).

Debugging on a target: with ``RELEASE_AGENT_DUMP=<folder>`` in the environment of the
agent's interpreter (``env RELEASE_AGENT_DUMP=/tmp/agent python3`` as ``target.python``),
the agent's sources as received are written under that folder first, as files of their
package, so the very code that ran can be read and run there by hand.
"""

TYPE_CHECKING = False  # the minified program drops this block: no typing import on a target
if TYPE_CHECKING:
    from types import CodeType

# the constants a run fills in (see payload.program); the defaults keep this module valid
INDEX: dict[str, list[str]] = {}  # {package: [module paths]}
CODE_SIZE = 0
SOURCE_SIZE = 0
MAGIC = ""  # hex of the bytecode magic number the compiled code is for
PACKAGE = "release_agent"
TOO_OLD = ""  # the JSON answer of a target Python older than 3.8 ("%s": its version)


def boot() -> None:
    import sys
    import zlib

    if sys.version_info < (3, 8):  # noqa: UP036 (an old target gets its answer, not a crash)
        sys.stdout.write(TOO_OLD % sys.version.split()[0])
        sys.stdout.flush()
        sys.exit(3)
    try:
        from _frozen_importlib import ModuleSpec
    except ImportError:
        from importlib.machinery import ModuleSpec
    import os

    got = bytearray()
    while len(got) < CODE_SIZE + SOURCE_SIZE:
        chunk = os.read(0, CODE_SIZE + SOURCE_SIZE - len(got))
        if not chunk:
            sys.exit("release agent: its code was cut short on stdin")
        got += chunk
    codes: dict[str, CodeType] = {}
    if getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None) == bytes.fromhex(MAGIC):
        import marshal

        try:
            codes = marshal.loads(zlib.decompress(got[:CODE_SIZE]))  # noqa: S302 (the controller's own code, for this bytecode format)
        except Exception:
            sys.exit("release agent: its code arrived damaged on stdin")
    packed = bytes(got[CODE_SIZE:])
    sources: list[dict[str, dict[str, str]]] = []

    def source() -> dict[str, dict[str, str]]:
        if not sources:
            import json

            try:
                sources.append(json.loads(zlib.decompress(packed)))
            except Exception:
                sys.exit("release agent: its code arrived damaged on stdin")
        return sources[0]

    dump = os.environ.get("RELEASE_AGENT_DUMP")
    if dump:
        for top, modules in source().items():
            for rel, text in modules.items():
                path = os.path.join(dump, top, rel + ".py")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)

    class Finder:
        def key(self, name: str) -> tuple[str, str] | None:
            top, _, rest = name.partition(".")
            modules = INDEX.get(top)
            if modules is None:
                return None
            rel = rest.replace(".", "/") or "__init__"
            if rel in modules:
                return top, rel
            if rel + "/__init__" in modules:
                return top, rel + "/__init__"
            return None

        def find_spec(self, name: str, path: object = None, target: object = None) -> object:
            found = self.key(name)
            if found:
                return ModuleSpec(name, self, is_package=found[1].endswith("__init__"))  # type: ignore[arg-type]
            return None

        def create_module(self, spec: object) -> None:
            return None

        def exec_module(self, module: object) -> None:
            found = self.key(module.__name__)  # type: ignore[attr-defined]
            assert found is not None
            top, rel = found
            code = codes.get(top + "/" + rel)
            if code is None:
                code = compile(source()[top][rel], "<" + top + "/" + rel + ".py>", "exec")
            exec(code, module.__dict__)  # noqa: S102 (the agent's own code, as the controller sent it)

    sys.meta_path.insert(0, Finder())  # type: ignore[arg-type]
    main = __import__(PACKAGE + ".ops", fromlist=["main"]).main
    code = main(sys.argv)
    for stream in sys.stdout, sys.stderr:
        try:
            stream.flush()
        except Exception:  # noqa: S110 (a controller that went away: the target's work is done)
            pass
    os._exit(code)


if __name__ == "__main__":
    boot()
