"""Safe file I/O for state: O_NOFOLLOW opens checked with fstat, atomic replace, locks.

A crash at any point leaves the old file or the new one: data goes to a temp file
in the same directory, is fsynced, then renamed over the target, and the
directory is fsynced so the rename itself survives a power cut.
"""

import os
import stat

from .errors import unsafe

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
READ_FLAGS = os.O_RDONLY | NOFOLLOW | CLOEXEC | os.O_NONBLOCK  # a planted FIFO must not hang the open
_TMP_SUFFIX = ".tmp"


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


class locked:  # noqa: N801 - used as a function: `with fsio.locked(path) as fd:`
    """Hold an exclusive flock on `path` (created 0600) for the block.

    A class, not @contextlib.contextmanager: contextlib would cost every `get` its import.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> int:
        import fcntl

        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)
