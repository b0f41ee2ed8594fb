"""What travels to a target with every agent call: the boot program and the agent's code.

The boot program is ``release/remote/boot.py``, a real module (linted, typed, never imported):
its source is read here, its constants filled in, and it is minified (docstrings,
comments, annotations, type-checking blocks and asserts removed, one space per indent)
into the program on the command line. The agent's code rides on stdin ahead of the
call's data: this controller's compiled modules (zlib'd marshal, used when the target's
bytecode format is the controller's), then every module's source (zlib'd JSON, compiled
there otherwise, or for a module the code lacks). (The sources once rode in the program
itself: 70 KB of argument that the remote shell and Python parsed on every call.)
"""

from __future__ import annotations

import ast
import functools
import json
import re
import threading
import zlib
from pathlib import Path

from ..errors import ReleaseError

AGENT_PACKAGE = "release_agent"  # the agent package's name on the target (it never touches its disk)
BOOT = Path(__file__).parent / "boot.py"

# the answer of a target Python older than the agent supports, written by the boot program
# before anything else (``%s``: its version); any Python parses the line that writes it
TOO_OLD = (
    json.dumps(
        {
            "ok": False,
            "exit_code": 3,
            "message": "the target Python %s is older than 3.8, the oldest the agent runs on (nothing was done)",
            "hint": "set target.python to Python 3.8 or newer",
        }
    )
    + "\n"
)


def package_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).with_suffix("").as_posix(): p for p in sorted(folder.rglob("*.py"))}


def package_folders() -> dict[str, Path]:
    """What travels to the target: the agent package, and pypa ``installer`` (used to build a
    release's environment; carried here so that deploying never runs code from the bundle)."""
    import importlib.util

    spec = importlib.util.find_spec("installer")  # located, not imported: the controller never runs it
    if spec is None or not spec.submodule_search_locations:
        from ..errors import BlockedError

        raise BlockedError("pypa installer is not installed", hint="pip install installer (a dependency of this tool)")
    return {AGENT_PACKAGE: Path(__file__).parents[1] / "agent", "installer": Path(next(iter(spec.submodule_search_locations)))}


def agent_sources() -> dict[str, dict[str, str]]:
    """{package: {module path: source}} of everything that travels to the target."""
    return {top: {k: p.read_text() for k, p in package_files(folder).items()} for top, folder in package_folders().items()}


@functools.cache
def compiled() -> bytes:
    """The agent package's code as this interpreter compiled it: read from its own bytecode
    cache (``__pycache__``, checked against the source as imports check it), so a run costs
    no compiling; file names as the source fallback names them. pypa installer is left to
    the fallback: only a deploy that builds an environment runs it."""
    import importlib.machinery
    import marshal
    import types

    def renamed(code: types.CodeType, name: str) -> types.CodeType:
        consts = tuple(renamed(c, name) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_filename=name, co_consts=consts)

    codes = {}
    for k, path in package_files(package_folders()[AGENT_PACKAGE]).items():
        name = f"{AGENT_PACKAGE}.{k.replace('/', '.')}".removesuffix(".__init__")
        code = importlib.machinery.SourceFileLoader(name, str(path)).get_code(name)
        if code is None:
            raise ReleaseError(f"the agent module {path} has no code", hint="reinstall the tool")
        codes[f"{AGENT_PACKAGE}/{k}"] = renamed(code, f"<{AGENT_PACKAGE}/{k}.py>")
    return zlib.compress(marshal.dumps(codes), 1)


@functools.cache
def sources() -> bytes:
    """Every module's source, for a target Python of another bytecode format."""
    return zlib.compress(json.dumps(agent_sources(), sort_keys=True).encode(), 6)


class _Minify(ast.NodeTransformer):
    """What the program on the command line needs of ``boot.py``: no docstring, comment,
    annotation, type-checking block or assert."""

    @staticmethod
    def _body(body: list[ast.stmt]) -> list[ast.stmt]:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body = body[1:]
        return body or [ast.Pass()]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._body(node.body)
        return self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.body = self._body(node.body)
        node.returns = None
        args = node.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None:
                a.annotation = None
        return self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = self._body(node.body)
        return self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno) if node.value is not None else None

    def visit_Assert(self, node: ast.Assert) -> None:
        return None

    def visit_If(self, node: ast.If) -> ast.AST | None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return None  # imports for the type checker only
        return self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST | None:
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "TYPE_CHECKING":
            return None
        return self.generic_visit(node)


def boot_program(fields: dict[str, object]) -> str:
    """``boot.py`` with its constants set to ``fields`` (name -> value), minified."""
    tree = ast.parse(BOOT.read_text())
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id in fields:
                node.value = ast.parse(repr(fields[target.id]), mode="eval").body  # a literal: str, int or a dict of lists
    tree = ast.fix_missing_locations(_Minify().visit(tree))
    text = ast.unparse(tree)
    text = re.sub(r"^(?:    )+", lambda m: " " * (len(m.group(0)) // 4), text, flags=re.MULTILINE)
    return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


@functools.cache
def program(code_size: int, source_size: int, magic: bytes = b"") -> str:
    """The boot program, told how many bytes of compiled code, then of sources, come first
    on stdin (``agent_program``), and which bytecode format the code is for."""
    import importlib.util

    fields: dict[str, object] = {
        "INDEX": {top: list(package_files(folder)) for top, folder in package_folders().items()},
        "CODE_SIZE": code_size,
        "SOURCE_SIZE": source_size,
        "MAGIC": (magic or importlib.util.MAGIC_NUMBER).hex(),
        "PACKAGE": AGENT_PACKAGE,
        "TOO_OLD": TOO_OLD,
    }
    return boot_program(fields)


_BUILDING = threading.Lock()


def agent_program() -> tuple[str, bytes]:
    """(the program, what it reads first on stdin: the compiled code, then the sources):
    built once per run (about 20 ms), by the first of the fleet's threads to need it (the
    others wait instead of building it again)."""
    with _BUILDING:
        return _built()


@functools.cache
def _built() -> tuple[str, bytes]:
    code, src = compiled(), sources()
    return program(len(code), len(src)), code + src
