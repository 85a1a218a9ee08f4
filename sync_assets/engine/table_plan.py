"""One table's frozen plan: everything the steps need to know about it before any row moves."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from psycopg import sql

from sync_assets.engine.catalog import ColumnSequence, Table, TableKey
from sync_assets.engine.config import Mode
from sync_assets.engine.mask_spec import Mask


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
    mode: Mode = Mode.MIRROR  # merge: rows production no longer has stay in staging
    incremental_column: str | None = None  # mode incremental: when a row last changed
    # Mode incremental: read only rows whose column is at least this (None: read every row).
    since: datetime | None = None
    # Why a resync reads the table whole rather than comparing keyed row hashes (compare.py); None: it
    # compares them wherever staging already holds rows.
    unhashed: str | None = "not chosen"
    # Masked columns (masked.py): their masks, and the expressions production selects in their place.
    masks: tuple[tuple[str, Mask], ...] = ()
    # Not in repr: the expressions hold keys derived from the masking key (as SQL literals).
    masked: tuple[tuple[str, sql.Composable], ...] = field(default=(), repr=False)

    def selected(self, column: str) -> sql.Composable | None:
        """What production selects for a masked column, or None where the column goes out as it is."""
        return dict(self.masked).get(column)

    @property
    def deletes(self) -> bool:
        return self.mode != Mode.MERGE

    @property
    def partial(self) -> bool:
        """Only rows changed since the watermark are read; fingerprints, then keys, find the deletes."""
        return self.mode == Mode.INCREMENTAL and self.since is not None

    @property
    def by_hashes(self) -> bool:
        return self.unhashed is None

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

    def noted(self, note: str) -> TablePlan:
        return replace(self, notes=(*self.notes, note))
