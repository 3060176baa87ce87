"""What this process holds, what the function may hold, and which files a session keeps mapped: read from
/proc and the cgroup, where a Linux kernel (Lambda's, a container's) publishes them.

Off Linux the readings are absent (None or 0) and the budgets fall back to the manifest's byte counts.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC_STATUS = Path("/proc/self/status")
PROC_MAPS = Path("/proc/self/maps")
PROC_MEMINFO = Path("/proc/meminfo")
# cgroup v2, then v1: the limit a container (Lambda's microVM, Docker, a CI runner) puts on its processes.
CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)
# cgroup v1 writes "no limit" as a page-rounded 2^63; anything past this is no limit at all.
NO_CGROUP_LIMIT = 1 << 60


def status_bytes(field: str) -> int | None:
    """One "kB" line of /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile), in bytes."""
    try:
        with PROC_STATUS.open() as lines:
            for line in lines:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        return None
    return None


def resident_bytes() -> int:
    """This process's resident memory now (VmRSS): anonymous memory and the file pages it has mapped in."""
    return status_bytes("VmRSS") or 0


def machine_memory_bytes() -> int | None:
    """The memory this process may use when Lambda does not say: the cgroup's limit, else MemTotal."""
    for path in CGROUP_LIMITS:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < NO_CGROUP_LIMIT:
            return int(raw)
    try:
        with PROC_MEMINFO.open() as lines:
            for line in lines:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        return None
    return None  # pragma: no cover - every /proc/meminfo has MemTotal


def mapped_file_bytes(folder: Path) -> int | None:
    """Bytes of the files under `folder` that this process has mapped, whole files: a mapping of any part
    keeps the whole file's blocks allocated after it is deleted, until the mapping goes. None: no
    /proc/self/maps to read."""
    root = str(folder.resolve()) + os.sep
    mapped: set[str] = set()
    try:
        with PROC_MAPS.open() as lines:
            for line in lines:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith(root):
                    mapped.add(fields[5].rstrip("\n"))
    except OSError:  # pragma: no cover - not Linux
        return None
    total = 0
    for path in mapped:
        try:
            total += os.stat(path).st_size
        except OSError:  # a name with a trailing " (deleted)" or an odd character: not ours to count
            continue
    return total
