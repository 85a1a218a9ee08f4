"""Stream production tables, all from one snapshot, into unlogged shadow tables in staging with COPY."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import psycopg
from psycopg import errors as psycopg_errors
from psycopg import pq, sql

from sync_assets.engine import content, fingerprints
from sync_assets.engine import observe as faults
from sync_assets.engine.connections import Endpoint
from sync_assets.engine.content import Fingerprint, Scope, Side, Unavailable
from sync_assets.engine.errors import about_table
from sync_assets.engine.plan import TableKey, TablePlan
from sync_assets.engine.shadows import create_shadow, key_shadow_name
from sync_assets.engine.sql import cols

PROGRESS_INTERVAL_SECONDS = 10.0

# Text COPY and text comparisons depend on these; pinned on both ends so neither side's defaults change a value.
SESSION_SETTINGS = (
    # Both ends speak UTF-8, whatever the databases' own encodings: the server converts on each side.
    "SET client_encoding = 'UTF8'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET TimeZone = 'UTC'",
    # Row-level security would silently filter what COPY reads; off, PostgreSQL refuses instead.
    "SET row_security = off",
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class CopyStats:
    rows: int  # production's rows in the snapshot
    bytes: int
    seconds: float
    read_rows: int = -1  # rows whose values moved: fewer than `rows` when only changed rows were read
    # Read partly: why production's keys were copied ("" when their fingerprints showed nothing deleted).
    keys_copied: str = "every row was read"
    # The content fingerprint of the snapshot's rows (content.py), which staging's must match.
    snapshot: Fingerprint | Unavailable | None = None
    print_seconds: float = 0.0  # spent taking it

    def __post_init__(self) -> None:
        if self.read_rows < 0:
            object.__setattr__(self, "read_rows", self.rows)


class Cancelled(Exception):
    """Another reader failed; this one stops."""


def begin_snapshot(conn: psycopg.Connection) -> None:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


def export_snapshot(conn: psycopg.Connection) -> str | None:
    """Export the open snapshot for more readers; None where the server cannot (e.g. some standbys)."""
    try:
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    except (psycopg.errors.FeatureNotSupported, psycopg.errors.ObjectNotInPrerequisiteState):
        # The failed statement aborted the transaction: start a fresh snapshot for the single reader.
        conn.execute("ROLLBACK")
        begin_snapshot(conn)
        return None
    return str(row[0]) if row else None


def prepare_session(conn: psycopg.Connection) -> None:
    for stmt in SESSION_SETTINGS:
        conn.execute(stmt)


# Bytes gathered before each write to staging: big enough that libpq sends full packets.
WRITE_BUFFER = 1 << 20
# How often a wait looks up from the socket to see whether the run was cancelled.
WAIT_SLICE_SECONDS = 0.5


def _wait(pgconn: pq.abc.PGconn, cancelled: threading.Event | None, write: bool = False) -> None:
    """Wait for the socket in select(), which lets go of the GIL: the other readers, progress logs and
    signal handlers carry on meanwhile, and a cancelled run stops even while a server stalls."""
    while True:
        readable, writable, _ = select.select(
            [] if write else [pgconn.socket], [pgconn.socket] if write else [], [], WAIT_SLICE_SECONDS
        )
        if readable or writable:
            return
        if cancelled is not None and cancelled.is_set():
            raise Cancelled("stopped while waiting for the server")


def _next_result(conn: psycopg.Connection, cancelled: threading.Event | None) -> pq.abc.PGresult | None:
    pgconn = conn.pgconn
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return pgconn.get_result()
        _wait(pgconn, cancelled)


def _flush(pgconn: pq.abc.PGconn, cancelled: threading.Event | None) -> None:
    while pgconn.flush() == 1:
        _wait(pgconn, cancelled, write=True)


def _start_copy(
    conn: psycopg.Connection, statement: sql.Composable, expected: pq.ExecStatus, cancelled: threading.Event | None
) -> None:
    conn.pgconn.send_query(statement.as_bytes(conn))
    _flush(conn.pgconn, cancelled)
    result = _next_result(conn, cancelled)
    if result is None or result.status != expected:
        raise psycopg_errors.error_from_result(result, encoding=conn.info.encoding)  # type: ignore[arg-type]


def _finish_copy(conn: psycopg.Connection, cancelled: threading.Event | None) -> int:
    """Read the COPY's results; its error as a psycopg exception; the rows it moved."""
    rows, error = 0, None
    while (result := _next_result(conn, cancelled)) is not None:
        if result.status == pq.ExecStatus.FATAL_ERROR and error is None:
            error = psycopg_errors.error_from_result(result, encoding=conn.info.encoding)
        elif result.status == pq.ExecStatus.COMMAND_OK and result.command_tuples is not None:
            rows = int(result.command_tuples)
    if error is not None:
        raise error
    return rows


def _put(pgconn: pq.abc.PGconn, data: bytes | bytearray, cancelled: threading.Event | None) -> None:
    while pgconn.put_copy_data(data) == 0:
        _wait(pgconn, cancelled, write=True)
    _flush(pgconn, cancelled)


def _end(pgconn: pq.abc.PGconn, error: bytes | None, cancelled: threading.Event | None) -> None:
    while pgconn.put_copy_end(error) == 0:
        _wait(pgconn, cancelled, write=True)
    _flush(pgconn, cancelled)


def copy_rows(
    source: psycopg.Connection,
    target: psycopg.Connection,
    query: sql.Composable,
    shadow: sql.Identifier,
    columns: tuple[str, ...],
    binary: bool,
    label: str,
    log: Log,
    cancelled: threading.Event | None = None,
) -> CopyStats:
    """Pipe COPY (query) TO STDOUT from production into COPY FROM STDIN of the shadow: bytes only, no rows.

    psycopg's Copy object costs about a microsecond of Python per row; its libpq layer (psycopg.pq)
    moves the same bytes as fast as a psql pipe, so the loop talks to libpq directly. The connections
    stay non-blocking and every wait happens in select(), outside the GIL.
    """
    fmt = sql.SQL("BINARY" if binary else "TEXT")
    out_stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT {})").format(query, fmt)
    in_stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(shadow, cols(columns), fmt)
    src, dst = source.pgconn, target.pgconn
    started = last_report = time.monotonic()
    nbytes = messages = 0
    _start_copy(source, out_stmt, pq.ExecStatus.COPY_OUT, cancelled)
    _start_copy(target, in_stmt, pq.ExecStatus.COPY_IN, cancelled)
    faults.reach("copy_started")
    try:
        buffer = bytearray()
        get = src.get_copy_data
        while True:
            size, data = get(1)
            if size == 0:  # nothing buffered yet
                _wait(src, cancelled)
                src.consume_input()
                continue
            if size < 0:
                break  # -1: the COPY is over; -2: an error, which _finish_copy raises
            buffer += data
            messages += 1
            if len(buffer) >= WRITE_BUFFER:
                _put(dst, buffer, cancelled)
                nbytes += len(buffer)
                buffer = bytearray()
                faults.reach("copy_streaming")
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled(label)
                now = time.monotonic()
                if now - last_report >= PROGRESS_INTERVAL_SECONDS:
                    last_report = now
                    log(f"copying {label}: {messages:,} rows, {nbytes / 1e6:,.1f} MB so far")
        _finish_copy(source, cancelled)
        if buffer:
            _put(dst, buffer, cancelled)
            nbytes += len(buffer)
    except BaseException:
        with contextlib.suppress(psycopg.Error, OSError, Cancelled):  # the abort we asked for
            _end(dst, b"sync_assets stopped this copy", None)
            _finish_copy(target, None)
        raise
    _end(dst, None, cancelled)
    rows = _finish_copy(target, cancelled)
    return CopyStats(rows=rows, bytes=nbytes, seconds=time.monotonic() - started)


def changed_since(plan: TablePlan) -> sql.Composable:
    """WHERE clause of a partial read: rows changed since the table's watermark (minus the overlap).

    A NULL in the column says nothing about when the row changed, so such rows are always read."""
    assert plan.incremental_column is not None and plan.since is not None
    column = sql.Identifier(plan.incremental_column)
    source_column = plan.source.column(plan.incremental_column)
    since = sql.Literal(plan.since)
    kind = (source_column.underlying or source_column.base_type) if source_column is not None else ""
    if kind == "date":
        # A date holds no time of day, in no particular zone: read back a whole day more.
        since = sql.SQL("({}::date - 1)").format(since)
    elif kind.startswith("timestamp") and "with time zone" not in kind:
        # Written in whatever zone the application's sessions use: a day back covers any offset and DST.
        since = sql.SQL("({}::timestamp - interval '1 day')").format(since)
    recent = sql.SQL("{} >= {}").format(column, since)
    if source_column is not None and source_column.not_null:
        return recent
    return sql.SQL("{} OR {} IS NULL").format(recent, column)


def copy_table(
    source: psycopg.Connection,
    target: psycopg.Connection,
    plan: TablePlan,
    shadow: sql.Identifier,
    log: Log,
    cancelled: threading.Event | None = None,
    prints: bool = True,
) -> CopyStats:
    """Fill the table's shadow from the snapshot: every row, or (partial) the changed rows, plus all keys
    unless their fingerprints show production deleted nothing. prints: take the snapshot's content
    fingerprint of a shadow read whole (a dry run, whose checks do not run, does not)."""
    started = time.monotonic()
    rel = plan.source.relation()
    every_row = sql.SQL("SELECT {} FROM {}").format(cols(plan.columns), rel)
    create_shadow(target, plan, shadow)
    if not plan.partial:
        stats = copy_rows(source, target, every_row, shadow, plan.columns, plan.binary, plan.qualified, log, cancelled)
        target.execute(sql.SQL("ANALYZE {}").format(shadow))
        if not prints:
            return stats
        # The shadow holds exactly the snapshot's rows, in staging's types.
        printed = time.monotonic()
        snapshot = content.take(target, plan, shadow, Scope.STAGING, Side.STAGING)
        return replace(stats, snapshot=snapshot, print_seconds=time.monotonic() - printed)
    changed = copy_rows(
        source,
        target,
        sql.SQL("{} WHERE {}").format(every_row, changed_since(plan)),
        shadow,
        plan.columns,
        plan.binary,
        plan.qualified,
        log,
        cancelled,
    )
    target.execute(sql.SQL("ANALYZE {}").format(shadow))
    # Only production holds every row of the snapshot: its fingerprint is taken there, in the snapshot,
    # in the same scan as the key fingerprint that tells whether rows were deleted (fingerprints.py).
    printed = time.monotonic()
    snapshot = content.take(
        source,
        plan,
        plan.source.relation(),
        Scope.ACROSS,
        Side.PRODUCTION,
        utf8=plan.encodings_differ,
        extra=fingerprints.key_sum(plan.key),
    )
    print_seconds = time.monotonic() - printed
    if isinstance(snapshot, Fingerprint) and snapshot.extra:
        in_production: tuple[int, int] | None = (snapshot.rows, int(snapshot.extra[0]))
    else:
        in_production = fingerprints.production_keys(source, plan)
    in_staging = fingerprints.staging_keys_after(target, plan, shadow) if in_production is not None else None
    if in_production is not None and in_production == in_staging:
        return CopyStats(
            rows=in_production[0],
            bytes=changed.bytes,
            seconds=time.monotonic() - started,
            read_rows=changed.rows,
            keys_copied="",
            snapshot=snapshot,
            print_seconds=print_seconds,
        )
    why = "the key fingerprints differ" if in_staging is not None else "the key columns cannot be hashed here"
    keys = key_shadow_name(shadow)
    create_shadow(target, plan, keys, plan.key)
    every = copy_rows(
        source,
        target,
        sql.SQL("SELECT {} FROM {}").format(cols(plan.key), rel),
        keys,
        plan.key,
        plan.binary,
        f"the keys of {plan.qualified}",
        log,
        cancelled,
    )
    target.execute(sql.SQL("ANALYZE {}").format(keys))
    return CopyStats(
        rows=every.rows,
        bytes=changed.bytes + every.bytes,
        seconds=time.monotonic() - started,
        read_rows=changed.rows,
        keys_copied=why,
        snapshot=snapshot,
        print_seconds=print_seconds,
    )


def extract(
    lead: psycopg.Connection,
    snapshot_id: str | None,
    source: Endpoint,
    target: Endpoint,
    tables: list[TablePlan],
    shadows: dict[TableKey, sql.Identifier],
    workers: int,
    log: Log,
    prints: bool = True,
) -> dict[TableKey, CopyStats]:
    """Copy every planned table into its shadow; several readers share the lead's exported snapshot.

    Shadows are created and loaded in staging sessions of their own and committed there: they are
    invisible to staging's users (bookkeeping schema) and only the swap touches real tables.
    """
    # Largest first, so one long table does not start last.
    queue = sorted(tables, key=lambda t: (-t.source.size_bytes, t.table_key))
    lock = threading.Lock()
    cancelled = threading.Event()
    stats: dict[TableKey, CopyStats] = {}

    def load(reader: psycopg.Connection, writer: psycopg.Connection) -> None:
        prepare_session(writer)
        while not cancelled.is_set():
            with lock:
                if not queue:
                    return
                plan = queue.pop(0)
            shadow = shadows[plan.table_key]
            with about_table("copying", plan.qualified):
                result = copy_table(reader, writer, plan, shadow, log, cancelled, prints)
                faults.reach("table_copied")
            with lock:
                stats[plan.table_key] = result
            what = f"{result.rows:,} rows"
            if plan.partial:
                since = f"{plan.since:%Y-%m-%d %H:%M:%S%z}"
                what = f"{result.read_rows:,} rows changed since {since}, of {what}" + (
                    f", and all their keys ({result.keys_copied})" if result.keys_copied else ", none deleted"
                )
            log(
                f"copied {plan.qualified}: {what}, {result.bytes / 1e6:,.1f} MB in "
                f"{result.seconds:.2f}s ({'binary' if plan.binary else 'text'})"
            )

    def helper() -> None:
        reader = source.connect()
        try:
            reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
            prepare_session(reader)
            with target.connect() as writer:
                load(reader, writer)
        finally:
            reader.close()

    prepare_session(lead)
    # The snapshot's exporting session sits idle in its transaction while other readers finish theirs.
    lead.execute("SET idle_in_transaction_session_timeout = 0")
    n_helpers = min(workers, len(tables)) - 1 if snapshot_id else 0
    if n_helpers <= 0:
        with target.connect() as writer:
            load(lead, writer)
        return stats
    with ThreadPoolExecutor(max_workers=n_helpers + 1, thread_name_prefix="sync-reader") as pool:

        def lead_job() -> None:
            with target.connect() as writer:
                load(lead, writer)

        futures = [pool.submit(lead_job)] + [pool.submit(helper) for _ in range(n_helpers)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            cancelled.set()
        wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in errors if not isinstance(e, Cancelled)]
        if real or errors:
            raise (real or errors)[0]  # type: ignore[misc]
    return stats
