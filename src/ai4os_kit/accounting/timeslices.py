"""Split usage intervals at UTC day and month boundaries."""

from __future__ import annotations

import calendar
import datetime as dt
DAY = 86_400


def month_bounds(year: int, month: int) -> tuple[int, int]:
    """[first second, first second of next month) of a UTC calendar month."""
    first = calendar.timegm((year, month, 1, 0, 0, 0))
    nxt = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
    return first, nxt


def overlap(start: int, end: int, lo: int, hi: int) -> int:
    return max(0, min(end, hi) - max(start, lo))


def iso_day(stamp: int) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d")
