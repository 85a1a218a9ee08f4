"""One table's record through a run: its frozen plan, its shadow, and what each step found and did.

The extract fills in what it read, the swap what it changed and what staging then held; the Dagster
layer reads the same object for metadata and checks. No step keeps a table's state anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from sync_assets.engine.catalog import TableKey
from sync_assets.engine.compare import Buckets
from sync_assets.engine.config import Mode
from sync_assets.engine.connections import Side
from sync_assets.engine.content import Fingerprint, Unavailable
from sync_assets.engine.shadows import Keys, ShadowName, snapshot_rows
from sync_assets.engine.table_plan import TablePlan


@dataclass
class TableRun:
    plan: TablePlan
    shadow: ShadowName
    # -- the extract
    keys: Keys = Keys.NOT_NEEDED
    keys_why: str = ""  # why every key was copied
    buckets: Buckets | None = None  # compared by keyed row hashes: which buckets differ (compare.py)
    production_rows: int = 0  # rows in the snapshot
    read_rows: int = 0  # rows whose values moved: fewer than production_rows when only changes were read
    bytes: int = 0
    copy_seconds: float = 0.0
    # The content fingerprint of the snapshot's rows (content.py), which staging's must match.
    snapshot_print: Fingerprint | Unavailable | None = None
    print_seconds: float = 0.0  # spent taking the snapshot's and staging's fingerprints
    # -- the swap: rows that differ between staging and the snapshot, as it found and applied them
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    replaced_whole: bool = False
    rewritten: int = 0  # rows written by replacing a keyless table whole: more than the rows that differ
    staging_rows: int = 0  # rows in staging after COMMIT
    staging_print: Fingerprint | Unavailable | None = None  # taken just before COMMIT
    triggers_fired: tuple[str, ...] = ()  # staging's own triggers that fired on the rows written
    run_notes: list[str] = field(default_factory=list)  # what the run found out, beside the plan's notes

    @property
    def key(self) -> TableKey:
        return self.plan.table_key

    @property
    def qualified(self) -> str:
        return self.plan.qualified

    @property
    def key_shadow(self) -> ShadowName:
        return self.shadow.keys

    @property
    def notes(self) -> tuple[str, ...]:
        return (*self.plan.notes, *self.run_notes)

    @property
    def mode(self) -> Mode:
        return self.plan.mode

    def in_snapshot(self, columns: tuple[str, ...]) -> sql.Composable:
        """A relation (for FROM) with these columns of every row the snapshot has (shadows.snapshot_rows)."""
        same = self.buckets.holds(self.plan, Side.STAGING, differ=False) if self.buckets is not None else None
        return snapshot_rows(self.plan, self.shadow, self.keys, columns, same)

    def forget_changes(self) -> None:
        """Before an attempt at the writes (apply.py may make two)."""
        self.inserted = self.updated = self.deleted = self.rewritten = 0
        self.replaced_whole = False
