"""The per-user service registry (GRPC.md §5): ``<runtime folder>/instances/<pid>.json``
entries of the Quarry processes of this user, read-only from here. An entry counts only
while its pid is alive *and* started at the ``processStart`` it records (a reused pid is
not that Quarry); stale entries are skipped (the server side deletes them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/quarry``, else ``$TMPDIR/quarry-$UID`` (``TMPDIR`` defaulting to
    ``/tmp``): where sockets and the registry live."""
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run:
        return Path(run) / "quarry"
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return Path(tmp) / f"quarry-{os.getuid()}"


@dataclass(frozen=True)
class Instance:
    """One live Quarry process, as its registry entry describes it."""

    pid: int
    data_dir: str
    role: str
    unix: str
    tcp: Optional[str]
    tls: bool
    token: Optional[str]
    status: str
    version: str


def _process_start(pid: int) -> Optional[int]:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks since boot)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def instances() -> List[Instance]:
    """The live instances, owners first, then by pid."""
    folder = runtime_dir() / "instances"
    found: List[Instance] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return found
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            e = json.loads((folder / name).read_text())
            pid = int(e["pid"])
            if _process_start(pid) != int(e["processStart"]):
                continue
            found.append(
                Instance(
                    pid=pid,
                    data_dir=str(e["dataDir"]),
                    role=str(e.get("role", "owner")),
                    unix=str(e["unix"]),
                    tcp=e.get("tcp"),
                    tls=bool(e.get("tls", False)),
                    token=e.get("token"),
                    status=str(e.get("status", "serving")),
                    version=str(e.get("version", "")),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    found.sort(key=lambda i: (i.role != "owner", i.pid))
    return found


def find(data_dir: Optional["os.PathLike[str] | str"] = None) -> Optional[Instance]:
    """A live, serving instance (of ``data_dir`` when given): the folder's owner when
    there is one."""
    want = None if data_dir is None else os.path.realpath(os.fspath(data_dir))
    for i in instances():
        if i.status != "serving":
            continue
        if want is not None and os.path.realpath(i.data_dir) != want:
            continue
        return i
    return None
