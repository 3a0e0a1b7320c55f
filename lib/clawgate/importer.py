"""`secrets import`: move plaintext credential files into the store, optionally shredding them.

Every file is checked before anything is stored; an original is shredded only
after its stored copy reads back identical. Each file is reached through safepath's walk:
the path the owner types may pass through the agent's directories (a migrated ~/.openclaw),
never through a link the agent could plant.
"""

import os
import stat
from typing import Dict, List, NamedTuple, Optional

from . import fsio, names, safepath, tiers
from .context import Context
from .display import say
from .errors import denied, usage
from .store import open_store

MAX_FILE = 1 << 20
SHRED_CAVEAT = (
    "overwriting is best-effort: on APFS, SSDs and journaled or copy-on-write file systems "
    "old blocks may survive; rotate any credential that matters"
)


class Source(NamedTuple):
    path: str
    name: str
    value: bytes
    folder: safepath.Dir  # the directory holding it, as walked; the file is reached through it
    file: os.stat_result


def _open_folder(path: str, owner_uid: int, folders: Dict[str, safepath.Dir]) -> safepath.Dir:
    directory = os.path.dirname(path.rstrip("/")) or "."
    if directory not in folders:
        try:
            folders[directory] = safepath.walk(directory, owner_uid)
        except safepath.Refused as err:
            raise denied(f"{names.shown(path)}: not imported: {err}") from None
        except OSError as err:
            raise usage(f"{names.shown(path)}: {err.strerror}") from None
    return folders[directory]


def _read_source(path: str, owner_uid: int, folders: Dict[str, safepath.Dir]) -> Source:
    name = os.path.basename(path.rstrip("/"))
    if not names.is_valid(name):
        raise usage(f"{names.shown(path)}: file name is not a valid secret name; rename it first")
    folder = _open_folder(path, owner_uid, folders)
    try:
        fd = os.open(name, fsio.READ_FLAGS, dir_fd=folder.fd)
    except OSError as err:
        raise usage(f"{names.shown(path)}: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # before fdopen, which refuses a directory with OSError
        os.close(fd)
        raise usage(f"{names.shown(path)}: not a regular file")
    if st.st_nlink != 1:  # the agent may link a file of the owner's it cannot read into its own directory
        os.close(fd)
        raise denied(f"{names.shown(path)}: has other hard links; not imported")
    with os.fdopen(fd, "rb") as handle:
        value = handle.read(MAX_FILE + 1)
    if len(value) > MAX_FILE:
        raise usage(f"{names.shown(path)}: larger than {MAX_FILE} bytes")
    return Source(path, name, value, folder, st)


def _check_shreddable(source: Source, owner_uid: int) -> None:
    """Only the owner's own file, in a directory nobody else can change (safepath's rule)."""
    if not (source.folder.st.st_uid == owner_uid and safepath.is_steady(source.folder.st, owner_uid)):
        raise denied(f"{names.shown(source.path)}: not shredding in {names.shown(source.folder.path)}: "
                     "the directory is not yours alone; nothing was imported")
    if source.file.st_uid != owner_uid:
        raise denied(f"{names.shown(source.path)}: not shredding a file that is not yours; nothing was imported")


def _shred(source: Source) -> bool:
    """Overwrite and unlink the file we read, and only it."""
    path, folder = source.path, source.folder
    flags = os.O_WRONLY | fsio.NOFOLLOW | fsio.CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(source.name, flags, dir_fd=folder.fd)
    try:
        st = os.fstat(fd)
        if ((st.st_dev, st.st_ino) != (source.file.st_dev, source.file.st_ino) or st.st_nlink != 1
                or st.st_size != len(source.value) or st.st_uid != os.geteuid()):
            say(f"{names.shown(path)}: changed since it was read (or has other links); not shredded")
            return False
        os.write(fd, os.urandom(len(source.value)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(source.name, dir_fd=folder.fd)
    return True


def import_files(ctx: Context, paths: List[str], tier: Optional[str], shred: bool) -> int:
    store = open_store(ctx.cfg)
    folders: Dict[str, safepath.Dir] = {}
    try:
        return _import(ctx, store, [_read_source(path, ctx.cfg.owner.uid, folders) for path in paths], tier, shred)
    finally:
        for folder in folders.values():
            folder.close()


def _import(ctx: Context, store, sources: List[Source], tier: Optional[str], shred: bool) -> int:
    seen = set()
    for source in sources:
        if source.name in seen:
            raise usage(f"{source.name}: named by two files; nothing was imported")
        seen.add(source.name)
        if store.exists(source.name):
            raise usage(f"{source.name}: already stored; remove it first (clawgate secrets rm {source.name})")
    if shred:
        for source in sources:
            _check_shreddable(source, ctx.cfg.owner.uid)
        say(SHRED_CAVEAT)
    for source in sources:
        store.put(source.name, source.value)
        tiers.set(ctx.cfg, source.name, tier or tiers.DEFAULT)
        verified = store.get(source.name) == source.value
        shredded = shred and verified and _shred(source)
        ctx.audit("import", name=source.name, tier=tier or tiers.DEFAULT, verified=verified, shred=shredded)
        print(f"clawgate: {source.name}: imported ({tier or tiers.DEFAULT})"
              + (", original shredded" if shredded else "")
              + ("" if verified else "; read-back differed, original kept"))
    return 0
