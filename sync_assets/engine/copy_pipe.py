"""The libpq COPY pump: production's COPY TO STDOUT piped into staging's COPY FROM STDIN, bytes only.

psycopg's Copy object costs about a microsecond of Python per row; its libpq layer (psycopg.pq) moves
the same bytes as fast as a psql pipe, so the loop talks to libpq directly. The connections stay
non-blocking and every wait happens in select(), outside the GIL: the other readers, progress logs and
signal handlers carry on meanwhile, and a cancelled run stops even while a server stalls.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from dataclasses import dataclass

import psycopg
from psycopg import errors as psycopg_errors
from psycopg import pq, sql

from sync_assets.engine.observe import Observer, Point
from sync_assets.engine.sql import cols

PROGRESS_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class CopyStats:
    rows: int
    bytes: int
    seconds: float


class Cancelled(Exception):
    """Another reader failed; this one stops."""


# Bytes gathered before each write to staging: big enough that libpq sends full packets.
WRITE_BUFFER = 1 << 20
# How often a wait looks up from the socket to see whether the run was cancelled.
WAIT_SLICE_SECONDS = 0.5


def _wait(pgconn: pq.abc.PGconn, cancelled: threading.Event | None, write: bool = False) -> None:
    """Wait for the socket in select(), which lets go of the GIL."""
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
    observer: Observer,
    cancelled: threading.Event | None = None,
) -> CopyStats:
    """Pipe COPY (query) TO STDOUT from production into COPY FROM STDIN of the shadow (module docstring)."""
    fmt = sql.SQL("BINARY" if binary else "TEXT")
    out_stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT {})").format(query, fmt)
    in_stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(shadow, cols(columns), fmt)
    started = time.monotonic()
    _start_copy(source, out_stmt, pq.ExecStatus.COPY_OUT, cancelled)
    _start_copy(target, in_stmt, pq.ExecStatus.COPY_IN, cancelled)
    observer.reached(Point.COPY_STARTED)
    try:
        nbytes = _stream(source, target.pgconn, label, observer, cancelled)
    except BaseException:
        with contextlib.suppress(psycopg.Error, OSError, Cancelled):  # the abort we asked for
            _end(target.pgconn, b"sync_assets stopped this copy", None)
            _finish_copy(target, None)
        raise
    _end(target.pgconn, None, cancelled)
    rows = _finish_copy(target, cancelled)
    return CopyStats(rows=rows, bytes=nbytes, seconds=time.monotonic() - started)


def _stream(
    source: psycopg.Connection,
    dst: pq.abc.PGconn,
    label: str,
    observer: Observer,
    cancelled: threading.Event | None,
) -> int:
    """Move the COPY's data messages, gathered into WRITE_BUFFER-sized writes; the bytes moved."""
    src = source.pgconn
    last_report = time.monotonic()
    nbytes = messages = 0
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
            observer.reached(Point.COPY_STREAMING)
            if cancelled is not None and cancelled.is_set():
                raise Cancelled(label)
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_SECONDS:
                last_report = now
                observer.info(f"copying {label}: {messages:,} rows, {nbytes / 1e6:,.1f} MB so far")
    _finish_copy(source, cancelled)
    if buffer:
        _put(dst, buffer, cancelled)
        nbytes += len(buffer)
    return nbytes
