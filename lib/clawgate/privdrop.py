"""Run a function as the owner from a root process: fork, drop for good, report back.

`elevate` runs as root, but everything it does to the owner's state (the TOTP
gate, the @root grant, the audit log) must be done by the owner so that every
file stays the owner's and no root-owned file ever lands in the state dir.
The child drops groups, gid and uid, proves it cannot get root back, and only
then runs the function; the parent gets the function's result or its
ClawgateError, and nothing else. A child that dies without an answer is a
refusal, never a success.
"""

import json
import os
import signal
from typing import Callable, Dict, Optional

from .config import Principal
from .errors import UNSAFE, ClawgateError, unsafe

_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def drop_to(who: Principal) -> None:
    """Become `who` for good: supplementary groups, gid, uid, in that order (gid needs root)."""
    os.initgroups(who.name, who.gid)
    os.setgid(who.gid)
    os.setuid(who.uid)  # as root this sets the real, effective and saved uid
    _check_dropped(who)


def _check_dropped(who: Principal) -> None:
    ids = os.getresuid() if hasattr(os, "getresuid") else (os.getuid(), os.geteuid())
    gids = os.getresgid() if hasattr(os, "getresgid") else (os.getgid(), os.getegid())
    if set(ids) != {who.uid} or set(gids) != {who.gid}:
        raise unsafe(f"could not drop to {who.name}; nothing was done")
    if who.uid != 0 and _can_become_root():
        raise unsafe(f"dropped to {who.name} but could regain root; nothing was done")


def _can_become_root() -> bool:
    try:
        os.setuid(0)
    except PermissionError:
        return False
    return True


def owner_environment(who: Principal) -> Dict[str, str]:
    """What the owner-side code sees: nothing the caller set (a store backend may run tools)."""
    return {"PATH": _PATH, "HOME": who.home, "USER": who.name, "LOGNAME": who.name, "LANG": "C.UTF-8"}


def call_as(who: Principal, fn: Callable[[], object], timeout: "Optional[float]" = None) -> object:
    """fn() run as `who` in a child; its return value (JSON-able) or its ClawgateError, re-raised here.
    With a timeout, a child still running after it (reading a FIFO the user planted...) is killed
    and the call refused (exit 6)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is seen through the parent
        os.close(read_end)
        _child(who, fn, write_end)
    os.close(write_end)
    try:
        raw = _read_answer(read_end, timeout)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise unsafe(f"a check run as {who.name} did not finish in {timeout:g}s; it was stopped") from None
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return _answer(raw, status)


def _read_answer(fd: int, timeout: "Optional[float]") -> bytes:
    import select
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: "list[bytes]" = []
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child(who: Principal, fn: Callable[[], object], out: int) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # A session of its own: a ^C, or the kill the agent can make sudo send its process group
    # (guard.beyond_sudo), ends the root parent, never the owner's work half-way.
    os.setsid()
    try:
        drop_to(who)
        os.environ.clear()
        os.environ.update(owner_environment(who))
        os.chdir("/")  # the caller's cwd may be closed to the owner
        answer = {"ok": fn()}
    except ClawgateError as err:
        answer = {"code": err.code, "message": err.message}
    except OSError as err:
        where = f": {err.filename}" if isinstance(err.filename, str) else ""
        answer = {"code": UNSAFE, "message": f"{err.strerror or 'system error'}{where}"}
    except Exception as err:  # noqa: BLE001 - a traceback could carry a secret value
        answer = {"code": UNSAFE, "message": f"internal error ({type(err).__name__}); nothing was run"}
    try:
        view = memoryview(json.dumps(answer).encode())
        while view:
            view = view[os.write(out, view):]
    finally:
        os._exit(0)  # never return into the root parent's code, never run its atexit handlers


def _answer(raw: bytes, status: int) -> object:
    try:
        answer = json.loads(raw) if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise unsafe("the owner-side check did not finish; nothing was run")
    if "ok" in answer:
        return answer["ok"]
    raise ClawgateError(int(answer.get("code", UNSAFE)), str(answer.get("message", "refused")))
