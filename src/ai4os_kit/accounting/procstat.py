"""CPU time and peak resident memory of this process, as the accounting runs report them for their helpers."""

from __future__ import annotations

import resource


def cpu_seconds() -> float:
    """User and system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_mb(field: str) -> float | None:
    """A memory figure of Linux's /proc/self/status in MB; None where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_mb() -> float:
    """Peak resident memory of this process in MB (Linux's VmHWM; ru_maxrss where there is no /proc).

    ``getrusage``'s ru_maxrss survives exec: in a spawned process it starts at
    the parent's resident size at the fork before the exec, so a helper
    spawned by a large parent would report the parent's size as its own.
    """
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory of this process now in MB (0 where there is no /proc)."""
    return _status_mb("VmRSS") or 0.0
