"""Engine errors as Dagster Failures: one clear sentence, retried only when a retry can help."""

import psycopg
from dagster import Failure

from sync_assets.defs.translator import asset_paths
from sync_assets.engine import Endpoint, SelectionError, SyncError, database_message, is_transient, redact


def failure_for(exc: BaseException, *endpoints: Endpoint) -> Failure:
    """One clear sentence for the UI; permanent faults skip the retry policy, transient ones use it."""
    secrets = [s for e in endpoints for s in e.secrets]
    # A database error in PostgreSQL's own words, without the statement it echoes (database_message).
    text = redact(database_message(exc) if isinstance(exc, psycopg.Error) else str(exc), secrets).strip()
    if isinstance(exc, SelectionError) and exc.add:
        # The engine names tables; a user selects assets, whose names may differ ("Sales Data").
        text = redact(f"{exc.found}; add {asset_paths(exc.add)} to the selection", secrets)
    if isinstance(exc, SyncError):
        return Failure(description=text, allow_retries=False)
    if is_transient(exc):
        return Failure(
            description=f"transient fault, staging left unchanged; the run is retried: {text}", allow_retries=True
        )
    if isinstance(exc, psycopg.Error):
        state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        return Failure(
            description=f"the database refused the sync{state}, staging left unchanged: {text}",
            allow_retries=False,
        )
    return Failure(description=f"unexpected {type(exc).__name__}, staging left unchanged: {text}", allow_retries=False)
