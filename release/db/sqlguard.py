"""Layer 1 of the read-only proof: PostgreSQL's own parser, then the server's own catalog.

Static (``check``, before anything connects): a statement is allowed only if it is a
single plain SELECT: no locking clause, no INTO, no data-modifying CTE (at any depth),
and no call, anywhere in its tree, to a forbidden function, to a known writer, or to a
function that runs SQL text (``ts_stat``, ``query_to_xml``, ...: the text would run
unchecked), whether called as ``f(x)`` or column-style as ``x.f``.

Catalog (``check_catalog``, inside the read-only transaction, before the statement is
sent): a denylist cannot be complete, so every function the statement can reach is
looked up in ``pg_proc``, every overload of its name: it must be a built-in
(``pg_catalog``) function that is not volatile, or listed in the check's
``allow_functions`` (reviewed by the operator) and not volatile. The same holds for the
functions behind every operator used, for column-style calls (``t.f`` is ``f(t)`` when
a one-argument function ``f`` exists), and, recursively, for the definition of every
view the statement reads and the expressions of every row-level security policy on a
table it reads. A cast may only target a built-in type or an enum: a domain's CHECK
expressions, a user type's input function and a user cast function all run unseen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast
from pglast.visitors import Visitor

from ..errors import RefusedError

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
}
# functions that run SQL (or a query) given as text or by name: the text is never checked
SQL_TEXT_NAMES = {
    "ts_stat",
    "ts_rewrite",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "xpath_table",
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
}
WRITER_PREFIXES = ("lo_", "dblink", "pg_advisory", "pg_try_advisory", "pg_replication_", "pg_logical_", "pg_create_", "pg_drop_")
_MODIFYING = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
MAX_VIEW_DEPTH = 8


@dataclass
class Refs:
    """What a statement can call or read, for the catalog check."""

    functions: set[tuple[str, str]] = field(default_factory=set)  # (schema or "", name)
    column_calls: set[str] = field(default_factory=set)  # x.f: maybe f(x)
    operators: set[str] = field(default_factory=set)
    relations: set[tuple[str, str]] = field(default_factory=set)
    types: set[tuple[str, str]] = field(default_factory=set)  # cast targets: (schema or "", name)


def _names(nodes: Iterable[Any] | None) -> list[str]:
    return [str(getattr(n, "sval", "")) for n in nodes or ()]


class _Walker(Visitor):
    def __init__(self, forbidden: set[str]) -> None:
        super().__init__()
        self.forbidden = forbidden
        self.problems: list[str] = []
        self.refs = Refs()

    def _name_problem(self, name: str, shown: str, how: str) -> None:
        if name in self.forbidden:
            self.problems.append(f"{how} forbidden function {shown}")
        elif name in SQL_TEXT_NAMES:
            self.problems.append(f"{how} {shown}, which runs SQL given as text")
        elif name in WRITER_NAMES or name.startswith(WRITER_PREFIXES):
            self.problems.append(f"{how} writing function {shown}")

    def visit(self, ancestors: object, node: object) -> None:
        if isinstance(node, _MODIFYING):
            self.problems.append(f"data-modifying statement ({type(node).__name__}) inside the query")
        elif isinstance(node, ast.SelectStmt):
            if node.intoClause is not None:
                self.problems.append("SELECT INTO creates a table")
            if node.lockingClause:
                self.problems.append("locking clause (FOR UPDATE/SHARE) takes row locks")
        elif isinstance(node, ast.FuncCall):
            parts = _names(node.funcname)
            name = parts[-1].lower() if parts else ""
            self._name_problem(name, ".".join(parts), "call to")
            self.refs.functions.add((parts[-2] if len(parts) > 1 else "", parts[-1] if parts else ""))
        elif isinstance(node, ast.ColumnRef):
            parts = _names(f for f in node.fields or () if isinstance(f, ast.String))
            if len(parts) >= 2 and parts[-1]:
                self._name_problem(parts[-1].lower(), ".".join(parts), "column-style call to")
                self.refs.column_calls.add(parts[-1])
        elif isinstance(node, ast.A_Expr):
            ops = _names(node.name)
            if ops:
                self.refs.operators.add(ops[-1])
        elif isinstance(node, ast.SubLink):  # x OP ANY/ALL (subquery), x IN (subquery): an operator no A_Expr names
            ops = _names(node.operName)
            self.refs.operators.add(ops[-1] if ops else "=")
        elif isinstance(node, ast.CaseExpr) and node.arg is not None:  # CASE x WHEN v: x = v
            self.refs.operators.add("=")
        elif isinstance(node, ast.A_Indirection):  # (i).fn: a column-style call through any expression
            for part in node.indirection or ():
                if isinstance(part, ast.String) and part.sval:
                    self._name_problem(part.sval.lower(), f"(...).{part.sval}", "column-style call to")
                    self.refs.column_calls.add(part.sval)
        elif isinstance(node, ast.RangeVar):
            self.refs.relations.add((node.schemaname or "", node.relname or ""))
        elif isinstance(node, ast.TypeCast) and node.typeName is not None:
            parts = _names(node.typeName.names)
            if parts:
                self.refs.types.add((parts[-2] if len(parts) > 1 else "", parts[-1]))


MAX_SQL = 1 << 20  # bytes of one statement (a query of the config, or a view or policy body from the database)
MAX_NESTING = 4000  # the deepest parse tree a statement may give (pglast's tree builder crashed the process past ~20,000)
_NOT_OPERATORS = {"ASCII_40", "ASCII_41", "ASCII_44", "ASCII_46", "ASCII_59", "ASCII_91", "ASCII_93", "ASCII_58"}  # ( ) , . ; [ ] :


def _bounded(sql: str) -> None:
    """Refuse (exit 4) a statement whose parse tree could be deeper than ``MAX_NESTING``,
    judged from PostgreSQL's own scanner (flat, in C, strings and comments skipped): its
    deepest parenthesis plus every operator (each may nest one level: ``1+1+...+1``)."""
    if len(sql.encode("utf-8", "surrogateescape")) > MAX_SQL:
        raise RefusedError(f"SQL longer than {MAX_SQL} bytes is not sent", hint="shorten the query")
    try:
        tokens = pglast.parser.scan(sql)
    except pglast.parser.ParseError as exc:
        raise RefusedError(f"SQL does not parse, so it is not sent: {exc}", hint="fix the query in smoke.check.queries") from None
    depth = deepest = operators = 0
    for t in tokens:
        if t.name == "ASCII_40":
            depth += 1
            deepest = max(deepest, depth)
        elif t.name == "ASCII_41":
            depth -= 1
        elif (t.name.startswith("ASCII_") and t.name not in _NOT_OPERATORS) or t.name in ("Op", "AND", "OR", "NOT"):
            operators += 1
    if deepest + operators > MAX_NESTING:
        raise RefusedError(
            f"SQL nested too deeply to be checked ({deepest} parentheses deep, {operators} operators; limit {MAX_NESTING})",
            hint="split the query; nothing was sent",
        )


def check(sql: str, forbid_functions: Iterable[str] = ()) -> Refs:
    """Raise RefusedError (exit 4) unless ``sql`` is one plain SELECT free of known side effects;
    return what it references, for :func:`check_catalog`."""
    forbidden = {f.split(".")[-1].strip('"').lower() for f in forbid_functions}
    _bounded(sql)
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
    return walker.refs


FUNCTIONS_SQL = """
select p.oid::regprocedure::text, n.nspname, p.provolatile, p.prokind, p.oid < 16384
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where p.proname = %(name)s and (%(schema)s = '' or n.nspname = %(schema)s)
   and (%(nargs)s < 0 or p.pronargs = %(nargs)s)
"""
OPERATORS_SQL = """
select o.oid::regoperator::text, p.oid::regprocedure::text, n.nspname, p.provolatile, p.prokind, p.oid < 16384
  from pg_operator o join pg_proc p on p.oid = o.oprcode join pg_namespace n on n.oid = p.pronamespace
 where o.oprname = %(name)s
"""
RELATION_SQL = """
select c.relkind, pg_get_viewdef(c.oid)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relname = %(name)s and (%(schema)s = '' or n.nspname = %(schema)s)
   and (%(schema)s <> '' or pg_table_is_visible(c.oid))
"""


TYPES_SQL = """
select t.oid::regtype::text, t.typtype, t.oid < 16384, t.oid
  from pg_type t join pg_namespace n on n.oid = t.typnamespace
 where t.typname = %(name)s and (%(schema)s = '' or n.nspname = %(schema)s)
   and (%(schema)s <> '' or pg_type_is_visible(t.oid))
"""
COLUMN_TYPES_SQL = """
select distinct a.atttypid
  from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
 where c.relname = %(name)s and (%(schema)s = '' or n.nspname = %(schema)s)
   and (%(schema)s <> '' or pg_table_is_visible(c.oid)) and a.attnum > 0 and not a.attisdropped
"""
# a cast runs its function where nothing names it: an implicit or assignment cast of a
# column's value (a function's argument), or an explicit cast whose target type passed but
# whose function is user code: into a user type from anything, into a built-in type from
# the type of a column read
CASTS_SQL = """
select format('%%s -> %%s', c.castsource::regtype, c.casttarget::regtype), p.oid::regprocedure::text, p.provolatile, p.oid < 16384
  from pg_cast c join pg_proc p on p.oid = c.castfunc
 where p.oid >= 16384
   and ((c.castsource = any(%(read)s::oid[]) and c.castcontext in ('i', 'a'))
        or (c.casttarget = any(%(cast_to)s::oid[]) and (c.casttarget >= 16384 or c.castsource = any(%(read)s::oid[]))))
"""
POLICIES_SQL = """
select p.polname, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
  from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
 where c.relname = %(name)s and (%(schema)s = '' or n.nspname = %(schema)s)
   and (%(schema)s <> '' or pg_table_is_visible(c.oid)) and c.relrowsecurity
"""


# Layer 1c: what the server would execute. With debug_print_plan on and client_min_messages
# at LOG (both settable by any role), EXPLAIN (no ANALYZE: nothing runs) makes the server
# send the full plan tree of the statement, views, row-level security quals and inlined SQL
# function bodies included, in which every function that would run appears by oid.
MAX_PLAN = 32 << 20  # bytes of plan text read
_PLAN_FUNCTIONS = re.compile(r":(?:funcid|opfuncid|hashfuncid|negfuncid|aggfnoid|winfnoid|tsmhandler) (\d+)")
_PLAN_OPERATORS = re.compile(r":(?:opno|sortop|eqop|sortOperators|grpOperators|eqOperators|hashOperators|opnos|dupOperators) (?:\(o )?([\d ]+)\)?")
_PLAN_RELATIONS = re.compile(r":relid (\d+)\s+:relkind (\w)")
PLAN_FUNCTIONS_SQL = """
select p.oid::regprocedure::text, p.provolatile, p.oid < 16384
  from pg_proc p
 where p.oid = any(%(oids)s::oid[])
    or p.oid in (select unnest(array[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn,
                                     a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn]::oid[])
                   from pg_aggregate a where a.aggfnoid = any(%(oids)s::oid[]))
"""
PLAN_OPERATORS_SQL = """
select o.oid::regoperator::text, p.oid::regprocedure::text, p.provolatile, p.oid < 16384
  from pg_operator o join pg_proc p on p.oid = o.oprcode
 where o.oid = any(%(oids)s::oid[])
"""
PLAN_RELATIONS_SQL = """
select c.oid::regclass::text, c.relkind, coalesce(am.amname, '')
  from pg_class c left join pg_am am on am.oid = c.relam
 where c.oid = any(%(oids)s::oid[])
"""


def plan_text(conn: Any, sql: str) -> str:
    """The server's plan tree of ``sql`` (EXPLAIN without ANALYZE, inside the caller's
    read-only transaction), as debug_print_plan sends it."""
    got: list[str] = []
    size = [0]

    def on_notice(diag: Any) -> None:
        if diag.message_primary == "plan:" and diag.message_detail and size[0] <= MAX_PLAN:
            size[0] += len(diag.message_detail)
            got.append(diag.message_detail)

    conn.add_notice_handler(on_notice)
    try:
        conn.execute("set local debug_print_plan = on")
        conn.execute("set local client_min_messages = log")
        conn.execute("explain " + sql)  # an error here aborts the transaction, which is rolled back whole
        conn.execute("set local client_min_messages = notice")
        conn.execute("set local debug_print_plan = off")
    finally:
        conn.remove_notice_handler(on_notice)
    if size[0] > MAX_PLAN:
        raise RefusedError(f"the statement's plan is larger than {MAX_PLAN} bytes", hint="smoke with simpler queries; nothing was sent")
    if not got:
        raise RefusedError("the server sent no plan for the statement (debug_print_plan is not available)", hint="nothing was sent")
    return "\n".join(got)


def check_plan(conn: Any, sql: str, allow_functions: Iterable[str] = (), allow_foreign: bool = False) -> None:
    """Layer 1c: refuse (exit 4) unless every function the server's plan would run (by oid:
    called, behind an operator, an aggregate's support functions) is side-effect free by
    the catalog rule, and every relation it scans is plain storage (a foreign table, or a
    table of another access method, may run anything: file_fdw runs programs) unless
    ``allow_foreign`` was set."""
    allow = {f.split(".")[-1].strip('"').lower() for f in allow_functions}
    plan = plan_text(conn, sql)
    problems: list[str] = []
    funcs = sorted({int(x) for x in _PLAN_FUNCTIONS.findall(plan)})
    ops = sorted({int(x) for group in _PLAN_OPERATORS.findall(plan) for x in group.split()})
    rels = sorted({int(oid) for oid, _kind in _PLAN_RELATIONS.findall(plan)})
    if funcs:
        for sig, vol, builtin in conn.execute(PLAN_FUNCTIONS_SQL, {"oids": funcs}).fetchall():
            if why := _function_ok(vol, builtin, sig, allow):
                problems.append(f"the plan runs {why}")
    if ops:
        for opsig, sig, vol, builtin in conn.execute(PLAN_OPERATORS_SQL, {"oids": ops}).fetchall():
            if why := _function_ok(vol, builtin, sig, allow):
                problems.append(f"the plan's operator {opsig}: {why}")
    if rels:
        for name, kind, am in conn.execute(PLAN_RELATIONS_SQL, {"oids": rels}).fetchall():
            if kind == "f" and not allow_foreign:
                problems.append(
                    f"the plan reads the foreign table {name} (a foreign data wrapper may run programs on the server; allow_foreign = true once reviewed)"
                )
            elif kind in ("r", "m", "t") and am not in ("heap", "") and not allow_foreign:
                problems.append(f"the plan reads {name} through the table access method {am}, not plain storage")
    if "{CUSTOMSCAN" in plan and not allow_foreign:
        problems.append("the plan holds a custom scan (an extension's code)")
    if problems:
        raise RefusedError(
            "forbidden SQL (by the server's plan): " + "; ".join(sorted(set(problems))),
            hint="a smoke calls only side-effect-free functions and reads plain tables; nothing was sent",
        )


def _type_ok(signature: str, typtype: str, builtin: bool) -> str:
    """A cast runs the target type's input function, a cast function, and a domain's CHECK
    expressions: only built-in types and enums (whose input is the built-in enum_in)."""
    if builtin or typtype == "e":
        return ""
    kinds = {"d": "a domain (its CHECK expressions run)", "c": "a composite type", "b": "a user-defined base type", "r": "a range type"}
    return f"a cast to {signature}, {kinds.get(typtype, 'a user-defined type')}, runs functions this check cannot see"


def _function_ok(volatile: str, builtin: bool, signature: str, allow: set[str]) -> str:
    if volatile == "v":
        return f"{signature} is VOLATILE (it may have side effects)"
    if not builtin and signature.split("(")[0].split(".")[-1].strip('"').lower() not in allow:
        return f"{signature} is not a built-in function; list it in allow_functions once reviewed"
    return ""


def check_catalog(conn: Any, refs: Refs, allow_functions: Iterable[str] = (), forbid_functions: Iterable[str] = (), depth: int = 0) -> None:
    """Layer 1b: refuse (exit 4) unless every function, operator, column-style call and view
    the statement reaches is, by the server's own catalog, side-effect free."""
    allow = {f.split(".")[-1].strip('"').lower() for f in allow_functions}
    problems: list[str] = []
    for schema, name in sorted(refs.functions):
        rows = conn.execute(FUNCTIONS_SQL, {"name": name, "schema": schema, "nargs": -1}).fetchall()
        problems += [why for sig, _ns, vol, _kind, builtin in rows if (why := _function_ok(vol, builtin, sig, allow))]
    for name in sorted(refs.column_calls):
        rows = conn.execute(FUNCTIONS_SQL, {"name": name, "schema": "", "nargs": 1}).fetchall()
        problems += [f"column-style .{name}: {why}" for sig, _ns, vol, _kind, builtin in rows if (why := _function_ok(vol, builtin, sig, allow))]
    for op in sorted(refs.operators):
        rows = conn.execute(OPERATORS_SQL, {"name": op}).fetchall()
        problems += [f"operator {opsig}: {why}" for opsig, sig, _ns, vol, _kind, builtin in rows if (why := _function_ok(vol, builtin, sig, allow))]
    cast_to: set[int] = set()  # the types cast into, and the types of the columns read: their casts may run
    read: set[int] = set()
    for schema, name in sorted(refs.types):
        rows = conn.execute(TYPES_SQL, {"name": name, "schema": schema}).fetchall()
        problems += [why for sig, typtype, builtin, _oid in rows if (why := _type_ok(sig, typtype, builtin))]
        cast_to.update(int(oid) for *_, oid in rows)
    for schema, name in sorted(refs.relations):
        read.update(int(oid) for (oid,) in conn.execute(COLUMN_TYPES_SQL, {"name": name, "schema": schema}).fetchall())
    if cast_to or read:
        for cast, sig, vol, builtin in conn.execute(CASTS_SQL, {"read": sorted(read), "cast_to": sorted(cast_to)}).fetchall():
            if why := _function_ok(vol, builtin, sig, allow):
                problems.append(f"the cast {cast}: {why}")
    for schema, name in sorted(refs.relations):
        # what reading the relation runs: a view's definition, and the expressions of the
        # row-level security policies the role is subject to (a policy may call any function)
        found = conn.execute(RELATION_SQL, {"name": name, "schema": schema}).fetchall()
        inner_sql = [(f"view {name}", viewdef) for kind, viewdef in found if kind == "v" and viewdef]
        for policy, *exprs in conn.execute(POLICIES_SQL, {"name": name, "schema": schema}).fetchall():
            inner_sql += [(f"row-level security policy {policy} on {name}", f"select {e}") for e in exprs if e]
        for what, sql in inner_sql:
            if depth >= MAX_VIEW_DEPTH:
                problems.append(f"{what} nests views deeper than {MAX_VIEW_DEPTH}")
                continue
            try:
                check_catalog(conn, check(sql, forbid_functions), allow_functions, forbid_functions, depth + 1)
            except RefusedError as exc:
                problems.append(f"{what}: {exc.message}")
    if problems:
        raise RefusedError(
            "forbidden SQL (by the server's catalog): " + "; ".join(sorted(set(problems))),
            hint="a smoke calls only side-effect-free functions; nothing was sent",
        )
