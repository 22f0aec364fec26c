"""Whether a controller holds the campaign, found without touching its lock.

`loopctl status` asks by taking a shared lock on the campaign's lock file for an instant
(:func:`loopctl.store.is_locked`). A controller starting in that instant finds the lock
taken and refuses to start. Once per command that is a negligible risk; the dashboard asks
on every update of every open page, for days, so it must not ask that way.

Instead it reads what the kernel and the controller already expose:

- on Linux, ``/proc/locks``, the kernel's list of every lock held: a controller holds an
  exclusive ``flock`` on the lock file, listed by the file's device and inode. This is the
  same fact the lock probe learns, read without taking anything;
- elsewhere (no ``/proc/locks``), the holder the controller wrote into the lock file
  (``pid N on HOST``): running if that process is alive on this machine. A pid reused by
  another program after a crash reads as running; the campaign's own record (the
  ``controller`` meta) decides for a holder on another machine.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from loopctl.store import lock_path

PROC_LOCKS = Path("/proc/locks")


def controller_running(db: str, recorded_running: bool = False) -> bool:
    """True while a writer (a controller, or an open :class:`loopctl.Campaign`) holds
    ``db``. ``recorded_running``: what the campaign's ``controller`` meta says, the answer
    only when neither the kernel's lock list nor a local holder can tell."""
    lock = lock_path(db)
    try:
        st = os.stat(lock)
    except OSError:
        return False  # no lock file: nothing ever held this campaign for writing
    held = _held_per_proc_locks(st.st_dev, st.st_ino)
    if held is not None:
        return held
    return _holder_alive(lock, recorded_running)


def _held_per_proc_locks(dev: int, ino: int) -> bool | None:
    """Whether ``/proc/locks`` lists an exclusive flock on the file; None: no such list."""
    try:
        text = PROC_LOCKS.read_text()
    except OSError:
        return None
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    for line in text.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4711 fe:00:2146414 0 EOF" (blocked waiters: "1: -> ...")
        fields = line.split()
        if len(fields) >= 6 and fields[1:4:2] == ["FLOCK", "WRITE"] and fields[5] == want:
            return True
    return False


def _holder_alive(lock: str, recorded_running: bool) -> bool:
    try:
        with open(lock, "rb") as f:
            said = f.read(200).decode(errors="replace").split()
    except OSError:
        return recorded_running
    # "pid 4711 on lab-pc", written by the holder when it took the lock
    if len(said) != 4 or said[0] != "pid" or said[2] != "on" or not said[1].isdigit():
        return recorded_running
    if said[3] != socket.gethostname():
        return recorded_running
    try:
        os.kill(int(said[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    except OSError:
        return recorded_running
    return True
