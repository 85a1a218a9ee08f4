"""Which tables a run syncs, in what order, with which columns; drift found before anything is touched."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from datetime import datetime

from sync_assets.engine.catalog import Catalog, Column, ColumnSequence, ForeignKey, Table
from sync_assets.engine.config import SyncConfig, TableRef
from sync_assets.engine.errors import ConfigError, DriftError, SelectionError
from sync_assets.engine.graph import acyclic_parents, fk_groups, fk_order

TableKey = tuple[str, str]


def qualified(key: TableKey) -> str:
    return f"{key[0]}.{key[1]}"


@dataclass(frozen=True)
class Roles:
    """What the config makes of each production table in the configured schemas."""

    synced: tuple[TableKey, ...]  # in FK order
    preserved: tuple[TableKey, ...]
    excluded: tuple[TableKey, ...]
    parents: dict[TableKey, list[TableKey]]  # synced table -> synced parents, cycle edges dropped


def _resolve(ref: TableRef, catalog: Catalog, config: SyncConfig, key: str, side: str = "production") -> TableKey:
    """The table a config entry names, looked up in `side`'s catalog; a name it lacks is a ConfigError."""
    if ref.schema is not None:
        if ref.schema not in config.schemas:
            raise ConfigError(
                f"'{key}' names table {ref}, but schema '{ref.schema}' is not among the synced schemas "
                f"({', '.join(config.schemas)})"
            )
        if catalog.get(ref.schema, ref.name) is None:
            raise ConfigError(f"'{key}' names table {ref}, which {side} does not have")
        return (ref.schema, ref.name)
    found = [s for s in config.schemas if catalog.get(s, ref.name) is not None]
    if not found:
        names = sorted({t.name for t in catalog.in_schemas(config.schemas)})
        close = difflib.get_close_matches(ref.name, names, n=1)
        raise ConfigError(
            f"'{key}' names table '{ref.name}', which {side} does not have in schema(s) {', '.join(config.schemas)}"
            + (f"; did you mean '{close[0]}'?" if close else "")
        )
    if len(found) > 1:
        raise ConfigError(
            f"'{key}' names table '{ref.name}', which is in several schemas ({', '.join(found)}); "
            "write it as schema.table"
        )
    return (found[0], ref.name)


def _must_be_set(table: Table, fk: ForeignKey) -> bool:
    """A foreign key whose row cannot be written first and linked later: NOT NULL, not deferrable."""
    return not fk.deferrable and any((c := table.column(n)) is not None and c.not_null for n in fk.columns)


def resolve_roles(catalog: Catalog, staging: Catalog, config: SyncConfig) -> Roles:
    """Split the tables into synced, preserved and excluded; unknown names are ConfigErrors.

    Preserved tables are staging's own: looked up in staging's catalog, whether or not production has
    them too. Synced and excluded tables are production's."""
    present = {t.schema for t in catalog.tables.values()}
    missing = [s for s in config.schemas if s not in present]
    if missing:
        raise ConfigError(
            f"'schemas' names {', '.join(repr(s) for s in missing)}, but production has no tables in "
            f"{'that schema' if len(missing) == 1 else 'those schemas'}"
        )
    preserved = {_resolve(r, staging, config, "preserve", "staging") for r in config.preserve}
    excluded = {_resolve(r, catalog, config, "exclude") for r in config.exclude}
    both = sorted(preserved & excluded)
    if both:
        raise ConfigError(f"table {qualified(both[0])} is listed under both 'preserve' and 'exclude'")
    synced = [t.key for t in catalog.in_schemas(config.schemas) if t.key not in preserved | excluded]
    parents = {k: [fk.ref for fk in catalog.tables[k].foreign_keys] for k in synced}
    hard = {k: [fk.ref for fk in catalog.tables[k].foreign_keys if _must_be_set(catalog.tables[k], fk)] for k in synced}
    order = fk_order(synced, parents, hard)
    return Roles(
        synced=tuple(order),
        preserved=tuple(sorted(preserved)),
        excluded=tuple(sorted(excluded)),
        parents=acyclic_parents(order, parents),
    )


# ---------------------------------------------------------------------------------------------
# Column types


# format_type() spellings: "numeric(10,2)", "timestamp(3) with time zone", "character varying(5)[]".
_SIZED = re.compile(r"^(?P<head>[a-z ]+?)(\((?P<args>[0-9, ]+)\))?(?P<tail>( [a-z ]+)?)(?P<array>(\[\])*)$")
_INTEGERS = ["smallint", "integer", "bigint"]
_TEXTS = {"text", "character varying", "character"}
_TIMES = {"timestamp with time zone", "timestamp without time zone", "time without time zone"}


def _split_type(type_name: str) -> tuple[str, list[int], str] | None:
    m = _SIZED.match(type_name)
    if not m:
        return None
    args = [int(a) for a in (m.group("args") or "").replace(" ", "").split(",") if a]
    return m.group("head") + m.group("tail"), args, m.group("array")


def _underlying(col: Column) -> str:
    """A domain compares as its base type (its CHECKs then judge each value as it is copied)."""
    return (col.underlying or col.base_type) if col.is_domain else col.type


def types_compatible(source: str, target: str) -> bool:
    """Whether every value of production's type loads into staging's type without loss."""
    if source == target:
        return True
    s, t = _split_type(source), _split_type(target)
    if s is None or t is None or s[2] != t[2]:
        return False
    (sname, sargs, _), (tname, targs, _) = s, t
    if tname == "text" or (tname == "character varying" and not targs):
        return sname in _TEXTS
    if sname == tname == "character varying":
        return bool(sargs) and targs[0] >= sargs[0]
    if sname in _INTEGERS and tname in _INTEGERS:
        return _INTEGERS.index(tname) >= _INTEGERS.index(sname)
    if tname == "numeric":
        if not targs:
            return sname in _INTEGERS or sname == "numeric"
        if sname == "numeric" and sargs:
            sp, ss = sargs[0], (sargs[1] if len(sargs) > 1 else 0)
            tp, ts = targs[0], (targs[1] if len(targs) > 1 else 0)
            return ts >= ss and tp - ts >= sp - ss
        return False
    if (sname, tname) in {("real", "double precision"), ("json", "jsonb")}:
        return True
    # Fractional-second precision may grow, never shrink (6 when unspecified).
    return sname == tname and sname in _TIMES and (targs or [6])[0] >= (sargs or [6])[0]


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class TablePlan:
    source: Table  # production's table
    target: Table  # staging's table
    columns: tuple[str, ...]  # copied, in staging's column order
    key: tuple[str, ...]  # identifies rows; () means the table is replaced whole
    binary: bool  # COPY in binary format
    exact_columns: tuple[str, ...]  # compared with IS DISTINCT FROM
    # Key columns whose `=` ignores representation (numeric 1.0 = 1.00): rewritten when their text differs.
    key_text_columns: tuple[str, ...]
    text_columns: tuple[str, ...]  # compared through their text form
    update_columns: tuple[str, ...]  # set by UPDATE (not key, not identity ALWAYS)
    overriding_system_value: bool  # staging has a copied identity ALWAYS column
    sequences: tuple[ColumnSequence, ...]  # staging's sequences behind copied columns
    extra_columns: tuple[str, ...]  # staging-only columns left to their defaults
    notes: tuple[str, ...] = ()
    # The two databases' encodings differ: content fingerprints hash text as UTF-8 (content.py).
    encodings_differ: bool = False
    # Staging-only columns whose default or identity draws from a sequence: a dry run gives them the
    # numbers the sequence would give instead, for no rollback gives drawn numbers back.
    mimicked: tuple[ColumnSequence, ...] = ()
    # Staging-only columns whose default draws from a sequence inside an expression: a dry run cannot
    # give their values without drawing, so it counts the table's inserts instead of making them.
    unmimicked: tuple[str, ...] = ()
    mode: str = "mirror"  # merge: rows production no longer has stay in staging
    incremental_column: str | None = None  # mode incremental: when a row last changed
    # Mode incremental: read only rows whose column is at least this (None: read every row).
    since: datetime | None = None
    # Read partly: production's keys were copied to find deletes. The extract clears it when the key
    # fingerprints show nothing was deleted (fingerprints.py); then no key shadow exists.
    keys_copied: bool = True

    @property
    def deletes(self) -> bool:
        return self.mode != "merge"

    @property
    def partial(self) -> bool:
        """Only rows changed since the watermark are read; fingerprints, then keys, find the deletes."""
        return self.mode == "incremental" and self.since is not None

    @property
    def table_key(self) -> TableKey:
        return self.target.key

    @property
    def key_indexed(self) -> bool:
        """Staging has a unique index on exactly the row key: finding a row by key is one index probe."""
        indexed = {frozenset(k) for k in (self.target.primary_key, *self.target.unique_keys)}
        return bool(self.key) and frozenset(self.key) in indexed

    @property
    def qualified(self) -> str:
        return self.target.qualified


@dataclass(frozen=True)
class Reference:
    """A staging foreign key between a table of the run and a table outside it."""

    table: Table  # the referencing table (staging)
    fk: ForeignKey
    role: str  # of the table outside the run: preserve, staging_only, unselected, exclude


@dataclass(frozen=True)
class SyncPlan:
    tables: tuple[TablePlan, ...]  # FK order by staging's foreign keys, parents first
    children_outside: tuple[Reference, ...]  # tables outside the run pointing into it
    parents_outside: tuple[Reference, ...]  # tables of the run pointing out of it
    roles: Roles
    staging: Catalog
    # The tables in write order: each group one table, or the tables of a foreign-key cycle, which are
    # written together (swap.py).
    groups: tuple[tuple[TableKey, ...], ...]

    def table(self, key: TableKey) -> TablePlan:
        return next(t for t in self.tables if t.table_key == key)

    def role_of(self, key: TableKey) -> str:
        """What a staging table is to this run: in it ("run") or, outside it, preserved ("preserve"),
        excluded ("exclude"), synced but not selected ("unselected"), or staging's alone ("staging_only")."""
        if any(t.table_key == key for t in self.tables):
            return "run"
        if key in self.roles.preserved:
            return "preserve"
        if key in self.roles.excluded:
            return "exclude"
        if key in self.roles.synced:
            return "unselected"
        return "staging_only"

    @property
    def notes(self) -> list[str]:
        return [f"{t.qualified}: {n}" for t in self.tables for n in t.notes]


def _plan_table(source: Table, target: Table | None, staging: Catalog, prod_enums: dict) -> TablePlan:
    q = source.qualified
    if target is None:
        raise DriftError(
            f"staging has no table {q} (production has it): create it in staging, or list it under 'exclude'"
        )
    notes: list[str] = []
    for col in source.columns:
        if target.column(col.name) is None:
            if col.generated:
                notes.append(f"production's generated column {col.name} is not in staging")
                continue
            raise DriftError(
                f"column {q}.{col.name} ({col.type}) exists in production but not in staging: "
                "add it to staging's table, or exclude the table"
            )
    copied: list[Column] = []
    extra: list[str] = []
    for col in target.columns:
        src = source.column(col.name)
        if src is None:
            if col.not_null and not col.has_default and not col.generated and not col.identity:
                raise DriftError(
                    f"column {q}.{col.name} exists only in staging and is NOT NULL without a default, so "
                    "rows from production cannot be inserted: give it a default or drop NOT NULL"
                )
            extra.append(col.name)
            continue
        if col.generated:
            if not src.generated:
                notes.append(f"column {col.name} is generated in staging, so production's values are not copied")
            continue
        if not types_compatible(src.type, col.type) and not types_compatible(_underlying(src), _underlying(col)):
            raise DriftError(
                f"column {q}.{col.name} has incompatible types: {src.type} in production, {col.type} in staging"
            )
        if src.is_enum and col.is_enum:
            src_labels = prod_enums.get(src.base_type, ())
            missing = [lb for lb in src_labels if lb not in staging.enums.get(col.base_type, ())]
            if missing:
                raise DriftError(
                    f"column {q}.{col.name}: staging's enum type {col.base_type} lacks label(s) "
                    f"{', '.join(repr(m) for m in missing)} that production has"
                )
        copied.append(col)
    if extra:
        notes.append(f"staging-only column(s) {', '.join(extra)} keep their defaults")
    names = tuple(c.name for c in copied)
    key = source.row_key
    if key and not set(key) <= set(names):
        notes.append(f"row key ({', '.join(key)}) is not copied to staging, so the table is replaced whole")
        key = ()
    binary = all(
        c.binary_portable and (s := source.column(c.name)) is not None and s.type == c.type and s.binary_portable
        for c in copied
    )
    exact = tuple(c.name for c in copied if c.name not in key and c.exact_equality)
    key_text = tuple(c.name for c in copied if c.name in key and not c.exact_equality and c.identity != "a")
    text = tuple(c.name for c in copied if c.name not in key and not c.exact_equality)
    update = tuple(c.name for c in copied if c.name not in key and c.identity != "a")
    if any(c.identity == "a" and c.name not in key for c in copied):
        notes.append("identity ALWAYS columns outside the key are written on insert only")
    sequences = tuple(s for s in target.sequences if s.column in names)
    drawn = {s.column: s for s in target.sequences if s.column in extra}
    return TablePlan(
        source=source,
        target=target,
        columns=names,
        key=key,
        binary=binary,
        exact_columns=exact,
        key_text_columns=key_text,
        text_columns=text,
        update_columns=update,
        overriding_system_value=any(c.identity == "a" for c in copied),
        sequences=sequences,
        extra_columns=tuple(extra),
        notes=tuple(notes),
        mimicked=tuple(drawn.values()),
        unmimicked=tuple(c for c in extra if c in target.sequence_defaults and c not in drawn),
    )


# What an incremental column may be: compared with a point in time.
_CHANGE_TYPES = {"timestamp with time zone", "timestamp without time zone", "date"}


def _incremental_problem(tp: TablePlan, column: str) -> str | None:
    """Why the table cannot be read incrementally by this column, or None."""
    if not tp.key:
        return "needs a primary key (or unique NOT NULL key) to find deleted rows; it has none"
    src = tp.source.column(column)
    if src is None:
        return f"has no column {column} in production to tell changed rows by"
    if column not in tp.columns:
        return f"does not copy its column {column} to staging"
    split = _split_type(_underlying(src))
    if split is None or split[0] not in _CHANGE_TYPES or split[2]:
        return f"has column {column} of type {src.type}, not a timestamp or date"
    return None


def _with_mode(tp: TablePlan, explicit: str | None, column: str | None, config: SyncConfig) -> TablePlan:
    """Merge and incremental need a key (incremental also its change column): asked for by name, their
    absence is an error; by the global default, the table stays in mirror mode, and the plan says so."""
    mode = explicit or config.mode
    if column is not None and mode != "incremental":
        raise ConfigError(
            f"'tables' sets the column of {tp.qualified}, which only mode incremental uses; its mode is {mode}"
        )
    if mode == "merge" and not tp.key:
        if explicit:
            raise DriftError(
                f"{tp.qualified} is set to mode merge, which needs a primary key (or unique NOT NULL key) to tell "
                "new rows from existing ones; it has none"
            )
        return replace(tp, notes=(*tp.notes, "no key to merge by: synced in mirror mode (replaced whole)"))
    if mode == "incremental":
        named = explicit is not None or column is not None
        column = column or config.incremental_column
        problem = _incremental_problem(tp, column)
        if problem is not None:
            if named:
                raise DriftError(f"{tp.qualified} is set to mode incremental, but it {problem}")
            return replace(tp, notes=(*tp.notes, f"not incremental: it {problem}; synced in mirror mode"))
        return replace(tp, mode=mode, incremental_column=column)
    return replace(tp, mode=mode)


def _per_table(
    catalog: Catalog, config: SyncConfig, roles: Roles, settings: tuple[tuple[TableRef, str], ...], what: str
) -> dict[TableKey, str]:
    out = {}
    for ref, value in settings:
        key = _resolve(ref, catalog, config, "tables")
        if key not in roles.synced:
            raise ConfigError(
                f"'tables' sets the {what} of {qualified(key)}, which is preserved or excluded, not synced"
            )
        out[key] = value
    return out


def resolve_modes(catalog: Catalog, config: SyncConfig, roles: Roles) -> dict[TableKey, str]:
    """The tables whose mode differs from the config's default `mode`."""
    return _per_table(catalog, config, roles, config.table_modes, "mode")


def resolve_columns(catalog: Catalog, config: SyncConfig, roles: Roles) -> dict[TableKey, str]:
    """The tables whose incremental column differs from the config's `incremental_column`."""
    return _per_table(catalog, config, roles, config.table_columns, "column")


def build_plan(
    production: Catalog,
    staging: Catalog,
    config: SyncConfig,
    selection: set[TableKey] | None = None,
) -> SyncPlan:
    """Plan a run of the selected synced tables (None: all); raise on drift or a bad selection."""
    roles = resolve_roles(production, staging, config)
    synced = set(roles.synced)
    if selection is None:
        selection = synced
    wrong = sorted(selection - synced)
    if wrong:
        key = wrong[0]
        why = (
            "is preserved"
            if key in roles.preserved
            else "is excluded"
            if key in roles.excluded
            else "is not a production table of the synced schemas"
        )
        raise SelectionError(f"cannot sync {qualified(key)}: it {why} (reload the code location if the config changed)")
    run = [k for k in roles.synced if k in selection]
    modes = resolve_modes(production, config, roles)
    columns = resolve_columns(production, config, roles)
    tables = tuple(
        _with_mode(
            replace(
                _plan_table(production.tables[k], staging.get(*k), staging, production.enums),
                encodings_differ=production.encoding != staging.encoding,
            ),
            modes.get(k),
            columns.get(k),
            config,
        )
        for k in run
    )
    by_key = {tp.table_key: tp for tp in tables}
    for tp in tables:
        for fk in tp.target.foreign_keys:
            parent = by_key.get(fk.ref)
            if tp.mode == "merge" and parent is not None and parent.deletes and parent is not tp:
                raise ConfigError(
                    f"{tp.qualified} is in mode merge but its parent {parent.qualified} is in mode mirror: the rows "
                    f"production deleted from {parent.qualified} would take the rows {tp.qualified} keeps with them; "
                    f"set {parent.qualified} to merge as well"
                )

    for tp in tables:
        referencing = [t.qualified for t, _ in staging.referencing(*tp.table_key) if t.key != tp.table_key]
        if not tp.key and referencing:
            raise DriftError(
                f"{tp.qualified} has no primary key nor unique NOT NULL key, so the sync replaces it whole, but "
                f"{', '.join(sorted(set(referencing)))} reference it: give {tp.qualified} a primary key"
            )
    plan = SyncPlan(tables=tables, children_outside=(), parents_outside=(), roles=roles, staging=staging, groups=())
    children: list[Reference] = []
    parents: list[Reference] = []
    for tp in tables:
        for table, fk in staging.referencing(*tp.table_key):
            if plan.role_of(table.key) != "run":
                children.append(Reference(table, fk, plan.role_of(table.key)))
        for fk in tp.target.foreign_keys:
            if plan.role_of(fk.ref) != "run":
                parents.append(Reference(tp.target, fk, plan.role_of(fk.ref)))
    groups = _write_groups(tables)
    by_key = {tp.table_key: tp for tp in tables}
    return replace(
        plan,
        tables=tuple(by_key[k] for group in groups for k in group),
        children_outside=tuple(children),
        parents_outside=tuple(parents),
        groups=tuple(tuple(group) for group in groups),
    )


def _write_groups(tables: tuple[TablePlan, ...]) -> list[list[TableKey]]:
    """The run's tables grouped and ordered by staging's foreign keys among them (partitions' included):
    a table after the tables it references; the tables of a cycle in one group."""
    run = {tp.table_key for tp in tables}
    parents = {tp.table_key: [fk.ref for fk in tp.target.foreign_keys if fk.ref in run] for tp in tables}
    hard = {
        tp.table_key: [fk.ref for fk in tp.target.foreign_keys if fk.ref in run and _must_be_set(tp.target, fk)]
        for tp in tables
    }
    return fk_groups(list(run), parents, hard)
