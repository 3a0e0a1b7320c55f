"""Durations written like `90s`, `15m`, `4h`, and the two ways a moment in time is written."""

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
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or not number.isascii() or len(number) > 9:
        raise usage(f"{text!r}: not a duration (write it like 90s, 15m or 4h)")
    seconds = int(number) * _UNITS[unit]
    if seconds <= 0:
        raise usage(f"{text!r}: a duration must be positive")
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
