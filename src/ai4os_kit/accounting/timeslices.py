"""Split usage intervals at UTC day and month boundaries."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Iterator

DAY = 86_400


def days(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(day start as Unix seconds, seconds in that day) for each UTC day [start, end) touches."""
    day = start - start % DAY
    while day < end:
        lo, hi = max(start, day), min(end, day + DAY)
        if hi > lo:
            yield day, hi - lo
        day += DAY


def month_bounds(year: int, month: int) -> tuple[int, int]:
    """[first second, first second of next month) of a UTC calendar month."""
    first = calendar.timegm((year, month, 1, 0, 0, 0))
    nxt = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
    return first, nxt


def overlap(start: int, end: int, lo: int, hi: int) -> int:
    return max(0, min(end, hi) - max(start, lo))


def iso_day(stamp: int) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d")
