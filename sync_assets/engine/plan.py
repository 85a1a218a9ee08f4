"""Which tables a run syncs, in what order, with which columns; drift found before anything is touched.

One frozen TablePlan (table_plan.py) per table says everything the steps need to know in advance: the
columns copied and how each is compared, the row key, the mode, and from when its rows are read
(watermarks.py sets `since`). What the run then finds out about the table goes into its TableRun
(table_run.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sync_assets.engine.catalog import Catalog, ForeignKey, Identity, Table, TableKey
from sync_assets.engine.config import Mode, SyncConfig
from sync_assets.engine.drift import copied_columns
from sync_assets.engine.errors import ConfigError, DriftError, SelectionError
from sync_assets.engine.graph import fk_groups
from sync_assets.engine.mask_key import MaskKey
from sync_assets.engine.masked import applied, resolve_masks
from sync_assets.engine.modes import with_mode
from sync_assets.engine.roles import Role, Roles, must_be_set, resolve_columns, resolve_modes, resolve_roles
from sync_assets.engine.table_plan import TablePlan


@dataclass(frozen=True)
class Reference:
    """A staging foreign key between a table of the run and a table outside it."""

    table: Table  # the referencing table (staging)
    fk: ForeignKey
    role: Role  # of the table outside the run


@dataclass(frozen=True)
class SyncPlan:
    tables: tuple[TablePlan, ...]  # FK order by staging's foreign keys, parents first
    children_outside: tuple[Reference, ...]  # tables outside the run pointing into it
    parents_outside: tuple[Reference, ...]  # tables of the run pointing out of it
    roles: Roles
    staging: Catalog
    # The tables in write order: each group one table, or the tables of a foreign-key cycle, which are
    # written together (apply.py).
    groups: tuple[tuple[TableKey, ...], ...]

    def table(self, key: TableKey) -> TablePlan:
        return next(t for t in self.tables if t.table_key == key)

    def role_of(self, key: TableKey) -> Role:
        """What a staging table is to this run: in it, or why it is outside it."""
        if any(t.table_key == key for t in self.tables):
            return Role.RUN
        if key in self.roles.preserved:
            return Role.PRESERVE
        if key in self.roles.excluded:
            return Role.EXCLUDE
        if key in self.roles.synced:
            return Role.UNSELECTED
        return Role.STAGING_ONLY

    @property
    def notes(self) -> list[str]:
        return [f"{t.qualified}: {n}" for t in self.tables for n in t.notes]


def _plan_table(source: Table, target: Table | None, staging: Catalog, prod_enums: dict) -> TablePlan:
    if target is None:
        raise DriftError(
            f"staging has no table {source.qualified} (production has it): create it in staging, or list it "
            "under 'exclude'"
        )
    copied, extra, notes = copied_columns(source, target, staging, prod_enums)
    names = tuple(c.name for c in copied)
    key = source.row_key
    if key and not set(key) <= set(names):
        notes.append(f"row key ({', '.join(key)}) is not copied to staging, so the table is replaced whole")
        key = ()
    binary = all(
        c.binary_portable and (s := source.column(c.name)) is not None and s.type == c.type and s.binary_portable
        for c in copied
    )
    always = {c.name for c in copied if c.identity == Identity.ALWAYS}
    if always - set(key):
        notes.append("identity ALWAYS columns outside the key are written on insert only")
    drawn = {s.column: s for s in target.sequences if s.column in extra}
    return TablePlan(
        source=source,
        target=target,
        columns=names,
        key=key,
        binary=binary,
        exact_columns=tuple(c.name for c in copied if c.name not in key and c.exact_equality),
        key_text_columns=tuple(
            c.name for c in copied if c.name in key and not c.exact_equality and c.name not in always
        ),
        text_columns=tuple(c.name for c in copied if c.name not in key and not c.exact_equality),
        update_columns=tuple(c.name for c in copied if c.name not in key and c.name not in always),
        overriding_system_value=bool(always),
        sequences=tuple(s for s in target.sequences if s.column in names),
        extra_columns=tuple(extra),
        notes=tuple(notes),
        mimicked=tuple(drawn.values()),
        unmimicked=tuple(c for c in extra if c in target.sequence_defaults and c not in drawn),
    )


def _selected(roles: Roles, selection: set[TableKey] | None) -> list[TableKey]:
    """The synced tables the run takes, in FK order; SelectionError for a table it cannot take."""
    synced = set(roles.synced)
    wrong = sorted((synced if selection is None else selection) - synced)
    if wrong:
        key = wrong[0]
        why = (
            "is preserved"
            if key in roles.preserved
            else "is excluded"
            if key in roles.excluded
            else "is not a production table of the synced schemas"
        )
        raise SelectionError(
            f"cannot sync {key[0]}.{key[1]}: it {why} (reload the code location if the config changed)"
        )
    return [k for k in roles.synced if selection is None or k in selection]


def _refuse_impossible(tables: tuple[TablePlan, ...], staging: Catalog) -> None:
    """A merge table under a mirror parent, a keyless table others reference: neither can be synced."""
    by_key = {tp.table_key: tp for tp in tables}
    for tp in tables:
        for fk in tp.target.foreign_keys:
            parent = by_key.get(fk.ref)
            if tp.mode == Mode.MERGE and parent is not None and parent.deletes and parent is not tp:
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


def build_plan(
    production: Catalog,
    staging: Catalog,
    config: SyncConfig,
    selection: set[TableKey] | None = None,
    key: MaskKey | None = None,
) -> SyncPlan:
    """Plan a run of the selected synced tables (None: all); raise on drift or a bad selection. key: the
    masking key, where the config masks columns (masked.mask_key)."""
    roles = resolve_roles(production, staging, config)
    run = _selected(roles, selection)
    modes = resolve_modes(production, config, roles)
    columns = resolve_columns(production, config, roles)
    masks = resolve_masks(production, staging, config, roles)
    tables = tuple(
        applied(
            with_mode(
                replace(
                    _plan_table(production.tables[k], staging.get(*k), staging, production.enums),
                    encodings_differ=production.encoding != staging.encoding,
                ),
                modes.get(k),
                columns.get(k),
                config,
            ),
            masks.get(k),
            key,
        )
        for k in run
    )
    _refuse_impossible(tables, staging)
    plan = SyncPlan(tables=tables, children_outside=(), parents_outside=(), roles=roles, staging=staging, groups=())
    children: list[Reference] = []
    parents: list[Reference] = []
    for tp in tables:
        for table, fk in staging.referencing(*tp.table_key):
            if plan.role_of(table.key) != Role.RUN:
                children.append(Reference(table, fk, plan.role_of(table.key)))
        for fk in tp.target.foreign_keys:
            if plan.role_of(fk.ref) != Role.RUN:
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
        tp.table_key: [fk.ref for fk in tp.target.foreign_keys if fk.ref in run and must_be_set(tp.target, fk)]
        for tp in tables
    }
    return fk_groups(list(run), parents, hard)
