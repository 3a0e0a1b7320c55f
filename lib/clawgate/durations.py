"""Durations written like `90s`, `15m`, `4h`, or compound, largest unit first (`1h30m`, `2m30s`),
and the two ways a moment in time is written."""

import time

from .errors import usage


def stamp(when: float) -> str:
    """A moment as every record and message writes it: ISO 8601, UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def clock(when: float) -> str:
    """The time of day only, for `until ...` after a grant of at most a few hours."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(when))

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse(text: str) -> int:
    text = text.strip()
    seconds, number, units_left = 0, "", "hms"  # each unit at most once, largest first
    for ch in text[:32]:
        if ch in "0123456789":
            number += ch
        elif ch in units_left and number and len(number) <= 9:
            seconds += int(number) * _UNITS[ch]
            number, units_left = "", units_left[units_left.index(ch) + 1:]
        else:
            seconds = -1
            break
    if number or not text or len(text) > 32 or seconds < 0:
        raise usage(f"{text[:40]!r}: not a duration (write it like 90s, 15m, 4h or 1h30m)")
    if seconds <= 0:
        raise usage(f"{text[:40]!r}: a duration must be positive")
    return seconds


def show(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
