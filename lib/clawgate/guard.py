"""What a hostile caller controls before we run a line, made harmless in one place.

The agent reaches the owner's side (and elevate's root side) through sudo, which keeps
the agent as the real uid of the sudo process: the agent may signal its own sudo, and
sudo relays TSTP, TERM, HUP, INT, QUIT, USR1, USR2... to us. It also hands us its
resource limits and its open or closed descriptors. So, before anything else:

- start(): closed descriptors 0/1/2 are reopened on /dev/null (or the first file we open
  becomes our stdout); SIGCHLD is set back to its default; job-control signals are ignored (a stop while a lock is held would
  freeze every owner-side program); RLIMIT_FSIZE and RLIMIT_NOFILE are raised to sane
  values (and RLIMIT_CPU, RLIMIT_AS, RLIMIT_DATA lifted, RLIMIT_NPROC to its hard limit, core
  files off), or, where only root
  could raise them, refused with exit 6; so is a lowered priority (SCHED_IDLE, a positive nice).
- critical(): the fatal signals are blocked across each lock-and-write, and delivered when
  it ends: the write completes, then the signal acts. Nothing can tear a file or leave a
  guess uncounted short of SIGKILL, which only root or the kernel can send, and against
  which every write is atomic (fsio, audit).
- beyond_sudo(): what follows runs in a child in a session of its own, which sudo cannot be
  made to kill (below); the gate calls it before a code is checked.
- for_exec(): undoes the above for a command we exec (elevate): it starts as sudo would
  start it, with sane limits.
- root_limits(): elevate's command gets root's standard limits (PID 1's), not the ones the
  agent lowered (prlimit) to cripple it mid-write; one that cannot be restored is refused
  before the gate, so no code is spent on a crippled command.

Uses _signal, not signal: signal.py builds enums at import (~10 ms, most of a `get`'s own
work). _signal is the C module signal.py re-exports unchanged (`from _signal import *`), with the
documented signatures; if an interpreter lacks it, the public module is used instead.
"""

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Callable

try:
    import _signal as _sig  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - every CPython has it
    import signal as _sig  # type: ignore[no-redef,unused-ignore]

# Job control: ignored for the whole run of an owner-side or root-side program.
JOB_CONTROL = tuple(getattr(_sig, name) for name in ("SIGTSTP", "SIGTTIN", "SIGTTOU") if hasattr(_sig, name))
# Every signal whose default action ends the process and that a caller can send or provoke.
DEFERRED = frozenset(getattr(_sig, name) for name in (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF",
    "SIGXCPU", "SIGXFSZ", "SIGPIPE", "SIGIO", "SIGPOLL", "SIGPWR", "SIGSTKFLT", "SIGTSTP", "SIGTTIN",
    "SIGTTOU") if hasattr(_sig, name))
MIN_OPEN_FILES = 64  # a state write needs a handful; a caller who leaves us fewer means to break one
# The process limit counts every process and thread of our real uid (the owner's, under sudo): a
# caller who lowers it makes the fork of a lockout or grant push fail. Its soft limit is lifted to
# the hard one, and a hard limit below this is refused: no host runs its users under so few.
MIN_PROCESSES = 512


def start(owner_side: bool = True) -> None:
    """The first thing every program does (cli.run). owner_side=False: only the descriptors
    (`clawgate run` runs as its caller and passes its signals and limits on to CMD)."""
    _reopen_closed_descriptors()
    if not owner_side:
        return
    for sig in JOB_CONTROL:
        _sig.signal(sig, _sig.SIG_IGN)
    # An ignored SIGCHLD survives sudo and exec: children would be reaped by the kernel, and every
    # waitpid (beyond_sudo, privdrop, a notification's fork) would fail after the child's work.
    _sig.signal(_sig.SIGCHLD, _sig.SIG_DFL)
    _sane_limits()
    _usual_priority()


def _reopen_closed_descriptors() -> None:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        got = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one, as 0..fd-1 are open
        if got != fd:  # pragma: no cover - cannot happen, but never let a later file become stdout
            os.dup2(got, fd)
            os.close(got)
    # Python set sys.stdin/stdout/stderr to None for a descriptor that was closed at start-up.
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, errors="backslashreplace"))


# The limits a caller could use to fail a write or an allocation, or to have the kernel kill us,
# at a moment it picks (a CPU-time limit kills with SIGKILL, which nothing defers), or to fail the
# fork that tells the owner: each as /proc/PID/limits names it, the least soft value we run with
# (None: unlimited), and its words. The process limit alone is lifted to the hard one (TO_HARD):
# what it must allow is the owner's whole process count, which no fixed least value covers.
CALLER_LIMITS = (("RLIMIT_FSIZE", "Max file size", None, "a file-size limit (ulimit -f)"),
                 ("RLIMIT_NOFILE", "Max open files", MIN_OPEN_FILES, "an open-files limit (ulimit -n)"),
                 ("RLIMIT_CPU", "Max cpu time", None, "a CPU-time limit (ulimit -t)"),
                 ("RLIMIT_AS", "Max address space", None, "an address-space limit (ulimit -v)"),
                 ("RLIMIT_DATA", "Max data size", None, "a data-size limit (ulimit -d)"),
                 ("RLIMIT_NPROC", "Max processes", MIN_PROCESSES, "a process-count limit (ulimit -u)"))
TO_HARD = "RLIMIT_NPROC"


def _sane_limits() -> None:
    """Each CALLER_LIMITS soft limit raised to its least value (as root the hard one too), and no
    core file (it would hold what the owner's side read).

    Refuse rather than run under a limit only root could lift: a write of the TOTP state or the
    audit log could otherwise fail half-way after the gate has decided.
    """
    if _limits_already_sane():
        return
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    for attr, _label, least, what in CALLER_LIMITS:
        which = getattr(resource, attr, None)
        if which is None:  # pragma: no cover - not on this system
            continue
        wanted = resource.RLIM_INFINITY if least is None else least
        soft, hard = resource.getrlimit(which)
        if attr == TO_HARD and soft != hard and _at_least(hard, wanted):
            resource.setrlimit(which, (hard, hard))
            continue
        if _at_least(soft, wanted):
            continue
        if _at_least(hard, wanted):
            resource.setrlimit(which, (wanted, hard))
            continue
        if os.geteuid() == 0:  # elevate: root may lift them, and the command it runs gets them too
            try:
                resource.setrlimit(which, (wanted, wanted))
                continue
            except (ValueError, OSError):  # no CAP_SYS_RESOURCE (a container): refuse below
                pass
        from .errors import unsafe

        raise unsafe(f"{what} is set; refusing to write state under it")


def _usual_priority() -> None:
    """Refuse to run at a priority the caller lowered (SCHED_IDLE, a positive nice): starved by
    its own busy processes, we would hold the owner's locks for as long as it liked, and only root
    can raise a priority back."""
    idle = getattr(os, "SCHED_IDLE", None)
    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if (idle is not None and policy == idle) or nice > 0:
        if os.geteuid() == 0:  # elevate: root may raise it back
            if nice > 0:
                os.setpriority(os.PRIO_PROCESS, 0, 0)
            if idle is not None and policy == idle:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            return
        from .errors import unsafe

        what = "the idle scheduling class" if idle is not None and policy == idle else f"nice {nice}"
        raise unsafe(f"a lowered priority is set ({what}); refusing to hold the owner's locks under it")


def _at_least(limit: int, wanted: int) -> bool:
    import resource

    if limit == resource.RLIM_INFINITY:
        return True
    return wanted != resource.RLIM_INFINITY and limit >= wanted


# Each limit a root command inherits, as /proc/PID/limits names it, and the least we run it with
# when PID 1's value cannot be reached (a container whose own hard limit is lower than its init's).
ROOT_LIMITS = (("RLIMIT_NOFILE", "Max open files", "open files (ulimit -n)", 1024),
               ("RLIMIT_NPROC", "Max processes", "processes (ulimit -u)", 1024),
               ("RLIMIT_AS", "Max address space", "address space (ulimit -v)", None),
               ("RLIMIT_DATA", "Max data size", "data size (ulimit -d)", None),
               ("RLIMIT_STACK", "Max stack size", "stack size (ulimit -s)", 8 << 20),
               ("RLIMIT_FSIZE", "Max file size", "file size (ulimit -f)", None),
               ("RLIMIT_CPU", "Max cpu time", "cpu time (ulimit -t)", None))  # None: unlimited


def root_limits(standard_path: str = "/proc/1/limits") -> None:
    """Give elevate's command root's standard soft limits (PID 1's; else each hard limit), raising
    the hard limit where root may; refuse (exit 6) a limit left below them, and dump no core."""
    import resource

    standard = _standard_limits(standard_path)
    for attr, label, what, floor in ROOT_LIMITS:
        which = getattr(resource, attr, None)
        if which is None:  # pragma: no cover - not on this system
            continue
        soft, hard = resource.getrlimit(which)
        want_soft, want_hard = standard.get(label, (hard, hard))
        if not _at_least(hard, want_hard):
            try:
                resource.setrlimit(which, (soft, want_hard))
                hard = want_hard
            except (ValueError, OSError):  # no CAP_SYS_RESOURCE: keep the hard limit we have
                pass
        target = want_soft if _at_least(hard, want_soft) else hard
        least = want_soft if floor is None or not _at_least(want_soft, floor) else floor
        if not (_at_least(target, least) and _set_soft(which, (target, least), hard)):
            from .errors import unsafe

            raise unsafe(f"a {what} limit is set that root cannot lift; refusing to run a root command under it")
    # A root command's memory never lands in a core file.
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


def _set_soft(which: int, choices: "tuple[int, int]", hard: int) -> bool:
    """The first soft limit of `choices` the kernel takes (macOS refuses an unlimited NOFILE)."""
    import resource

    for soft in choices:
        try:
            resource.setrlimit(which, (soft, hard))
            return True
        except (ValueError, OSError):
            continue
    return False


def _limits_already_sane(path: str = "/proc/self/limits") -> bool:
    """True when Linux's /proc says no limit needs changing: then `resource`, the one extension
    module a `get` would load from disk (a twentieth of its own work), is never imported."""
    seen = _proc_limits(path)
    if seen.get("Max core file size", (None, None))[0] != 0:
        return False
    for attr, label, least, _what in CALLER_LIMITS:
        soft, hard = seen.get(label, (0, 0))
        if soft is not None and (least is None or soft < least or (attr == TO_HARD and soft != hard)):
            return False
    return True


def _standard_limits(path: str) -> "dict[str, tuple[int, int]]":
    """PID 1's (soft, hard) limits by name, from Linux's /proc/1/limits; {} where there is none."""
    import resource

    def value(limit: "int | None") -> int:
        return resource.RLIM_INFINITY if limit is None else limit

    return {label: (value(soft), value(hard)) for label, (soft, hard) in _proc_limits(path).items()}


def _proc_limits(path: str) -> "dict[str, tuple[int | None, int | None]]":
    """(soft, hard) limits by name from a /proc/PID/limits file, None for unlimited; {} without one."""
    try:  # os.open, not open(): a file object costs a `get` more than reading the limits does
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 65536).decode("ascii", "replace")
        finally:
            os.close(fd)
    except OSError:
        return {}
    found = {}
    for line in text.splitlines()[1:]:
        fields = line[26:].split()[:2]
        if len(fields) == 2 and all(f == "unlimited" or f.isdigit() for f in fields):
            soft, hard = (None if f == "unlimited" else int(f) for f in fields)
            found[line[:26].strip()] = (soft, hard)
    return found


def quietly(action: "Callable[[], object]") -> bool:
    """False if action() failed: writing to a stream the caller closed or broke must not end in a
    traceback."""
    try:
        action()
    except (OSError, ValueError):
        return False
    return True


class critical:  # noqa: N801 - used as a function: `with guard.critical():`
    """Block the fatal signals for the block; any that arrived act when it ends (nests)."""

    def __enter__(self) -> None:
        self._old = _sig.pthread_sigmask(_sig.SIG_BLOCK, DEFERRED)

    def __exit__(self, *exc: object) -> None:
        _sig.pthread_sigmask(_sig.SIG_SETMASK, self._old)


def beyond_sudo() -> None:
    """From here on this run goes on in a child that sudo cannot reach; this process waits for it
    and leaves with its status.

    The agent may send its own sudo SIGALRM, which sudo takes for its command's timeout: it
    sends the command HUP and TERM, then KILL 2 s later (to the command's pid, or its process
    group under use_pty). critical() defers the first two; nothing defers KILL. A gate check on a
    slow store (OpenBao, a lock held by another run) can outlast 2 s, and a kill half-way leaves
    a spent code with no grant, or a guess counted with no record. The child, in a new session,
    is neither that pid nor in that group (and the agent cannot signal the owner's processes):
    what it begins, it finishes and records. Called once, under sudo (context.sudo_uid), before
    any gate state is touched: the owner at a terminal is not the one who would kill it."""
    global _beyond
    if _beyond:
        return
    for stream in (sys.stdout, sys.stderr):
        quietly(stream.flush)  # or the child would write what was buffered a second time
    try:
        pid = os.fork()
    except OSError as err:  # before the gate: nothing is spent, nothing counted
        from .errors import unsafe

        raise unsafe(f"cannot start the gate's process ({err.strerror}); nothing was checked") from None
    if pid == 0:
        _beyond = True
        os.setsid()
        return
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


_beyond = False


def for_exec() -> None:
    """Before exec'ing a command: default dispositions, nothing blocked (both survive exec)."""
    for name in ("SIGPIPE", "SIGXFSZ", "SIGTSTP", "SIGTTIN", "SIGTTOU"):
        if hasattr(_sig, name):
            _sig.signal(getattr(_sig, name), _sig.SIG_DFL)
    _sig.pthread_sigmask(_sig.SIG_SETMASK, ())
