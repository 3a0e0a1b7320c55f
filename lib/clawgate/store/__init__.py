"""Secret stores. Each backend serves only the secrets namespace, by validated name.

Store is the interface every backend implements (FileStore here, the default and Linux's;
KeychainStore in keychain.py, macOS's; OpenBaoStore in openbao.py, fleets'): values are bytes,
any bytes. The TOTP seeds are kept by the store too (load_seed/save_seed), in a place no secret
name reaches. A store shared by several hosts (shared_gate) also keeps each secret's tier record
(load_tier/save_tier: tiers.py asks it) and the gate record (load_gate/save_gate, changed only by
check-and-set: gate.py asks it); the others leave both to the state directory. Callers ask
the store; none of them branch on cfg.store.
"""

import os
import sys

from .. import fsio, names, state
from ..config import Config
from ..errors import NO_SUCH_SECRET, ClawgateError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (every `get` imports this module)
if TYPE_CHECKING:
    from typing import List, Optional, Tuple


ROOT_SEED_SUFFIX = "-root"  # enroll --root: a second seed whose codes alone open root


class Conflict(Exception):
    """A check-and-set write lost: another host wrote the record since we read its version."""


class NoSuchSecret(ClawgateError):
    def __init__(self, name: str) -> None:
        super().__init__(NO_SUCH_SECRET, f"{names.shown(name)}: no such secret")


class Store:
    def get(self, name: str) -> bytes:
        """The exact bytes, or NoSuchSecret (exit 4)."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        """Whether `name` is stored, checked as get() checks it, without reading its value."""
        raise NotImplementedError

    def require(self, name: str) -> None:
        """NoSuchSecret (exit 4) unless `name` is stored: the check before a code is spent on it."""
        if not self.exists(name):
            raise NoSuchSecret(name)

    def put(self, name: str, value: bytes) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> bool:
        """Whether something was removed."""
        raise NotImplementedError

    def names(self) -> "List[str]":
        """The sorted secret names, and nothing else."""
        raise NotImplementedError

    def init(self) -> None:
        """Make the store usable (`secrets init`); safe to repeat. Nothing to do by default."""

    def load_seed(self, root: bool = False) -> "Optional[bytes]":
        """The TOTP seed record (root: enroll --root's second seed), or None if not enrolled."""
        raise NotImplementedError

    def save_seed(self, raw: bytes, root: bool = False) -> None:
        raise NotImplementedError

    # A shared store only (shared_gate): the tier record and the gate record live in it.
    shared_gate = False

    def load_tier(self, name: str) -> "Optional[bytes]":
        """The tier record (tiers.py's text), or None for the default."""
        raise NotImplementedError

    def save_tier(self, name: str, record: "Optional[bytes]") -> None:
        """Write the tier record; None removes it."""
        raise NotImplementedError

    def load_tier_versioned(self, name: str) -> "Tuple[Optional[bytes], int]":
        """The tier record and its version (0: none), read afresh, for change_tier."""
        raise NotImplementedError

    def change_tier(self, name: str, record: bytes, version: int) -> None:
        """Write the tier record only if it is still at `version` (check-and-set), or Conflict."""
        raise NotImplementedError

    def load_gate(self) -> "Tuple[Optional[bytes], int]":
        """The gate record (gate.py's) and its version; (None, 0) before the first write."""
        raise NotImplementedError

    def save_gate(self, raw: bytes, version: int) -> int:
        """Write it only if it is still at `version` (check-and-set): the new version, or Conflict."""
        raise NotImplementedError

    # A remote store only (batched): resolve fetches a batch's records at once, then reads them.
    batched = False

    def prefetch(self, kind: str, wanted: "List[str]") -> None:
        """Fetch the tier records ("tiers") or values ("secrets") of `wanted` ahead of their reads."""

    def drop_prefetched(self) -> None:
        """Forget what prefetch held."""


SEED_FILE = "totp-seed"  # in STATE, beside (never inside) the secrets directory


class FileStore(Store):
    """The `file` store: one 0600 file per secret in a 0700 directory owned by the owner."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._owner_uid = cfg.owner.uid
        self._dir = state.path(cfg, "secrets")

    def _path(self, name: str) -> str:
        return os.path.join(self._dir, names.to_filename(names.check(name)))

    def get(self, name: str) -> bytes:
        value = fsio.read_checked(self._path(name), self._owner_uid)
        if value is None:
            raise NoSuchSecret(name)
        return value

    def exists(self, name: str) -> bool:
        fd = fsio.open_checked(self._path(name), self._owner_uid)
        if fd is None:
            return False
        os.close(fd)
        return True

    def put(self, name: str, value: bytes) -> None:
        fsio.write_atomic(self._path(name), value)

    def delete(self, name: str) -> bool:
        return fsio.remove(self._path(name))

    def names(self) -> "list[str]":
        return sorted(
            names.from_filename(entry)
            for entry in os.listdir(self._dir)
            if not fsio.is_temp_name(entry) and names.is_valid(names.from_filename(entry))
        )

    def load_seed(self, root: bool = False) -> "bytes | None":
        return fsio.read_checked(self._seed_path(root), self._owner_uid)

    def save_seed(self, raw: bytes, root: bool = False) -> None:
        fsio.write_atomic(self._seed_path(root), raw)

    def _seed_path(self, root: bool) -> str:
        return state.path(self._cfg, SEED_FILE + (ROOT_SEED_SUFFIX if root else ""))


_SHARED: "dict[tuple[object, ...], Store]" = {}  # one OpenBao client per config and thread: its token and connection


def open_store(cfg: Config) -> Store:
    if cfg.store == "keychain":
        from .keychain import KeychainStore

        return KeychainStore(cfg)
    if cfg.store == "openbao":
        # Another thread gets a client of its own (a process that never imported threading has one).
        threading = sys.modules.get("threading")
        thread = threading.get_ident() if threading and threading.current_thread() is not threading.main_thread() else 0
        key = (cfg.path, cfg.state_dir, *sorted(cfg.openbao.items()), thread)
        if key not in _SHARED:
            from .openbao import OpenBaoStore

            _SHARED[key] = OpenBaoStore.of(cfg)
        return _SHARED[key]
    return FileStore(cfg)
