"""Reading what a person types: hidden on a terminal, a line at a time from a pipe."""

import sys

from .errors import usage

MAX_LINE = 4096


def line(label: str, hidden: bool = False) -> str:
    """One line from the terminal (no echo when hidden) or, without one, from stdin."""
    if sys.stdin.isatty():
        if hidden:
            import getpass

            try:
                return getpass.getpass(f"{label}: ")
            except EOFError:  # Ctrl-D: the person chose to type nothing
                sys.stderr.write("\n")
                raise usage(f"{label}: no input") from None
        sys.stderr.write(f"{label}: ")
        sys.stderr.flush()
    text = sys.stdin.readline(MAX_LINE + 1)
    if not text:
        if sys.stdin.isatty():
            sys.stderr.write("\n")  # Ctrl-D left the cursor on the prompt line
        raise usage(f"{label}: no input")
    if len(text) > MAX_LINE:
        raise usage(f"{label}: input too long")
    return text.rstrip("\r\n")


def code(label: str = "code from your authenticator") -> str:
    return line(label, hidden=False).strip()


def yes(question: str) -> bool:
    """Ask on the terminal, `[y/N]`: only y or yes (any case) says yes; Ctrl-D or Enter say no."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline(MAX_LINE + 1)
    if not answer:
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")
