"""The demo command as a newcomer runs it, small and without serving: seed, sync once, summary, stop."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from sync_assets.demo.__main__ import PASSWORDS
from sync_assets.demo.localpg import LocalPostgres, free_port
from sync_assets_tests.conftest import ROOT

pytestmark = pytest.mark.slow

# The values that single a person out wherever they appear. Names and birth dates are not among them: a
# masked name is drawn from word lists and may be another row's real one (no_raw_values judges them per row).
_PERSONAL = """
SELECT email, phone FROM travel_agents
UNION ALL SELECT passenger_email, NULL FROM bookings
UNION ALL SELECT payload #>> '{customer,email}', payload #>> '{customer,name}' FROM webhook_events
"""


def run_demo(folder: Path, pg_port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sync_assets.demo", "--no-serve", "--scale", "0.02", "--dir", str(folder),
         "--pg-port", str(pg_port)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture
def folder() -> Iterator[Path]:
    """A data folder the server's own user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="sync_assets_demo_test_"))
    base.chmod(0o755)
    yield base / "demo"
    shutil.rmtree(base, ignore_errors=True)


def test_demo_seeds_syncs_summarises_and_stops(folder: Path) -> None:
    port = free_port()
    first = run_demo(folder, port)
    out = first.stdout + first.stderr
    assert "; using " not in out  # the folder asked for, not a fallback
    assert first.returncode == 0, out[-4000:]
    assert "[demo] filling production (scale 0.02)" in out
    assert "[demo] sync succeeded in " in out and "29 of 29 checks passed" in out
    assert "public/pricing  5950" in out  # the per-table summary
    # Staging's older copy held the agents raw: the first masked sync rewrote every one of them.
    assert "public/travel_agents    21         1       20        0" in out
    assert "[demo] stopping PostgreSQL" in out
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)

    again = run_demo(folder, port)  # reuses the data: nothing seeded twice, nothing left to change
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-4000:]
    assert "filling" not in out
    assert "public/pricing  5950         0        0        0" in out
    assert "public/bookings   794         0        0        0" in out  # masked alike: nothing rewritten
    assert "29 of 29 checks passed" in out

    # Staging holds none of production's personal data (the masked columns' raw values).
    server = LocalPostgres(folder / "postgres", port, PASSWORDS["postgres"])
    server.start()
    try:
        with server.connect("production") as prod:
            raw = [v for row in prod.execute(_PERSONAL) for v in row if v]
        with server.connect("staging") as staging:
            held = " ".join(
                str(row) for table in ("travel_agents", "bookings", "webhook_events")
                for row in staging.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table)))
            )  # fmt: skip
    finally:
        server.stop()
    assert len(raw) > 1000 and [v for v in raw if v in held] == []
