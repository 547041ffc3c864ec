"""Child processes the platform's tools start (servers, brokers, providers): stopping one
politely, then firmly."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_child(process: subprocess.Popen[Any], grace_s: float = 10.0) -> int:
    """SIGTERM, up to ``grace_s`` to exit, then SIGKILL; its exit status."""
    process.terminate()
    try:
        return process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
