"""What every clawgate program shares: `clawgate: reason` + exit code, the caller, the context.

Each program's main() reads top to bottom: load the config fixed by where it is
installed, refuse an unsafe installation, identify the caller, then act.
"""

import os
import sys
import time

from . import audit as audit_log
from . import config as config_mod
from . import display, guard
from . import layout as layout_mod
from . import state
from .errors import BROKEN_PIPE, IO_ERROR, UNSAFE, USAGE, ClawgateError, denied
from .records import Record  # not typing.NamedTuple: importing typing alone costs more than a `get` does

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Callable, TextIO

PROG = "clawgate"
MAX_MESSAGE = 512  # characters; a message never runs past one line


def say(message: str) -> None:
    # One line whatever the message quotes: argparse echoes raw arguments (newlines, 100 KB).
    text = display.escape(message[:MAX_MESSAGE])
    line = f"{PROG}: {text}{'...' if len(message) > MAX_MESSAGE else ''}\n"
    _quietly(lambda: (sys.stderr.write(line), sys.stderr.flush()))  # stderr closed or broken: nobody to tell


class Caller(Record):
    __slots__ = ("uid", "name", "role")
    uid: int
    name: str
    role: str  # "owner", "agent" or "root"

    @property
    def is_agent(self) -> bool:
        return self.role == "agent"


class Context(Record):
    __slots__ = ("cfg", "caller", "layout")
    cfg: config_mod.Config
    caller: Caller
    layout: layout_mod.Layout

    def now(self) -> float:
        return time.time()

    def audit(self, event: str, **fields: object) -> None:
        record = (event, [("caller", self.caller.name), ("role", self.caller.role), *fields.items()])
        if _held is not None:
            _held.append(record)
        else:
            audit_log.append(state.path(self.cfg, "audit.log"), self.cfg.owner.uid, *record, time.time())
        if event in _PUSHED:  # decisions the owner's channel hears of at once (notify.py)
            from . import notify

            notify.after_audit(self, event, fields)

    def audit_all(self, records: "list[tuple[str, dict[str, object]]]") -> None:
        """Several (event, fields) records in one append: all of them or none."""
        held = [(event, [("caller", self.caller.name), ("role", self.caller.role), *fields.items()])
                for event, fields in records]
        if _held is not None:
            _held.extend(held)
        else:
            audit_log.append_many(state.path(self.cfg, "audit.log"), self.cfg.owner.uid, held, time.time())
        for event, fields in records:
            if event in _PUSHED:  # as in audit(): the owner's channel hears of these at once
                from . import notify

                notify.after_audit(self, event, fields)

    def audit_batch(self) -> "_AuditBatch":
        """`with ctx.audit_batch():` holds this process's audit records and appends them together
        when the block ends, error or not: one lock and one write instead of one per record.
        Nothing the records describe may leave the process before the block ends."""
        return _AuditBatch(self)


_held: "list | None" = None  # records held by an open audit_batch()
_PUSHED = frozenset(("grant", "elevate", "lockout", "revoke", "enroll"))  # notify.PUSHED, kept off the hot path


class _AuditBatch:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __enter__(self) -> None:
        global _held
        if _held is not None:
            raise RuntimeError("audit batches do not nest")
        _held = []

    def __exit__(self, *exc: object) -> None:
        global _held
        records, _held = _held or [], None
        cfg = self._ctx.cfg
        audit_log.append_many(state.path(cfg, "audit.log"), cfg.owner.uid, records, time.time())


def _invoking_uid() -> int:
    """The user behind this process: sudo's SUDO_UID when sudo ran us, else our real uid.

    Only sudo can start a program as the owner on someone else's behalf, and sudo
    sets SUDO_UID itself; a caller who fakes it while already running as the owner
    only makes itself look like a less trusted caller.
    """
    text = os.environ.get("SUDO_UID", "")
    return int(text) if text.isdigit() and len(text) < 11 else os.getuid()


def identify(cfg: config_mod.Config) -> Caller:
    uid = _invoking_uid()
    if uid == cfg.owner.uid:
        return Caller(uid, cfg.owner.name, "owner")
    if uid == cfg.agent.uid:
        return Caller(uid, cfg.agent.name, "agent")
    if uid == 0:
        return Caller(uid, "root", "root")
    raise denied("this user may not use clawgate")


def context(script: str) -> Context:
    """Config, safety checks and caller for a program installed at PREFIX/libexec/clawgate/."""
    layout = layout_mod.of_program(script)
    cfg = config_mod.load(layout.config)
    if os.geteuid() != cfg.owner.uid:
        raise denied(f"must run as {cfg.owner.name} (use: clawgate VERB)")
    state.check(cfg)
    return Context(cfg, identify(cfg), layout)


def require_owner(ctx: Context, what: str) -> None:
    if ctx.caller.is_agent:
        ctx.audit("denied", action=what, cause="owner only")
        raise denied(f"{what}: only the owner may do this")


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
        _quietly(lambda: sys.stderr.write("\n"))
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
        if not _quietly(stream.flush):
            code = code or BROKEN_PIPE
            _quietly(_to_devnull(stream))
    if fast_exit:
        os._exit(code)
    sys.exit(code)


def _to_devnull(stream: "TextIO") -> "Callable[[], object]":
    return lambda: os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _quietly(action: "Callable[[], object]") -> bool:
    """False if action() failed: writing to a closed or broken stream must not end in a traceback."""
    try:
        action()
    except (OSError, ValueError):
        return False
    return True


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
