"""The structural rules docs/architecture.md states, as checkers over a source tree.

- Import direction: each top-level package imports only the packages below it
  (`LAYERS`). Every import counts, module-level or inside a function (the pipelines
  import heavy modules lazily), and so does a string naming a module of a package above
  (`"onboarding_app.wsgi:app"` handed to a subprocess is an import by other means).
- One writer per table: the modules that insert into, update or delete from a table lie
  under the owner the schema declares for it (`accrue.schema.writers()`). A write is
  `<table>.insert()/update()/delete()`, `insert(<table>)` (any dialect's), or raw SQL
  `INSERT INTO` / `UPDATE` / `DELETE FROM <table>` in a string. Tables created from data
  (the crm_* object tables, reached as `object_table(name)`) are the warehouse's, which
  is their only caller; migrations are exempt (they create and backfill every table).
- Reads of the warehouse's own tables go through the warehouse (issue 16): outside
  `accrue/warehouse`, no module names its ledgers and logs (`WAREHOUSE_TABLES`) or
  `change_log_raw`, nor reads them in raw SQL (`FROM` / `JOIN <table>`).

Both walk files with `ast`, so a checker can be tried on a small fake tree (the tests do).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What each top-level package may import, besides itself and the standard library and
# third-party packages. Lowest layer first.
LAYERS: dict[str, frozenset[str]] = {
    "connectors": frozenset(),
    "accrue": frozenset({"connectors"}),
    "accrue_pipelines": frozenset({"connectors", "accrue"}),
    "onboarding_app": frozenset({"connectors", "accrue"}),
    "accrue_cli": frozenset({"connectors", "accrue", "accrue_pipelines", "onboarding_app"}),
    "benchmarks": frozenset({"connectors", "accrue", "accrue_pipelines", "onboarding_app",
                             "accrue_cli", "accrue_pipelines_tests"}),
}
TESTS = "accrue_pipelines_tests"  # imports anything
PACKAGES = frozenset({*LAYERS, TESTS})
SKIPPED_PARTS = frozenset({".venv", "__pycache__", ".git", "node_modules", "build", "dist"})
# A string that is exactly a dotted module path, optionally with ":attribute".
_MODULE_STRING = re.compile(r"^([a-z_][a-z0-9_]*)(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the tree's root, with "/"
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if not SKIPPED_PARTS.intersection(path.relative_to(root).parts):
            yield path


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants: prose may name modules and SQL freely."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                found.add(id(body[0].value))
    return found


def _strings(tree: ast.AST) -> Iterator[ast.Constant]:
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node


# -- import direction -------------------------------------------------------------------


def imported_packages(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import, at any depth, and of every
    string that names a module of one of the project's packages."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.partition(".")[0]
    for const in _strings(tree):
        text = const.value
        if "." in text or ":" in text:
            match = _MODULE_STRING.match(text)
            if match and match.group(1) in PACKAGES:
                yield const.lineno, match.group(1)


def import_violations(root: Path, layers: Mapping[str, frozenset[str]] = LAYERS,
                      ) -> list[Violation]:
    """Every import in a package of `layers` of a project package it may not import."""
    project = {*layers, TESTS}
    found = []
    for path in python_files(root):
        package = path.relative_to(root).parts[0]
        if package not in layers:
            continue  # tests (and files outside the packages) import anything
        allowed = layers[package] | {package}
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, imported in imported_packages(tree):
            if imported in project and imported not in allowed:
                found.append(Violation(_relative(root, path), line,
                                       f"{package} imports {imported} (may import: "
                                       f"{', '.join(sorted(layers[package])) or 'nothing'})"))
    return found


# -- one writer per table ---------------------------------------------------------------

# insert, update, delete, and their variants: `_insert`, `pg_insert`, `upsert`, ...
_WRITE_CALL = re.compile(r"^_?(?:\w+_)?(?:insert|upsert|update|delete)$")
_RAW_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?([a-z_][a-z0-9_]*)")


def _table_aliases(tree: ast.AST, tables: frozenset[str], local: bool) -> dict[str, str]:
    """Names bound to tables: `from accrue.schema import audit_event [as x]`, then
    `q = crm_quarantine` (wherever in the file: scopes are not told apart)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("accrue.schema"):
            for alias in node.names:
                if alias.name in tables:
                    names[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and (name := _table_named(node.value, names, tables, local))):
            names[node.targets[0].id] = name
    return names


def _call_name(func: ast.AST) -> str:
    """`insert` for `insert(...)`, `sa.insert(...)` and `dialect_insert(d)(...)`."""
    if isinstance(func, ast.Call):
        return _call_name(func.func)
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _table_named(node: ast.AST, aliases: Mapping[str, str], tables: frozenset[str],
                 local: bool) -> str | None:
    """The table an expression names: an imported table, a table declared in this very
    module (`local`), or `<module>.<table>` (e.g. `schema.audit_event`)."""
    if isinstance(node, ast.Name):
        if node.id in aliases:
            return aliases[node.id]
        return node.id if local and node.id in tables else None
    if isinstance(node, ast.Attribute) and node.attr in tables:
        return node.attr
    return None


def table_writes(path: Path, tables: frozenset[str]) -> Iterator[tuple[int, str]]:
    """(line, table) of every write to a named table in one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    local = "schema" in path.parts  # the schema modules declare the tables themselves
    aliases = _table_aliases(tree, tables, local)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not _WRITE_CALL.match(_call_name(node.func)):
            continue
        # `<table>.insert()`, or `insert(<table>)`, `sa.update(<table>)`, `pg_insert(<table>)`.
        targets = [node.func.value] if isinstance(node.func, ast.Attribute) else []
        for target in [*targets, *node.args[:1]]:
            if name := _table_named(target, aliases, tables, local):
                yield node.lineno, name
                break
    for const in _strings(tree):
        for match in _RAW_WRITE.finditer(const.value):
            if match.group(1) in tables:
                yield const.lineno, match.group(1)


def writer_violations(root: Path, writers: Mapping[str, str],
                      scanned: tuple[str, ...] = tuple(LAYERS)) -> list[Violation]:
    """Every write to a table from outside the paths `writers` allows for it.

    `writers` maps a table to the one path prefix (relative to `root`) that may write it.
    """
    tables = frozenset(writers)
    found = []
    for path in python_files(root):
        rel = _relative(root, path)
        if rel.partition("/")[0] not in scanned or "/migrations/" in f"/{rel}":
            continue
        for line, table in table_writes(path, tables):
            if not _under(rel, writers[table]):
                found.append(Violation(rel, line, f"writes {table}, whose writer is "
                                       f"{writers[table]}"))
    return found


def _under(rel: str, owner: str) -> bool:
    """`accrue/warehouse` owns accrue/warehouse.py and accrue/warehouse/*; a file owns itself."""
    if owner.endswith(".py"):
        return rel == owner
    return rel == f"{owner}.py" or rel.startswith(f"{owner}/")


# -- reads of the warehouse's tables through the warehouse --------------------------------

WAREHOUSE = "accrue/warehouse"
# The warehouse's ledgers, logs and view: their name in accrue.schema → their name in SQL.
# The crm_<object> tables are not here: they are the synced data itself, which analytics
# and the pages read as such (`object_table(name)`); what the warehouse keeps about the
# data (runs, checkpoints, versions, quarantine, summary) has its read API in the package.
WAREHOUSE_TABLES: dict[str, str] = {
    "sync_run": "sync_run",
    "sync_state": "sync_state",
    "crm_change_log": "crm_change_log",
    "crm_quarantine": "crm_quarantine",
    "pipeline_summary": "pipeline_summary",
    "record_history": "crm_record_history",
}
# How the change log's documents are found (a clause over the log): the warehouse's too.
WAREHOUSE_HELPERS = frozenset({"change_log_raw"})
# Benchmarks compare what the warehouse stored with the truth they generated, so they read
# its tables directly on purpose; tests, migrations and accrue/schema are not scanned.
READS_SCANNED = tuple(p for p in LAYERS if p != "benchmarks")
_RAW_READ = re.compile(r"\b(?:FROM|JOIN)\s+\"?([a-z_][a-z0-9_]*)")


def _imported_tables(tree: ast.AST, names: frozenset[str]) -> dict[str, str]:
    """Names bound by `from accrue.schema import <table> [as x]`. Not `q = <table>` as the
    writer check follows: the assignment itself uses the imported name, and a later `q`
    in another function may be anything."""
    return {alias.asname or alias.name: alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("accrue.schema")
            for alias in node.names if alias.name in names}


def _schema_modules(tree: ast.AST) -> set[str]:
    """Names bound to accrue.schema or one of its modules (`from accrue import schema`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("accrue", "accrue.schema"):
            names.update(alias.asname or alias.name for alias in node.names
                         if node.module == "accrue.schema" or alias.name == "schema")
        elif isinstance(node, ast.Import):
            names.update(alias.asname for alias in node.names
                         if alias.asname and alias.name.startswith("accrue.schema"))
    return names


def table_reads(path: Path, names: frozenset[str], sql_names: frozenset[str],
                ) -> Iterator[tuple[int, str]]:
    """(line, name) of every use of a named table or helper in one file, and of every raw
    SQL read of one. Any use counts: a query names a table to select, join or test it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = _imported_tables(tree, names)
    modules = _schema_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in aliases:
            yield node.lineno, aliases[node.id]
        elif (isinstance(node, ast.Attribute) and node.attr in names
              and isinstance(node.value, ast.Name) and node.value.id in modules):
            yield node.lineno, node.attr
    for const in _strings(tree):
        for match in _RAW_READ.finditer(const.value):
            if match.group(1) in sql_names:
                yield const.lineno, match.group(1)


def reader_violations(root: Path, owner: str = WAREHOUSE,
                      tables: Mapping[str, str] = WAREHOUSE_TABLES,
                      helpers: frozenset[str] = WAREHOUSE_HELPERS,
                      scanned: tuple[str, ...] = READS_SCANNED) -> list[Violation]:
    """Every read of the owner's tables from outside it: others use its read API."""
    names = frozenset({*tables, *helpers})
    found = []
    for path in python_files(root):
        rel = _relative(root, path)
        if (rel.partition("/")[0] not in scanned or "/migrations/" in f"/{rel}"
                or _under(rel, owner) or _under(rel, "accrue/schema")):
            continue
        for line, name in table_reads(path, names, frozenset(tables.values())):
            found.append(Violation(rel, line, f"reads {name}: use {owner}'s read API"))
    return sorted(set(found), key=lambda v: (v.path, v.line, v.message))


# -- docs/architecture.md's generated sections ------------------------------------------

DOC = REPO / "docs" / "architecture.md"


def layers_markdown(layers: Mapping[str, frozenset[str]] = LAYERS) -> str:
    rows = [f"| `{package}` | {', '.join(f'`{p}`' for p in sorted(allowed)) or 'nothing'} |"
            for package, allowed in layers.items()]
    return "\n".join(["| Package | May import |", "| --- | --- |", *rows,
                      f"| `{TESTS}` | anything |"])


def writers_markdown(writers: Mapping[str, str]) -> str:
    """Owner → its tables, owners in path order; crm_* object tables collapsed into one."""
    by_owner: dict[str, list[str]] = {}
    for table, owner in writers.items():
        by_owner.setdefault(owner, []).append(table)
    rows = []
    for owner in sorted(by_owner):
        tables = sorted(by_owner[owner])
        objects = [t for t in tables if t.startswith("crm_") and t not in _NAMED_CRM_TABLES]
        shown = [t for t in tables if t not in objects] + (
            ["crm_<object> (one per common object)"] if objects else [])
        rows.append(f"| `{owner}` | {', '.join(f'`{t}`' for t in shown)} |")
    return "\n".join(["| Writer | Tables |", "| --- | --- |", *rows])


def warehouse_reads_markdown(tables: Mapping[str, str] = WAREHOUSE_TABLES,
                             helpers: frozenset[str] = WAREHOUSE_HELPERS) -> str:
    """The tables (in SQL) and helpers only the warehouse reads, one list."""
    shown = [*sorted(tables.values()), *(f"{h}()" for h in sorted(helpers))]
    return f"Read only in `{WAREHOUSE}`: {', '.join(f'`{t}`' for t in shown)}."


_NAMED_CRM_TABLES = frozenset({"crm_connection", "crm_change_log", "crm_quarantine"})


def generated_section(text: str, name: str) -> str:
    """The text between `<!-- generated: name -->` and `<!-- end: name -->`."""
    start, end = f"<!-- generated: {name} -->", f"<!-- end: {name} -->"
    if start not in text or end not in text:
        raise LookupError(f"{DOC.name} has no section {start} ... {end}")
    return text.split(start, 1)[1].split(end, 1)[0].strip()
