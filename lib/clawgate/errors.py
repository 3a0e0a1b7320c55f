"""Exit codes shared by every clawgate command (DESIGN.md) and the one error type."""

OK = 0
DENIED = 1
USAGE = 2
APPROVAL_REQUIRED = 3
NO_SUCH_SECRET = 4
LOCKED_OUT = 5
UNSAFE = 6
# Outside DESIGN's 0-6, which are all decisions: the system failed us (sysexits.h EX_IOERR: a full
# disk, an I/O error), or our reader left (a shell's code for a writer killed by SIGPIPE).
IO_ERROR = 74
BROKEN_PIPE = 141


class ClawgateError(Exception):
    """A refusal with the exit code the design fixes; the message is safe to print."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def usage(message: str) -> ClawgateError:
    return ClawgateError(USAGE, message)


def unsafe(message: str) -> ClawgateError:
    return ClawgateError(UNSAFE, message)


def io_error(message: str) -> ClawgateError:
    return ClawgateError(IO_ERROR, message)


def denied(message: str) -> ClawgateError:
    return ClawgateError(DENIED, message)
