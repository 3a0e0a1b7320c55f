"""Safe file I/O for state: O_NOFOLLOW opens checked with fstat, atomic replace, locks.

A crash at any point leaves the old file or the new one: data goes to a temp file
in the same directory, is fsynced, then renamed over the target, and the
directory is fsynced so the rename itself survives a power cut.
"""

import os
import stat

from . import guard
from .errors import LOCKED_OUT, ClawgateError, unsafe

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
READ_FLAGS = os.O_RDONLY | NOFOLLOW | CLOEXEC | os.O_NONBLOCK  # a planted FIFO must not hang the open
_TMP_SUFFIX = ".tmp"
LOCK_WAIT = 5.0  # seconds: longer than any holder needs, short enough that nothing looks hung


def _check_fd(fd: int, path: str, owner_uid: int) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise unsafe(f"{path}: not a regular file")
    if st.st_uid != owner_uid:
        raise unsafe(f"{path}: owned by uid {st.st_uid}, expected {owner_uid}")
    if st.st_mode & 0o077:
        raise unsafe(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} is too open")
    return st


def open_checked(path: str, owner_uid: int) -> "int | None":
    try:
        fd = os.open(path, READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as err:
        # ELOOP: a symlink was planted where state should be.
        raise unsafe(f"{path}: cannot open safely ({err.strerror})") from None
    try:
        _check_fd(fd, path, owner_uid)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_checked(path: str, owner_uid: int) -> "bytes | None":
    """The file's bytes, or None if it does not exist; refuses links, other owners, loose modes."""
    fd = open_checked(path, owner_uid)
    if fd is None:
        return None
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def read_fd(fd: int) -> bytes:
    chunks: "list[bytes]" = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    with guard.critical():  # a relayed signal acts after the rename, never between temp file and rename
        _write_atomic(path, data, mode)


def _write_atomic(path: str, data: bytes, mode: int) -> None:
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}{_TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str) -> bool:
    """Unlink; True if something was removed. Durable like a write."""
    try:
        with guard.critical():
            os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(os.path.dirname(path))
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def is_temp_name(filename: str) -> bool:
    return filename.startswith(".")


def check_dir(path: str, owner_uid: int) -> None:
    """Refuse a directory that is a link, owned by someone else, or open to others."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise unsafe(f"{path}: missing (is clawgate installed and enrolled?)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise unsafe(f"{path}: not a directory")
    if st.st_uid != owner_uid:
        raise unsafe(f"{path}: owned by uid {st.st_uid}, expected {owner_uid}")
    if st.st_mode & 0o077:
        raise unsafe(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} is too open")


def ensure_private_dir(path: str, owner_uid: int) -> str:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    check_dir(path, owner_uid)
    return path


def lock(fd: int, what: str) -> None:
    """An exclusive flock on fd, waited for LOCK_WAIT seconds at most: never an unbounded LOCK_EX.

    A holder stopped or stuck (the agent cannot stop ours, see guard, but root or a debugger can)
    gets one clear line naming it, exit 5, instead of every owner-side program hanging behind it.
    """
    import fcntl
    import time

    deadline, pause = 0.0, 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if not deadline:
            deadline = now + LOCK_WAIT
        elif now >= deadline:
            raise ClawgateError(LOCKED_OUT, f"{what} is held by {_holder(fd)} for more than {LOCK_WAIT:g}s; "
                                            "try again once it ends")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _holder(fd: int) -> str:
    """`pid N (name)` from /proc/locks when the system tells, else `another process`."""
    inode = os.fstat(fd).st_ino
    try:
        with open("/proc/locks", "rb") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 5 and fields[1] == b"FLOCK" and fields[5].rsplit(b":", 1)[-1] == str(inode).encode():
                    pid = fields[4].decode()
                    with open(f"/proc/{pid}/comm", "rb") as comm:
                        name = comm.read().strip().decode("ascii", "replace")
                    from .display import escape

                    return f"pid {pid} ({escape(name)})"
    except (OSError, ValueError):
        pass
    return "another process"


class locked:  # noqa: N801 - used as a function: `with fsio.locked(path) as fd:`
    """Hold an exclusive flock on `path` (created 0600) for the block, fatal signals deferred.

    A class, not @contextlib.contextmanager: contextlib would cost every `get` its import.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1
        self._critical = guard.critical()

    def __enter__(self) -> int:
        self._critical.__enter__()
        try:
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o600)
            except OSError as err:  # ELOOP: a symlink planted where the lock should be
                raise unsafe(f"{self._path}: cannot open safely ({err.strerror})") from None
            try:
                lock(fd, os.path.basename(self._path))
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self._critical.__exit__()
            raise
        self._fd = fd
        return fd

    def __exit__(self, *exc: object) -> None:
        try:
            os.close(self._fd)
        finally:
            self._critical.__exit__()
