"""Secret stores. Each backend serves only the secrets namespace, by validated name.

A backend offers: get(name) -> bytes (raises NoSuchSecret), put(name, value),
delete(name) -> bool, names() -> list of names. Values are bytes, any bytes.
"""

from ..config import Config
from ..errors import NO_SUCH_SECRET, ClawgateError
from ..names import shown


class NoSuchSecret(ClawgateError):
    def __init__(self, name: str) -> None:
        super().__init__(NO_SUCH_SECRET, f"{shown(name)}: no such secret")


def open_store(cfg: Config):
    if cfg.store == "keychain":
        from .keychain import KeychainStore

        return KeychainStore(cfg)
    from .file import FileStore

    return FileStore(cfg)
