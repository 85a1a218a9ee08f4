"""A tiny run of the benchmark, so it cannot rot: every contender measured, staging verified equal."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sync_assets_tests.conftest import ROOT

CONTENDERS = [
    "raw pipe", "pg_dump → pg_restore", "sync full", "resync after 1%", "incremental after 1%",
    "resync by hashes after 1%", "sync full, no content check", "sync full, masked",
    "floor: raw pipe into keyed tables", "raw pipe, slow link", "resync by hashes after 1%, slow link",
]  # fmt: skip


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Not under tmp_path: as root the servers run as another user, who must be able to reach their folder.
    servers = Path(tempfile.mkdtemp(prefix="sync_assets_bench_"))
    servers.chmod(0o755)
    try:
        done = subprocess.run(
            [sys.executable, "benchmarks/run.py", "--scales", "0.002", "--reps", "1", "--dir", str(servers),
             "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        shutil.rmtree(servers, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "results.md").read_text().splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert [r[2] for r in rows] == CONTENDERS
    assert all(float(r[3]) > 0 for r in rows)  # seconds
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    share = header.index("content check share")
    # only the syncs fingerprint content, and not the one that has it switched off
    assert [r[share] != "-" for r in rows] == [False, False, True, True, True, True, False, True, False, False, True]
    read = [r[header.index("read share of table data")] for r in rows]
    # The raw pipe reads all of production's table data; the resync by hashes reads a part of it.
    assert read[0] == "100.0%" and read[5] != "-" and float(read[5].rstrip("%")) < float(read[3].rstrip("%"))
    # The plot needs matplotlib, which only `make bench` installs (extra "bench").
    assert (out / "results.png").exists() == (importlib.util.find_spec("matplotlib") is not None)
