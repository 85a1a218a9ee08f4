"""What a run says (info, warning) and the named points it passes, through one object handed down the run.

The engine never logs or reads the environment itself: the caller's Observer decides where lines go
(Python logging by default, Dagster's run log in the Dagster layer, a list in the tests).

Failpoints: a fault means something only at a known moment, since a SIGKILL or a terminated backend half
a statement later tests another case, or none. An observer built with `Pause(point, folder)` holds the
first thread reaching that point: it writes <folder>/paused (holding the process id) and waits until
<folder>/resume exists; then the run goes on, into whatever the test did meanwhile. Tests in the same
process pass a Pause; tests that strike a subprocess (a run worker they SIGKILL) set
SYNC_ASSETS_PAUSE_AT=<point>@<folder>, which `Observer.from_environment` reads once, when the run starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

PAUSE_ENV = "SYNC_ASSETS_PAUSE_AT"


class Point(StrEnum):
    """The named points of a run, in the order it passes them."""

    CONNECTED = "connected"  # both sessions open
    LOCKED = "locked"  # the staging advisory lock held
    SNAPSHOT_TAKEN = "snapshot_taken"  # production's snapshot begun and exported
    PLANNED = "planned"  # catalogs read, plan built
    COPY_STARTED = "copy_started"  # a table's COPY running on both sides, no row sent yet
    COPY_STREAMING = "copy_streaming"  # a table's first rows written into its shadow
    COMPARED = "compared"  # a table's buckets compared by hashes (compare.py), no row read yet
    FETCHED = "fetched"  # the rows of its differing buckets in its shadow
    TABLE_COPIED = "table_copied"  # a table's shadow filled
    EXTRACTED = "extracted"  # every shadow filled, production's snapshot still open
    SWAP_BEGUN = "swap_begun"  # staging's swap transaction open
    ORPHANS_HANDLED = "orphans_handled"  # rows outside the run backed up and removed
    DIFFS_COMPUTED = "diffs_computed"  # the keys to insert, update and delete found
    UPSERTED = "upserted"  # rows inserted and updated
    DELETED = "deleted"  # rows deleted
    FOREIGN_KEYS_CHECKED = "foreign_keys_checked"  # the written rows' foreign keys checked (replica mode)
    CONSTRAINTS_CHECKED = "constraints_checked"  # deferred constraints checked
    SEQUENCES_ADVANCED = "sequences_advanced"  # owned sequences moved
    BOOKKEEPING_WRITTEN = "bookkeeping_written"  # incremental state written; COMMIT is next
    COMMITTED = "committed"  # the swap committed; shadows not yet dropped
    FINISHED = "finished"  # shadows dropped, sessions closed
    REPORTED = "reported"  # Dagster: the run's result turned into materializations


POINTS = tuple(p.value for p in Point)


@dataclass
class Pause:
    """Hold the first thread that reaches `point` until the test lets it go (module docstring)."""

    point: Point
    folder: Path
    _fired: bool = field(default=False, init=False)
    _taken: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_environment(cls) -> Pause | None:
        spec = os.environ.get(PAUSE_ENV)
        if not spec:
            return None
        wanted, _, folder = spec.partition("@")
        return cls(Point(wanted), Path(folder))

    def hold(self, point: Point) -> None:
        if point != self.point:
            return
        with self._taken:  # several readers pass the extract's points: only the first pauses
            if self._fired:
                return
            self._fired = True
        (self.folder / "paused").write_text(str(os.getpid()))
        while not (self.folder / "resume").exists():
            time.sleep(0.02)


class Observer:
    """Where a run's lines go (Python logging here; subclasses send them elsewhere) and its failpoints."""

    def __init__(self, pause: Pause | None = None) -> None:
        self.pause = pause
        self._log = logging.getLogger("sync_assets")

    @classmethod
    def from_environment(cls) -> Observer:
        return cls(Pause.from_environment())

    def info(self, message: str) -> None:
        self._log.info(message)

    def warning(self, message: str) -> None:
        self._log.warning(message)

    def reached(self, point: Point) -> None:
        if self.pause is not None:
            self.pause.hold(point)
