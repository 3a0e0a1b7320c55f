"""Reading what a person types: hidden on a terminal, a line at a time from a pipe."""

import sys

from .errors import usage

MAX_LINE = 4096


def line(label: str, hidden: bool = False) -> str:
    """One line from the terminal (no echo when hidden) or, without one, from stdin."""
    if sys.stdin.isatty():
        if hidden:
            import getpass

            return getpass.getpass(f"{label}: ")
        sys.stderr.write(f"{label}: ")
        sys.stderr.flush()
    text = sys.stdin.readline(MAX_LINE + 1)
    if not text:
        raise usage(f"{label}: no input")
    if len(text) > MAX_LINE:
        raise usage(f"{label}: input too long")
    return text.rstrip("\r\n")


def code(label: str = "code from your authenticator") -> str:
    return line(label, hidden=False).strip()
