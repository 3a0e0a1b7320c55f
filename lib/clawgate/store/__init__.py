"""Secret stores. Each backend serves only the secrets namespace, by validated name.

Store is the interface every backend implements (file.py, keychain.py): values are bytes,
any bytes. The TOTP seeds are kept by the store too (load_seed/save_seed), in a place no
secret name reaches. Callers ask the store; none of them branch on cfg.store.
"""

from ..config import Config
from ..errors import NO_SUCH_SECRET, ClawgateError
from ..names import shown

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (every `get` imports this module)
if TYPE_CHECKING:
    from typing import List, Optional


ROOT_SEED_SUFFIX = "-root"  # enroll --root: a second seed whose codes alone open root


class NoSuchSecret(ClawgateError):
    def __init__(self, name: str) -> None:
        super().__init__(NO_SUCH_SECRET, f"{shown(name)}: no such secret")


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


def open_store(cfg: Config) -> Store:
    if cfg.store == "keychain":
        from .keychain import KeychainStore

        return KeychainStore(cfg)
    from .file import FileStore

    return FileStore(cfg)
