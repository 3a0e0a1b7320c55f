"""Reach a file the owner names without following anything the agent could change (invariant 12).

A path is walked from `/` one component at a time, each directory opened with
O_DIRECTORY|O_NOFOLLOW relative to the descriptor of the one before, so the walk ends
holding a descriptor for the very directory it checked; what is done next (open, unlink)
is done relative to that descriptor, never by name from `/` again.

The rule, for each component:
- a directory is *steady* when it is owned by root or the owner and writable by nobody else
  (no group or other write bit, sticky or not): only they can add, swap or remove its entries;
- a symbolic link is followed only when it sits in a steady directory and is itself owned by
  root or the owner: then only they could have made it or can change it (the owner's
  `~/.openclaw -> AGENT_HOME/.openclaw` left by install.sh --migrate-from is such a link);
  any other link anywhere on the path is refused;
- a directory the agent owns or can write may be passed through (without following any link
  in it): it can rename its entries, but it cannot make an entry that is a directory or file
  of the owner's appear in it (no directory hard links; moving one needs write access to
  where it is), so what the walk reaches below it is either the agent's own or what the owner
  or root put there.

For destructive use (import --shred) the directory holding the file must itself be owned by
the owner and steady (so nobody else swaps the file's name before it is removed), and the
file must be the owner's, regular and singly linked (a hard link the agent made to an owner's
file elsewhere has two links).
"""

import errno
import os
import stat

from . import fsio

MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup
# O_PATH (Linux) / O_SEARCH: a directory the owner may only search (the agent's ~/.openclaw is 0711)
# must open all the same. Without either (macOS), such a directory is refused with EACCES.
_SEARCH = getattr(os, "O_PATH", 0) or getattr(os, "O_SEARCH", 0) or os.O_RDONLY
DIR_FLAGS = _SEARCH | os.O_DIRECTORY | fsio.NOFOLLOW | fsio.CLOEXEC


class Refused(Exception):
    """The path passes through something the agent could change; the message says what."""


def is_steady(st: os.stat_result, owner_uid: int) -> bool:
    return st.st_uid in (0, owner_uid) and not st.st_mode & 0o022


class Dir:
    """An open directory reached by walk(): its descriptor, its path as walked, its stat."""

    def __init__(self, fd: int, path: str, st: os.stat_result) -> None:
        self.fd, self.path, self.st = fd, path, st

    def close(self) -> None:
        os.close(self.fd)


def _unchangeable(st: os.stat_result, owner_uid: int) -> bool:
    """A directory (or file) nobody but root and the owner can change: theirs, and writable by nobody
    else, or a sticky directory of theirs (/tmp), whose entries of root's or the owner's nobody
    else can rename or remove."""
    return st.st_uid in (0, owner_uid) and (not st.st_mode & 0o022 or bool(st.st_mode & stat.S_ISVTX))


def walk(path: str, owner_uid: int, strict: bool = False) -> Dir:
    """Open the directory `path` by the rule above; raise Refused, or OSError if it is missing.

    strict: every directory on the way must be one nobody but root and the owner can change (for a
    file read again at each use, whose name the agent must not be able to point elsewhere later)."""
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    fd = os.open("/", DIR_FLAGS)
    st = os.fstat(fd)
    shown = ""
    pending = [part for part in path.split("/") if part not in ("", ".")]
    pending.reverse()
    links = 0
    try:
        while pending:
            part = pending.pop()
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                link = os.lstat(part, dir_fd=fd)
                if not stat.S_ISLNK(link.st_mode):
                    raise
                where = f"{shown}/{part}"
                if not is_steady(st, owner_uid) or link.st_uid not in (0, owner_uid):
                    raise Refused(f"{where} is a symbolic link another user could change") from None
                links += 1
                if links > MAX_LINKS:
                    raise Refused(f"{where}: too many symbolic links") from None
                target = os.readlink(part, dir_fd=fd)
                more = [p for p in target.split("/") if p not in ("", ".")]
                pending.extend(reversed(more))
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", DIR_FLAGS)
                    st, shown = os.fstat(fd), ""
                continue
            os.close(fd)
            fd, st = child, os.fstat(child)
            shown = shown.rsplit("/", 1)[0] if part == ".." else f"{shown}/{part}"
            if strict and not _unchangeable(st, owner_uid):
                raise Refused(f"{shown or '/'} is a directory another user can change")
    except BaseException:
        os.close(fd)
        raise
    return Dir(fd, shown or "/", st)


def read_file(path: str, owner_uid: int, limit: int, strict: bool = False, _links: int = 0) -> bytes:
    """A regular file the owner names (a CA, say), read by the rule above: a link is followed only
    where walk() would follow one (root's or the owner's, in a steady directory: most of
    /etc/ssl/certs is such links), no FIFO or device opened (a FIFO would hang us), at most
    `limit` bytes. Refused, or OSError (missing, unreadable), otherwise.

    strict (a file read again at each use, the OpenBao CA): walk() strictly, and the file too must
    be root's or the owner's and writable by nobody else."""
    path = os.path.abspath(path)
    folder = walk(os.path.dirname(path) or "/", owner_uid, strict)
    try:
        try:
            fd = os.open(os.path.basename(path), fsio.READ_FLAGS, dir_fd=folder.fd)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            link = os.lstat(os.path.basename(path), dir_fd=folder.fd)
            if not is_steady(folder.st, owner_uid) or link.st_uid not in (0, owner_uid):
                raise Refused(f"{path} is a symbolic link another user could change") from None
            if _links >= MAX_LINKS:
                raise Refused(f"{path}: too many symbolic links") from None
            target = os.readlink(os.path.basename(path), dir_fd=folder.fd)
            return read_file(os.path.join(os.path.dirname(path), target), owner_uid, limit, strict, _links + 1)
    finally:
        folder.close()
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path}: not a regular file")
        if strict and (st.st_uid not in (0, owner_uid) or st.st_mode & 0o022):
            raise Refused(f"{path}: another user can change it (its owner or mode)")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Refused(f"{path}: larger than {limit} bytes")
    return data
