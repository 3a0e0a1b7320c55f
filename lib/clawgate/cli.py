"""The program runner every clawgate program shares: run(main), `clawgate: reason` + exit code, the parser.

Each program's main() reads top to bottom: load the config fixed by where it is
installed, refuse an unsafe installation, identify the caller, then act. The caller and the
context it acts in are context.py's; they are named here too, for the programs.
"""

import os
import sys

from . import guard
from .context import Caller, Context, context, identify, require_owner
from .guard import quietly
from .errors import BROKEN_PIPE, IO_ERROR, UNSAFE, USAGE, ClawgateError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Callable, TextIO

__all__ = ["Caller", "Context", "context", "identify", "require_owner", "parser", "run", "say"]


def run(main: "Callable[[list[str]], int | None]", *, fast_exit: bool = False, owner_side: bool = True) -> None:
    """Call main(argv) and exit with its code; every failure becomes one line, never a traceback.

    guard.start() comes first: descriptors, job-control signals and limits the caller handed us.
    owner_side=False (only `run`, which runs as its caller): descriptors only.
    fast_exit: leave with os._exit once stdout and stderr are flushed, skipping the interpreter's
    teardown (freeing every module: ~1.5 ms, a tenth of a `get` through sudo). Only for programs
    that leave nothing else behind: no atexit handler, no open file object, no child.
    """
    os.umask(0o077)
    try:
        guard.start(owner_side)
        code = main(sys.argv[1:]) or 0
    except ClawgateError as err:
        if err.message:  # empty: already said (run relays the broker's own line)
            say(err.message)
        code = err.code
    except KeyboardInterrupt:
        quietly(lambda: sys.stderr.write("\n"))
        code = 130
    except SystemExit as err:  # argparse --help, or a program's own exit: its code, not a traceback
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else USAGE)
    except BrokenPipeError:
        code = BROKEN_PIPE  # our reader left: not a refusal, and nothing to say to anyone
    except OSError as err:
        say(f"{err.strerror or 'system error'}{': ' + err.filename if isinstance(err.filename, str) else ''}")
        code = IO_ERROR
    except Exception as err:  # noqa: BLE001 - a traceback could carry a secret value
        say(f"internal error ({type(err).__name__}); nothing was changed")
        code = UNSAFE
    for stream in (sys.stdout, sys.stderr):  # flush here, so a closed or broken one cannot raise at exit
        if not quietly(stream.flush):
            code = code or BROKEN_PIPE
            quietly(_to_devnull(stream))
    if fast_exit:
        os._exit(code)
    sys.exit(code)


def say(message: str) -> None:
    """display.say, the one `clawgate: reason` line; imported only when there is something to
    say (a `get` that succeeds says nothing)."""
    from .display import say as say_line

    say_line(message)


def _to_devnull(stream: "TextIO") -> "Callable[[], object]":
    return lambda: os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def parser(prog: str, description: str):
    """An argparse parser whose errors become one `clawgate: ...` line and exit 2."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
            raise ClawgateError(USAGE, f"{prog}: {message}")

        def format_help(self) -> str:  # the one help table, the same words as `clawgate help VERB`
            from . import helptext

            found = helptext.text(self.prog[len("clawgate "):])
            return found + "\n" if found is not None else super().format_help()

    return Parser(prog=f"clawgate {prog}", description=description)
