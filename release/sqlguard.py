"""Layer 1 of the read-only proof: parse every statement with PostgreSQL's own parser.

A statement is allowed only if it is a single plain SELECT: no locking clause, no INTO,
no data-modifying CTE (at any depth), and no call anywhere in its tree to a forbidden
function or to a known writer, however the name is quoted or schema-qualified.
"""

from __future__ import annotations

from collections.abc import Iterable

import pglast
from pglast import ast
from pglast.visitors import Visitor

from .errors import RefusedError

# functions that write or have side effects even inside a SELECT
WRITER_NAMES = {
    "nextval",
    "setval",
    "set_config",
    "pg_notify",
    "txid_current",
    "pg_current_xact_id",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_stat_reset",
    "pg_file_write",
    "pg_read_binary_file",
    "pg_read_file",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "table_to_xml",
    "xpath_table",
}
WRITER_PREFIXES = ("lo_", "dblink", "pg_advisory", "pg_try_advisory", "pg_replication_", "pg_logical_", "pg_create_", "pg_drop_")
_MODIFYING = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


class _Walker(Visitor):
    def __init__(self, forbidden: set[str]) -> None:
        super().__init__()
        self.forbidden = forbidden
        self.problems: list[str] = []

    def visit(self, ancestors: object, node: object) -> None:
        if isinstance(node, _MODIFYING):
            self.problems.append(f"data-modifying statement ({type(node).__name__}) inside the query")
        elif isinstance(node, ast.SelectStmt):
            if node.intoClause is not None:
                self.problems.append("SELECT INTO creates a table")
            if node.lockingClause:
                self.problems.append("locking clause (FOR UPDATE/SHARE) takes row locks")
        elif isinstance(node, ast.FuncCall):
            parts = [getattr(n, "sval", "") for n in node.funcname or ()]
            name = parts[-1].lower() if parts else ""
            qualified = ".".join(parts)
            if name in self.forbidden:
                self.problems.append(f"call to forbidden function {qualified}")
            elif name in WRITER_NAMES or name.startswith(WRITER_PREFIXES):
                self.problems.append(f"call to writing function {qualified}")


def check(sql: str, forbid_functions: Iterable[str] = ()) -> None:
    """Raise RefusedError (exit 4) unless ``sql`` is one plain, side-effect-free SELECT."""
    forbidden = {f.split(".")[-1].strip('"').lower() for f in forbid_functions}
    try:
        stmts = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        raise RefusedError(f"SQL does not parse, so it is not sent: {exc}", hint="fix the query in smoke.check.queries") from None
    if len(stmts) != 1:
        raise RefusedError(f"forbidden SQL: {len(stmts)} statements in one string (only one SELECT is allowed): {sql!r}", hint="one statement per entry")
    stmt = stmts[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        raise RefusedError(f"forbidden SQL: {type(stmt).__name__} is not a SELECT: {sql!r}", hint="a smoke never writes")
    walker = _Walker(forbidden)
    walker(stmts)
    if walker.problems:
        raise RefusedError(f"forbidden SQL: {'; '.join(sorted(set(walker.problems)))}: {sql!r}", hint="a smoke never writes; remove it from the queries")
