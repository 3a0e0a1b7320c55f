"""The `file` store: one 0600 file per secret in a 0700 directory owned by the owner."""

import os

from .. import fsio, names, state
from ..config import Config
from . import ROOT_SEED_SUFFIX, NoSuchSecret, Store

SEED_FILE = "totp-seed"  # in STATE, beside (never inside) the secrets directory


class FileStore(Store):
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
