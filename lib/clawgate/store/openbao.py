"""The `openbao` store (fleets): values, tiers, seeds and the gate record in OpenBao's KV v2.

Several hosts share one prefix, so a secret set on one is served on all, and the gate record
(last accepted step, lockout state) is one record for the fleet, changed only by KV v2
check-and-set (`options.cas`): of two hosts writing on the same version, exactly one wins
(gate.py retries the other on the new version). HashiCorp Vault speaks the same API.

Layout under MOUNT (KV v2) and PREFIX:
  PREFIX/secrets/<name with / as %>   {"value": base64}       (the % sent as %25)
  PREFIX/tiers/<name with / as %>     {"record": "TIER[ use-only]"}   absent = restricted; changed by CAS
  PREFIX/totp/seed, PREFIX/totp/seed-root   {"record": base64 of seed.py's record}
  PREFIX/totp/gate                    {"record": gate.py's record}, version = the CAS version
No secret name reaches totp/ or tiers/: every name is under secrets/.

A value or a tier is asked through the owner's OpenBao session where one runs (session.py:
the connection and the token kept warm by the proxy service), else of OpenBao itself
(baoclient.py); everything else, and every write, goes to OpenBao itself. Either way, any
failure is exit 6 with one line naming OpenBao and what to check: nothing falls back to a local
copy, and no value is ever written to the host's disk.
"""

import binascii
import time

from .. import names
from ..config import Config
from ..errors import unsafe
from . import ROOT_SEED_SUFFIX, Conflict, NoSuchSecret, Store
from . import session

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

    from .baoclient import Bao


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    try:
        return binascii.a2b_base64(str(text).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise unsafe(f"OpenBao: {what} is damaged (not base64); set it again") from None


def _quote(segment: str) -> str:
    """A KV path segment as a URL path: a valid name's only character that needs it is the %."""
    return segment.replace("%", "%25")



class OpenBaoStore(Store):
    """KV v2 under [openbao] mount and prefix; see the module's docstring for the layout."""

    shared_gate = True

    def __init__(self, settings: "Dict[str, str]", bao: "Optional[Bao]" = None, owner_uid: int = -1,
                 state_dir: str = "", via: "Optional[session.Client]" = None) -> None:
        self._settings = settings
        self._bao = bao
        self._owner_uid = owner_uid
        self._state_dir = state_dir
        self._session = via
        self._direct_until = 0.0  # monotonic time before which the session is not asked (it refused)
        self._fetched: "Dict[str, Dict[str, Optional[Dict[str, object]]]]" = {}  # prefetch()
        self._mount = settings["mount"]
        self._prefix = settings["prefix"]

    @classmethod
    def of(cls, cfg: Config) -> "OpenBaoStore":
        """The store as the broker and the commands use it: values and tiers through the owner's session."""
        via = session.Client(session.path(cfg), cfg.owner.uid) if session.available() else None
        return cls(cfg.openbao, owner_uid=cfg.owner.uid, state_dir=cfg.state_dir, via=via)

    @classmethod
    def direct(cls, cfg: Config) -> "OpenBaoStore":
        """Every question to OpenBao itself (the session's own store)."""
        return cls(cfg.openbao, owner_uid=cfg.owner.uid, state_dir=cfg.state_dir)

    @property
    def bao(self) -> "Bao":
        """The client that talks to OpenBao itself, made (and ssl imported) at its first use."""
        if self._bao is None:
            from .baoclient import Bao

            self._bao = Bao(self._settings, self._owner_uid, self._state_dir)
        return self._bao

    def _asked(self, question: bytes, name: str) -> "Optional[Tuple[bool, bytes]]":
        """(found, bytes) from the owner's session, or None when there is none to ask now."""
        if self._session is None or time.monotonic() < self._direct_until:
            return None
        try:
            return self._session.ask(question, name)
        except session.Refused:  # not there, or not taking us: direct for a while, then ask it again
            self._direct_until = time.monotonic() + session.RETRY_AFTER
            return None

    def _data(self, *parts: str) -> str:
        return "/".join([self._mount, "data", self._prefix, *parts])

    def _meta(self, *parts: str) -> str:
        return "/".join([self._mount, "metadata", self._prefix, *parts])

    def _read(self, *parts: str) -> "Optional[Tuple[Dict[str, object], int]]":
        """(data, version) of the record, or None if there is none."""
        status, body = self.bao.call("GET", self._data(*parts))
        if status == 404:
            return None
        inner = body.get("data")
        data = inner.get("data") if isinstance(inner, dict) else None
        meta = inner.get("metadata") if isinstance(inner, dict) else None
        if not isinstance(data, dict) or not isinstance(meta, dict):
            raise unsafe(f"OpenBao at {self.bao.address}: {'/'.join(parts)} is not a KV v2 record; "
                         "check [openbao] mount is a KV version 2 engine")
        return data, int(meta.get("version") or 0)

    def _write(self, parts: "Tuple[str, ...]", data: "Dict[str, object]", cas: "Optional[int]" = None) -> int:
        body: "Dict[str, object]" = {"data": data}
        if cas is not None:
            body["options"] = {"cas": cas}
        status, answer = self.bao.call("POST", self._data(*parts), body, ok=(200, 204, 400))
        if status == 400:
            errors = answer.get("errors")
            if cas is not None and "check-and-set" in str(errors):
                raise Conflict()
            raise self.bao._answer_failure(status, answer, self._data(*parts))
        if status == 404:
            raise self.bao.fail(f"no KV v2 engine at {self._mount}/", "check [openbao] mount")
        inner = answer.get("data")
        return int(inner.get("version") or 0) if isinstance(inner, dict) else 0

    def _erase(self, *parts: str) -> None:
        """Every version and the metadata: a removed value leaves no old version behind."""
        self.bao.call("DELETE", self._meta(*parts))

    @staticmethod
    def _key(name: str) -> str:
        return _quote(names.to_filename(names.check(name)))

    # -- secrets ----------------------------------------------------------------------------------
    def get(self, name: str) -> bytes:
        key = self._key(name)
        held, data = self._cached("secrets", key)
        if not held:
            asked = self._asked(b"value", name)
            if asked is not None:
                if not asked[0]:
                    raise NoSuchSecret(name)
                return asked[1]
            found = self._read("secrets", key)
            data = found[0] if found is not None else None
        if data is None or "value" not in data:
            raise NoSuchSecret(name)
        return _unb64(data["value"], names.shown(name))

    def exists(self, name: str) -> bool:
        status, _ = self.bao.call("GET", self._meta("secrets", self._key(name)))
        return status == 200

    def put(self, name: str, value: bytes) -> None:
        self._write(("secrets", self._key(name)), {"value": _b64(value)})

    def delete(self, name: str) -> bool:
        if not self.exists(name):
            return False
        self._erase("secrets", self._key(name))
        return True

    def names(self) -> "List[str]":
        status, body = self.bao.call("LIST", self._meta("secrets") + "/")
        inner = body.get("data") if status == 200 else None
        keys = inner.get("keys") if isinstance(inner, dict) else None
        if not isinstance(keys, list):
            return []
        found = (names.from_filename(str(key)) for key in keys if not str(key).endswith("/"))
        return sorted(name for name in found if names.is_valid(name))

    def init(self) -> None:
        """Log in afresh and check the prefix answers: `secrets init` and install.sh's last check."""
        self.bao.login(time.time())
        self.names()

    # -- a batch (resolve): records fetched in parallel first, each then served once from memory --
    batched = True
    WORKERS = 8  # connections at once: enough to hide the round trips, few for the server

    def prefetch(self, kind: str, wanted: "List[str]") -> None:
        """Fetch the tier records ("tiers") or values ("secrets") of `wanted` over parallel
        connections into memory (never to disk). Only a plain answer (200, 404) is kept: anything
        else is left for the one-by-one call to meet, and to report, as it would have."""
        import threading

        token = self.bao.token(time.time())
        pending = [self._key(name) for name in wanted]
        found: "Dict[str, Optional[Dict[str, object]]]" = {}
        stop: "List[bool]" = []

        def work() -> None:
            client = self.bao.clone()
            try:
                while not stop:
                    try:
                        key = pending.pop()  # another worker may have taken the last one since
                    except IndexError:
                        return
                    try:
                        status, body = client.request("GET", self._data(kind, key), None, token)
                    except Exception:  # noqa: BLE001 - left to the one-by-one call to meet and report, never a traceback
                        stop.append(True)
                        return
                    inner = body.get("data")
                    if status == 404:
                        found[key] = None
                    elif status == 200 and isinstance(inner, dict) and isinstance(inner.get("data"), dict):
                        found[key] = inner["data"]
            finally:
                client.close()

        workers = [threading.Thread(target=work) for _ in range(min(self.WORKERS, len(pending)))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self._fetched.setdefault(kind, {}).update(found)

    def drop_prefetched(self) -> None:
        self._fetched = {}

    def _cached(self, kind: str, key: str) -> "Tuple[bool, Optional[Dict[str, object]]]":
        held = self._fetched.get(kind)
        if held is not None and key in held:
            return True, held[key]
        return False, None

    # -- seeds, tiers, the gate record --------------------------------------------------------
    def load_seed(self, root: bool = False) -> "Optional[bytes]":
        found = self._read("totp", "seed" + (ROOT_SEED_SUFFIX if root else ""))
        return _unb64(found[0].get("record"), "the TOTP seed") if found is not None else None

    def save_seed(self, raw: bytes, root: bool = False) -> None:
        self._write(("totp", "seed" + (ROOT_SEED_SUFFIX if root else "")), {"record": _b64(raw)})

    def erase_seed(self, root: bool = False) -> None:
        """secrets migrate's undo: a seed it wrote, and only that, is removed again."""
        self._erase("totp", "seed" + (ROOT_SEED_SUFFIX if root else ""))

    def load_tier(self, name: str) -> "Optional[bytes]":
        key = self._key(name)
        held, data = self._cached("tiers", key)
        if not held:
            asked = self._asked(b"tier", name)
            if asked is not None:
                return asked[1] if asked[0] else None
            found = self._read("tiers", key)
            data = found[0] if found is not None else None
        return str(data.get("record", "")).encode("ascii", "replace") if data is not None else None

    def save_tier(self, name: str, record: "Optional[bytes]") -> None:
        if record is None:
            self._erase("tiers", self._key(name))
        else:
            self._write(("tiers", self._key(name)), {"record": record.decode("ascii")})

    def load_tier_versioned(self, name: str) -> "Tuple[Optional[bytes], int]":
        found = self._read("tiers", self._key(name))  # never the prefetched copy: its version is what counts
        if found is None:
            return None, 0
        return str(found[0].get("record", "")).encode("ascii", "replace"), found[1]

    def change_tier(self, name: str, record: bytes, version: int) -> None:
        self._write(("tiers", self._key(name)), {"record": record.decode("ascii")}, cas=version)

    def load_gate(self) -> "Tuple[Optional[bytes], int]":
        """The gate record and its version (0: none yet, so the first write is cas=0: create only)."""
        found = self._read("totp", "gate")
        if found is None:
            return None, 0
        return str(found[0].get("record", "")).encode(), found[1]

    def save_gate(self, raw: bytes, version: int) -> int:
        """Written only if the record is still at `version`; the new version, or Conflict."""
        return self._write(("totp", "gate"), {"record": raw.decode()}, cas=version)

    # -- what the token may do (install.sh's last check, doctor) ------------------------------
    def policy(self) -> "Tuple[List[str], List[str]]":
        """(missing, beyond): what clawgate needs that the token lacks, and what it may do far
        beyond its prefix (a root token, another owner's prefix, the policies themselves)."""
        probe = "clawgate-policy-probe"
        needed = {
            self._data("secrets", probe): {"create", "read", "update"},
            self._meta("secrets", probe): {"read", "delete"},
            self._meta("secrets") + "/": {"list"},
            self._data("totp", "gate"): {"create", "read", "update"},
            self._data("tiers", probe): {"create", "read", "update"},
        }
        sibling = "/".join([*self._prefix.split("/")[:-1], probe, "x"])  # another owner's prefix beside ours
        outside = [f"{self._mount}/data/{sibling}", f"{self._mount}/data/{probe}", "sys/policies/acl/" + probe,
                   "auth/token/create"]
        status, body = self.bao.call("POST", "sys/capabilities-self", {"paths": [*needed, *outside]})
        found = body.get("data") if isinstance(body.get("data"), dict) else body

        def caps(path: str) -> "set[str]":
            listed = found.get(path) if isinstance(found, dict) else None
            return {str(c) for c in listed} if isinstance(listed, list) else set()

        missing = [f"{path} ({', '.join(sorted(want - caps(path)))})" for path, want in needed.items()
                   if "root" not in caps(path) and not want <= caps(path)]
        beyond = [path for path in outside if caps(path) - {"deny"}]
        return missing, beyond
