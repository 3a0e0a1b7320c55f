"""The `keychain` store (macOS): a dedicated keychain driven through security(1).

The keychain (~OWNER/Library/Keychains/clawgate.keychain-db unless the config says
otherwise) is created by `secrets init` with a random password kept in STATE/keychain-password
(0600, the owner's), set never to lock by itself, and unlocked before every use, so a 44 from
security means "no such item" and not "locked". How security is driven, and why values and
the password never appear in its argv, is in securitytool.py.

Layout: secret NAME is the generic password (service "clawgate", account NAME). security -i
takes a line of at most 4095 bytes, so a value whose hex does not fit one line is split: the
item holds the first part and the comment `clawgate-parts:GEN:COUNT`, and parts 1..COUNT-1
live under service "clawgate-parts", account clawgate:NAME:GEN:I. A new value's parts are written under
a fresh GEN before the item is updated (one atomic -U), and only then are the old parts
deleted: a failure at any point leaves the old value or the new one, never a mix.
The TOTP seed is (service "clawgate-totp", account "seed"); no secret name reaches it.
"""

import os
import re
import secrets as random
from typing import List, Optional, Sequence, Tuple

from .. import fsio, names, state
from ..config import Config
from ..errors import ClawgateError, unsafe, usage
from . import ROOT_SEED_SUFFIX, NoSuchSecret, Store
from .securitytool import NOT_FOUND, LINE_MAX, Result, Tool, attributes, item_pairs, line, password_from, passwords_from

SERVICE = "clawgate"
PARTS = "clawgate-parts"
SERVICE_ITEM_ACCOUNT = "seed"
SEED_SERVICE = "clawgate-totp"
PASSWORD_FILE = "keychain-password"
_MARKER = re.compile(rb"clawgate-parts:([0-9a-f]{16}):([0-9]{1,7})")
_SERVICE_ITEM = re.compile(r"clawgate-[a-z]+(?:-root)?")  # -root: enroll --root's seed
_MAX_INDEX = "9999999"
_MAX_PARTS = 1 << 16  # far above what secrets' 1 MiB cap needs; a damaged comment cannot run away
_READ_TRIES = 3


class Item:
    def __init__(self, data: bytes, comment: Optional[bytes]) -> None:
        self.data = data
        self.comment = comment or b""

    def parts(self) -> Optional[Tuple[str, int]]:
        """(GEN, COUNT) when this item holds only the first part of its value."""
        if not self.comment.startswith(b"clawgate-parts:"):
            return None
        match = _MARKER.fullmatch(self.comment)
        if not match or not 2 <= int(match.group(2)) <= _MAX_PARTS:
            raise unsafe("a keychain item's parts record is damaged; store the value again")
        return match.group(1).decode(), int(match.group(2))


class Keychain:
    """One keychain file, driven through security. Every command names it explicitly."""

    def __init__(self, tool: Tool, path: str) -> None:
        self.tool = tool
        self.path = path

    def exists(self) -> bool:
        # `create-keychain x.keychain` makes x.keychain-db on current macOS.
        return os.path.exists(self.path) or os.path.exists(self.path + "-db")

    def create(self, password: str) -> None:
        result = self.tool.session([["create-keychain", "-p", password, self.path]])
        if result.failed_line and not self.exists():
            raise unsafe(f"{self.path}: cannot create the keychain ({result.reason()})")

    def unlock(self, password: str) -> Result:
        return self.tool.session([["unlock-keychain", "-p", password, self.path]])

    def never_lock(self) -> None:
        """No -l, no -t: no lock on sleep, no inactivity timeout (keychain_set_settings.c)."""
        result = self.tool.run("set-keychain-settings", self.path)
        if result.code != 0:
            raise unsafe(f"{self.path}: cannot turn off auto-lock ({result.reason()})")

    def find(self, service: str, account: str) -> Optional[Item]:
        result = self.tool.run("find-generic-password", "-g", "-s", service, "-a", account, self.path)
        if result.code == NOT_FOUND:
            return None
        data = password_from(result.err) if result.code == 0 else None
        if data is None:
            raise unsafe(f"{self.path}: cannot read an item ({result.reason()})")
        found = attributes(result.out)
        return Item(data, found[0].get("icmt") if found else None)

    def comment(self, service: str, account: str) -> Optional[Item]:
        """The item's attributes only (no -g: its data is not decrypted)."""
        result = self.tool.run("find-generic-password", "-s", service, "-a", account, self.path)
        if result.code == NOT_FOUND:
            return None
        found = attributes(result.out)
        if result.code != 0 or not found:
            raise unsafe(f"{self.path}: cannot read an item ({result.reason()})")
        return Item(b"", found[0].get("icmt"))

    def read_many(self, pairs: Sequence[Tuple[str, str]]) -> Optional[List[bytes]]:
        """The data of several items in one -i session; None if any of them is missing."""
        result = self.tool.session([["find-generic-password", "-g", "-s", s, "-a", a, self.path] for s, a in pairs])
        values = passwords_from(result.err)
        return values if not result.failed_line and len(values) == len(pairs) else None

    def add(self, entries: Sequence[Tuple[str, str, bytes, str]]) -> None:
        """Write (service, account, data, comment) items with -U, in one -i session."""
        result = self.tool.session([self._add(*entry) for entry in entries])
        if result.failed_line:
            raise unsafe(f"{self.path}: cannot store a value ({result.reason()})")

    def _add(self, service: str, account: str, data: bytes, comment: str) -> List[str]:
        # -X: the data as hex, on stdin. Empty data has no -X: an update would keep the old bytes.
        command = ["add-generic-password", "-U", "-s", service, "-a", account, "-j", comment]
        return command + (["-X", data.hex()] if data else []) + [self.path]

    def room(self, service: str, account: str, comment: str) -> int:
        """How many bytes of data fit one -i line for this item (hex: two characters a byte)."""
        overhead = len(line(self._add(service, account, b"\0", comment))) - 2  # the line less one byte's hex
        return (LINE_MAX - overhead) // 2

    def delete(self, service: str, account: str) -> bool:
        result = self.tool.run("delete-generic-password", "-s", service, "-a", account, self.path)
        if result.code == NOT_FOUND:
            return False
        if result.code != 0:
            raise unsafe(f"{self.path}: cannot delete an item ({result.reason()})")
        return True

    def delete_quietly(self, pairs: Sequence[Tuple[str, str]]) -> None:
        if pairs:
            self.tool.session([["delete-generic-password", "-s", s, "-a", a, self.path] for s, a in pairs])

    def accounts(self, service: str) -> List[bytes]:
        result = self.tool.run("dump-keychain", self.path)
        if result.code != 0:
            raise unsafe(f"{self.path}: cannot list the keychain ({result.reason()})")
        return [account for svce, account in item_pairs(result.out) if svce == service.encode()]


class KeychainStore(Store):
    def __init__(self, cfg: Config) -> None:
        if not os.path.isabs(cfg.keychain):
            raise unsafe(f"[keychain] path = {cfg.keychain!r}: must be an absolute path")
        self._cfg = cfg
        self._keychain = Keychain(Tool(cfg.security), cfg.keychain)
        self._password_path = state.path(cfg, PASSWORD_FILE)
        self._unlocked = False

    # -- the store interface (secrets namespace only) ----------------------------------------
    def get(self, name: str) -> bytes:
        value = self._read(SERVICE, names.check(name))
        if value is None:
            raise NoSuchSecret(name)
        return value

    def exists(self, name: str) -> bool:
        name = names.check(name)
        self._open()
        return self._keychain.comment(SERVICE, name) is not None  # no -g: the value is not decrypted

    def put(self, name: str, value: bytes) -> None:
        self._write(SERVICE, names.check(name), value)

    def delete(self, name: str) -> bool:
        name = names.check(name)
        self._open()
        old = self._keychain.comment(SERVICE, name)
        if old is None or not self._keychain.delete(SERVICE, name):
            return False
        self._drop_parts(SERVICE, name, old)
        return True

    def names(self) -> List[str]:
        self._open()
        found = set()
        for account in self._keychain.accounts(SERVICE):
            text = account.decode("utf-8", "replace")
            if names.is_valid(text):
                found.add(text)
        return sorted(found)

    # -- clawgate's own items (seed.py): a fixed service each, never a secret name ------------
    def get_service_item(self, service: str) -> Optional[bytes]:
        return self._read(_own(service), SERVICE_ITEM_ACCOUNT)

    def put_service_item(self, service: str, value: bytes) -> None:
        self._write(_own(service), SERVICE_ITEM_ACCOUNT, value)

    def load_seed(self, root: bool = False) -> Optional[bytes]:
        return self.get_service_item(SEED_SERVICE + (ROOT_SEED_SUFFIX if root else ""))

    def save_seed(self, raw: bytes, root: bool = False) -> None:
        self.put_service_item(SEED_SERVICE + (ROOT_SEED_SUFFIX if root else ""), raw)

    # -- set-up ------------------------------------------------------------------------------
    def init(self) -> None:
        """Create the keychain with a fresh password, once; then unlock it, never to auto-lock."""
        with fsio.locked(state.path(self._cfg, "keychain.lock")):  # two inits must not make two passwords
            self._init_locked()

    def _init_locked(self) -> None:
        if not os.path.lexists(self._password_path):
            if self._keychain.exists():
                raise unsafe(f"{self._keychain.path} exists but {self._password_path} does not, so clawgate "
                             f"cannot unlock it; move the keychain aside and run: clawgate secrets init")
            # The file first: a crash before create-keychain leaves a password and no keychain,
            # which the next init completes; the other order would strand a keychain nobody can open.
            fsio.write_atomic(self._password_path, random.token_hex(32).encode("ascii"))
        if not self._keychain.exists():
            self._keychain.create(self._password())
        self._open()
        self._keychain.never_lock()

    # -- internals ---------------------------------------------------------------------------
    def _password(self) -> str:
        raw = fsio.read_checked(self._password_path, self._cfg.owner.uid)
        if raw is None:
            raise unsafe(f"{self._password_path}: missing; run: clawgate secrets init")
        return raw.decode("ascii", "replace").strip()

    def _open(self) -> None:
        """Unlock before use, every run: unlocking an unlocked keychain is harmless."""
        if self._unlocked:
            return
        if not self._keychain.exists():
            raise unsafe(f"{self._keychain.path}: no such keychain; run: clawgate secrets init")
        result = self._keychain.unlock(self._password())
        if result.failed_line:
            raise unsafe(f"{self._keychain.path}: cannot unlock it with {self._password_path} ({result.reason()})")
        self._unlocked = True

    def _read(self, service: str, account: str) -> Optional[bytes]:
        self._open()
        for _ in range(_READ_TRIES):
            item = self._keychain.find(service, account)
            if item is None:
                return None
            split = item.parts()
            if split is None:
                return item.data
            gen, count = split
            rest = self._keychain.read_many([(PARTS, _part(service, account, gen, i)) for i in range(1, count)])
            if rest is not None:
                return item.data + b"".join(rest)
            # A writer replaced the value (and dropped these parts) between our two reads.
        raise unsafe(f"{account}: its stored parts are incomplete; store the value again")

    def _write(self, service: str, account: str, value: bytes) -> None:
        self._open()
        old = self._keychain.comment(service, account)
        if not value:
            # No -X at all: an empty update would keep the old bytes, so the item is re-made.
            if old is not None:
                self._keychain.delete(service, account)
            self._keychain.add([(service, account, b"", "")])
        elif len(value) <= self._keychain.room(service, account, ""):
            self._keychain.add([(service, account, value, "")])
        else:
            self._write_parts(service, account, value)
        if old is not None:
            self._drop_parts(service, account, old)

    def _write_parts(self, service: str, account: str, value: bytes) -> None:
        gen = random.token_hex(8)
        size = min(self._keychain.room(service, account, f"clawgate-parts:{gen}:{_MAX_INDEX}"),
                   self._keychain.room(PARTS, _part(service, account, gen, int(_MAX_INDEX)), ""))
        if size < 64:
            raise unsafe(f"{self._keychain.path}: path too long to drive security -i")
        chunks = [value[at:at + size] for at in range(0, len(value), size)]
        later = [(PARTS, _part(service, account, gen, i), chunk, "") for i, chunk in enumerate(chunks) if i]
        try:
            self._keychain.add(later)
            self._keychain.add([(service, account, chunks[0], f"clawgate-parts:{gen}:{len(chunks)}")])
        except ClawgateError:
            current = self._keychain.comment(service, account)
            if current is None or (current.parts() or ("",))[0] != gen:
                self._keychain.delete_quietly([(s, a) for s, a, _, _ in later])
            raise

    def _drop_parts(self, service: str, account: str, old: Item) -> None:
        split = old.parts()
        if split is not None:
            gen, count = split
            self._keychain.delete_quietly([(PARTS, _part(service, account, gen, i)) for i in range(1, count)])


def _part(service: str, account: str, gen: str, index: int) -> str:
    return f"{service}:{account}:{gen}:{index}"


def _own(service: str) -> str:
    """A service clawgate keeps for itself (the TOTP seed): never the secrets' or their parts'."""
    if not _SERVICE_ITEM.fullmatch(service) or service in (SERVICE, PARTS):
        raise usage(f"{service!r}: not one of clawgate's own keychain services")
    return service
