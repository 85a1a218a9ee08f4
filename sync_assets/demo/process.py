"""Starting and stopping `dagster` commands as a whole process group (the webserver, daemon and code server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO


def dagster_cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dagster")), *args]


def dagster_dev(port: int, workspace: Path) -> list[str]:
    """The UI and the daemon for the workspace's code location, on 127.0.0.1 only."""
    return dagster_cli("dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port))


def _default_signals() -> None:
    """In the child: a parent started in the background passes SIGINT on ignored, and dagster dev then
    ignores Ctrl-C and SIGTERM; give it the default handlers back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_group(args: list[str], env: dict[str, str], cwd: Path, output: IO | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT if output else None,
        start_new_session=True, preexec_fn=_default_signals,
    )  # fmt: skip


def stop_group(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Ctrl-C for the whole group, as a terminal would send it; a kill if it does not end in time."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
