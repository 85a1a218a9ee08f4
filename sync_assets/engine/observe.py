"""Named points of a run where the fault-injection tests strike (sync_assets_tests/test_faults.py).

A fault means something only at a known moment: a SIGKILL or a terminated backend half a statement
later tests another case, or none. With SYNC_ASSETS_PAUSE_AT=<point>@<folder> in a run's environment,
the first thread reaching <point> writes <folder>/paused (holding the process id) and waits there until
<folder>/resume exists; then the run goes on, into whatever the test did meanwhile. Without the
variable (always, outside those tests) reach() returns at once.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PAUSE_ENV = "SYNC_ASSETS_PAUSE_AT"

# In the order a run passes them.
POINTS = (
    "connected",  # both sessions open
    "locked",  # the staging advisory lock held
    "snapshot_taken",  # production's snapshot begun and exported
    "planned",  # catalogs read, plan built
    "copy_started",  # a table's COPY running on both sides, no row sent yet
    "copy_streaming",  # a table's first rows written into its shadow
    "table_copied",  # a table's shadow filled
    "extracted",  # every shadow filled, production's snapshot still open
    "swap_begun",  # staging's swap transaction open
    "orphans_handled",  # rows outside the run backed up and removed
    "diffs_computed",  # the keys to insert, update and delete found
    "upserted",  # rows inserted and updated
    "deleted",  # rows deleted
    "foreign_keys_checked",  # the written rows' foreign keys checked (replica mode)
    "constraints_checked",  # deferred constraints checked
    "sequences_advanced",  # owned sequences moved
    "bookkeeping_written",  # incremental state written; COMMIT is next
    "committed",  # the swap committed; shadows not yet dropped
    "finished",  # shadows dropped, sessions closed
    "reported",  # Dagster: the run's result turned into materializations
)

_taken = threading.Lock()
_fired: set[str] = set()


def reach(point: str) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    assert point in POINTS, point
    wanted, _, folder = spec.partition("@")
    if wanted != point:
        return
    with _taken:  # several readers pass the extract's points: only the first pauses
        if point in _fired:
            return
        _fired.add(point)
    here = Path(folder)
    (here / "paused").write_text(str(os.getpid()))
    while not (here / "resume").exists():
        time.sleep(0.02)
