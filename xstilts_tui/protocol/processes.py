"""Whether a process still runs, as both planes need to know it (no torch here)."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while the process runs. One that has ended but was not reaped (a zombie) is
    gone all the same; a child of this process that has ended is reaped here."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not a child of this process
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
