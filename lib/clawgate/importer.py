"""`secrets import`: move plaintext credential files into the store, optionally shredding them.

Every file is checked before anything is stored; an original is shredded only
after its stored copy reads back identical.
"""

import os
import stat
from typing import List, NamedTuple, Optional

from . import fsio, names, tiers
from .cli import Context, say
from .errors import usage
from .store import NoSuchSecret, open_store

MAX_FILE = 1 << 20
SHRED_CAVEAT = (
    "overwriting is best-effort: on APFS, SSDs and journaled or copy-on-write file systems "
    "old blocks may survive; rotate any credential that matters"
)


class Source(NamedTuple):
    path: str
    name: str
    value: bytes


def _read_source(path: str) -> Source:
    name = os.path.basename(path.rstrip("/"))
    if not names.is_valid(name):
        raise usage(f"{names.shown(path)}: file name is not a valid secret name; rename it first")
    try:
        fd = os.open(path, fsio.READ_FLAGS)
    except OSError as err:
        raise usage(f"{names.shown(path)}: {err.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory with OSError
        os.close(fd)
        raise usage(f"{names.shown(path)}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        value = handle.read(MAX_FILE + 1)
    if len(value) > MAX_FILE:
        raise usage(f"{names.shown(path)}: larger than {MAX_FILE} bytes")
    return Source(path, name, value)


def _shred(path: str, size: int) -> bool:
    """Overwrite and unlink the file we read, and only it.

    The directory may be writable by the agent (~/.openclaw/credentials): a file swapped or
    hard-linked in since we read it must not be the one overwritten.
    """
    fd = os.open(path, os.O_WRONLY | fsio.NOFOLLOW | fsio.CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != size or st.st_uid != os.geteuid():
            say(f"{names.shown(path)}: changed since it was read (or has other links); not shredded")
            return False
        os.write(fd, os.urandom(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    return True


def import_files(ctx: Context, paths: List[str], tier: Optional[str], shred: bool) -> int:
    store = open_store(ctx.cfg)
    sources = [_read_source(path) for path in paths]
    seen = set()
    for source in sources:
        if source.name in seen:
            raise usage(f"{source.name}: named by two files; nothing was imported")
        seen.add(source.name)
        try:
            store.get(source.name)
        except NoSuchSecret:
            continue
        raise usage(f"{source.name}: already stored; remove it first (clawgate secrets rm {source.name})")
    if shred:
        say(SHRED_CAVEAT)
    for source in sources:
        store.put(source.name, source.value)
        tiers.set(ctx.cfg, source.name, tier or tiers.DEFAULT)
        verified = store.get(source.name) == source.value
        shredded = shred and verified and _shred(source.path, len(source.value))
        ctx.audit("import", name=source.name, tier=tier or tiers.DEFAULT, verified=verified, shred=shredded)
        print(f"clawgate: {source.name}: imported ({tier or tiers.DEFAULT})"
              + (", original shredded" if shredded else "")
              + ("" if verified else "; read-back differed, original kept"))
    return 0
