"""The asset checks: what they judge and how they say it. Every check has ERROR severity and always
emits a result; a check that cannot judge fails, saying why.

- row_count_matches: staging's rows against the snapshot the run read (or production now, for a table
  the run did not sync); in merge mode staging may keep more.
- content_matches: the same rows, not just as many: content fingerprints (content.py) of staging and of
  the snapshot; in merge mode, of staging's rows that the snapshot has.
- no_orphans: no row of a preserved table references a row staging lacks.
- no_raw_values: on a table with masked columns, no masked value in staging is production's raw value of
  the same row (compared by keyed hashes, raw_values.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from dagster import AssetCheckKey, AssetCheckResult, AssetCheckSeverity, MetadataValue

from sync_assets.engine import Comparison, Fingerprint, RawValues, Table, TableResult, Unavailable, count_orphans

ROW_COUNT_CHECK = "row_count_matches"
CONTENT_CHECK = "content_matches"
NO_ORPHANS_CHECK = "no_orphans"
NO_RAW_VALUES_CHECK = "no_raw_values"

ROW_COUNT_DESCRIPTION = "Staging's rows after the run equal production's rows in the snapshot the run read."
CONTENT_DESCRIPTION = (
    "Staging's rows equal the snapshot's row for row, in every copied column (a count and a sum of 64-bit "
    "row hashes on each side); in merge mode, the rows the snapshot has."
)
NO_ORPHANS_DESCRIPTION = "No row references a row that staging lacks (every foreign key of the table)."
NO_RAW_VALUES_DESCRIPTION = (
    "No masked column in staging holds production's raw value of the same row (compared by keyed hashes; "
    "raw values never leave production)."
)


@dataclass(frozen=True)
class Evidence:
    """What a synced table's checks judge: the snapshot the run read and staging just before COMMIT, or,
    for a table the run did not sync, both sides now."""

    basis: str  # what staging is held against, in words
    production_rows: int
    staging_rows: int
    production: Fingerprint | Unavailable | None
    staging: Fingerprint | Unavailable | None
    mode: str
    triggers_fired: tuple[str, ...] = ()
    problem: str | None = None  # why there is nothing to judge

    @classmethod
    def missing(cls, problem: str) -> Evidence:
        """Both sides could not be read (production down, drift): every check fails, saying why."""
        return cls("production now", 0, 0, None, None, "mirror", problem=problem)

    @classmethod
    def of_run(cls, table: TableResult) -> Evidence:
        return cls.of("the snapshot this run copied", table)

    @classmethod
    def now(cls, comparison: Comparison) -> Evidence:
        return cls.of("production now (this run did not sync the table)", comparison)

    @classmethod
    def of(cls, basis: str, seen: TableResult | Comparison) -> Evidence:
        return cls(
            basis,
            seen.production_rows,
            seen.staging_rows,
            seen.snapshot_print,
            seen.staging_print,
            seen.mode,
            seen.triggers_fired,
        )


def _result(check_key: AssetCheckKey, passed: bool, description: str, metadata: dict) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
    )


def _not_judged(check_key: AssetCheckKey, problem: str) -> AssetCheckResult:
    return _result(check_key, False, f"not checked: {problem}", {})


def row_count_check(check_key: AssetCheckKey, ev: Evidence) -> AssetCheckResult:
    if ev.problem is not None:
        return _not_judged(check_key, ev.problem)
    merge = ev.mode == "merge"
    # merge keeps rows production deleted: staging holds at least production's rows.
    passed = ev.staging_rows >= ev.production_rows if merge else ev.production_rows == ev.staging_rows
    description = (
        f"staging has {ev.staging_rows:,} rows, {ev.basis} has {ev.production_rows:,}"
        + (" (mode merge: staging may keep more)" if merge else "")
        + ("" if passed else f" (difference {ev.staging_rows - ev.production_rows:+,})")
    )
    return _result(
        check_key,
        passed,
        description,
        {
            "staging_rows": MetadataValue.int(ev.staging_rows),
            "production_rows": MetadataValue.int(ev.production_rows),
            "difference": MetadataValue.int(ev.staging_rows - ev.production_rows),
        },
    )


def content_check(check_key: AssetCheckKey, ev: Evidence) -> AssetCheckResult:
    if ev.problem is not None:
        return _not_judged(check_key, ev.problem)
    merge = ev.mode == "merge"
    unavailable = next((p for p in (ev.production, ev.staging) if not isinstance(p, Fingerprint)), None)
    if unavailable is not None or not isinstance(ev.production, Fingerprint) or not isinstance(ev.staging, Fingerprint):
        reason = unavailable.reason if isinstance(unavailable, Unavailable) else "no fingerprint was taken"
        return _result(check_key, False, f"content not compared: {reason}", {"matches": MetadataValue.bool(False)})
    snapshot, staging = ev.production, ev.staging
    passed = staging.matches(snapshot)
    whose = "staging's rows with the snapshot's keys" if merge else "staging's rows"
    if passed:
        description = f"{whose} ({staging.rows:,}) equal {ev.basis}, row for row, in every copied column"
        if merge and ev.staging_rows > staging.rows:
            description += f"; staging keeps {ev.staging_rows - staging.rows:,} more (mode merge)"
    elif staging.rows != snapshot.rows:
        description = f"{whose} differ from {ev.basis}: {staging.rows:,} rows against {snapshot.rows:,}"
    else:
        description = (
            f"{whose} differ from {ev.basis} in content: as many rows ({staging.rows:,}), other values in some"
        )
    if not passed and ev.triggers_fired:
        description += (
            f"; staging's own triggers {', '.join(ev.triggers_fired)} fired on the rows the sync wrote and may "
            "have changed them (staging_triggers)"
        )
    return _result(
        check_key,
        passed,
        description,
        {
            "matches": MetadataValue.bool(passed),
            "staging_rows_compared": MetadataValue.int(staging.rows),
            "snapshot_rows": MetadataValue.int(snapshot.rows),
            "fingerprint": MetadataValue.text(f"{staging.method} row hashes, {staging.scope}"),
        },
    )


def raw_values_check(check_key: AssetCheckKey, judged: RawValues | str) -> AssetCheckResult:
    """judged: the counts per masked column, or why they could not be taken."""
    if isinstance(judged, str):
        return _not_judged(check_key, judged)
    raw = {column: n for column, n in judged.found.items() if n}
    passed = not raw
    if passed:
        description = f"none of staging's {judged.rows:,} rows holds a raw value in {', '.join(judged.found)}"
    else:
        description = "staging holds production's raw values: " + ", ".join(
            f"{n:,} row(s) in {column}" for column, n in raw.items()
        )
    metadata = {f"raw_in_{column}": MetadataValue.int(n) for column, n in judged.found.items()}
    return _result(check_key, passed, description, {"rows_judged": MetadataValue.int(judged.rows), **metadata})


def orphans_check(conn: psycopg.Connection, table: Table, check_key: AssetCheckKey) -> AssetCheckResult:
    counted = []
    try:
        with conn.transaction(), conn.cursor() as cur:
            counted = [count_orphans(cur, table.fk_relation(fk), fk) for fk in table.foreign_keys]
    except psycopg.Error as exc:
        return _result(
            check_key, False, f"could not check {table.qualified} in staging: {str(exc).splitlines()[0]}", {}
        )
    total = sum(c.rows for c in counted)
    bad = [c for c in counted if c.rows]
    description = (
        f"every row of {table.qualified} finds its parent rows in staging"
        if not bad
        else "; ".join(
            f"{c.rows} row(s) reference missing {c.parent} rows via {c.constraint} "
            f"({', '.join(c.fk.columns)} e.g. {', '.join(str(s) for s in c.sample)})"
            for c in bad
        )
    )
    return _result(
        check_key,
        total == 0,
        description,
        {
            "orphan_rows": MetadataValue.int(total),
            "foreign_keys_checked": MetadataValue.int(len(counted)),
            **{f"orphans_via_{c.constraint}": MetadataValue.int(c.rows) for c in counted},
        },
    )
