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

Talking to it: HTTPS over ssl (HTTP/1.1 by hand, one kept-alive connection per process),
verified against [openbao] ca; AppRole login (role_id in the config, the secret id in
STATE/openbao-secret-id, 0600); the token cached in STATE/openbao-token (0600, `EXPIRY TOKEN`)
until shortly before it lapses, replaced by a fresh login then or when OpenBao answers 403.
Every call has a timeout. Any failure is exit 6 with one line naming OpenBao and what to check:
nothing falls back to a local copy, and no value is ever written to the host's disk.
"""

import binascii
import io
import json
import os
import socket
import ssl
import time

from .. import fsio, names
from ..config import Config
from ..errors import ClawgateError, unsafe
from . import ROOT_SEED_SUFFIX, Conflict, NoSuchSecret, Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

SECRET_ID_FILE = "openbao-secret-id"
TOKEN_FILE = "openbao-token"
TIMEOUT = 5.0  # seconds per call, all of it (connect, TLS, request, answer): a slow or stuck server is a refusal
SAID = 120  # characters of OpenBao's own error text a message quotes (escaped): it may be long, or hostile
EARLY = 30  # seconds: a token this close to its expiry is replaced before use
APPROLE_LOGIN = "auth/approle/login"


MAX_LINE = 8192  # an answer's status and header lines
MAX_HEADERS = 100
MAX_BODY = 64 << 20  # far above a 1 MiB value in base64 or a list of many names


class _Dropped(Exception):
    """The connection ended before an answer began: a kept-alive one the server closed."""


def _left(deadline: float) -> float:
    """Seconds left before the call's deadline; a timeout once there are none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("the call's deadline passed")
    return left


class _Timed(io.RawIOBase):
    """The socket as the answer's raw stream, each read bounded by what is left of the call's
    deadline: a socket timeout alone bounds each read, so a server trickling a byte at a time
    could hold a call for as long as it liked."""

    def __init__(self, sock: "ssl.SSLSocket") -> None:
        self._sock = sock
        self.deadline = 0.0  # set by each request

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview") -> int:  # type: ignore[override]
        self._sock.settimeout(_left(self.deadline))
        return self._sock.recv_into(buffer)


def _send(sock: "ssl.SSLSocket", data: bytes, deadline: float) -> None:
    """sendall within the deadline: sendall's own timeout is per send, as a read's is."""
    view = memoryview(data)
    while view:
        sock.settimeout(_left(deadline))
        view = view[sock.send(view[:65536]):]


def _errors(body: "Dict[str, object]") -> str:
    """OpenBao's error text, whitespace runs as one space (its `1 error occurred:\n\t* ...`)."""
    errors = body.get("errors")
    return " ".join(" ".join(str(e).split()) for e in errors) if isinstance(errors, list) else ""


def _excerpt(body: "Dict[str, object]") -> str:
    """A bounded, escaped excerpt of OpenBao's error text for a message: never the raw text."""
    from ..display import escape

    text = _errors(body)
    return escape(text[:SAID]) + ("..." if len(text) > SAID else "")


def _line(reader: "io.BufferedReader") -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise ValueError("a line cut short or too long")
    return line.rstrip(b"\r\n")


def _response(reader: "io.BufferedReader", method: str) -> "Tuple[int, bytes, bool]":
    """(status, body, keep the connection) of one HTTP/1.1 answer."""
    first = reader.readline(MAX_LINE + 1)
    if not first:
        raise _Dropped()
    parts = first.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError("no HTTP status line")
    status = int(parts[1])
    headers: "Dict[bytes, bytes]" = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader)
        if not line:
            break
        key, _, value = line.partition(b":")
        headers[key.strip().lower()] = value.strip()
    else:
        raise ValueError("too many header lines")
    keep = headers.get(b"connection", b"").lower() != b"close"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, b"", keep
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks: "List[bytes]" = []
        total = 0
        while True:
            size = int(_line(reader).split(b";", 1)[0], 16)
            total += size
            if size < 0 or total > MAX_BODY:
                raise ValueError("an answer too large")
            if size == 0:
                while _line(reader):  # trailers, then the blank line
                    pass
                return status, b"".join(chunks), keep
            chunk = reader.read(size)
            if len(chunk) != size or _line(reader):
                raise ValueError("a chunk cut short")
            chunks.append(chunk)
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        if not 0 <= length <= MAX_BODY:
            raise ValueError("an answer too large")
        body = reader.read(length)
        if len(body) != length:
            raise ValueError("an answer cut short")
        return status, body, keep
    body = reader.read(MAX_BODY + 1)  # neither: the answer ends with the connection
    if len(body) > MAX_BODY:
        raise ValueError("an answer too large")
    return status, body, False


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    try:
        return binascii.a2b_base64(str(text).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise unsafe(f"OpenBao: {what} is damaged (not base64); set it again") from None


def _plain(token: str) -> bool:
    """A token that fits a header line as it is: printable ASCII, no space (nor CR or LF)."""
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


def _quote(segment: str) -> str:
    """A KV path segment as a URL path: a valid name's only character that needs it is the %."""
    return segment.replace("%", "%25")


class Bao:
    """One OpenBao server as the config names it: authenticated calls, failures as exit 6 lines."""

    def __init__(self, settings: "Dict[str, str]", owner_uid: int, state_dir: str) -> None:
        self.address = settings["address"]
        self.ca = settings["ca"]
        self.role_id = settings["role_id"]
        self._owner_uid = owner_uid
        self._token_path = os.path.join(state_dir, TOKEN_FILE)
        self.secret_id_path = os.path.join(state_dir, SECRET_ID_FILE)
        self._host, self._port = settings["host"], int(settings["port"])
        self._conn: "Optional[Tuple[ssl.SSLSocket, io.BufferedReader, _Timed]]" = None
        self._token: "Optional[str]" = None

    # -- failures: one line, naming OpenBao and what to check ------------------------------------
    def fail(self, what: str, check: str) -> ClawgateError:
        return unsafe(f"OpenBao at {self.address}: {what}; {check}")

    def _answer_failure(self, status: int, body: "Dict[str, object]", path: str) -> ClawgateError:
        from ..display import escape

        said = _excerpt(body) or f"HTTP {status}"
        if status == 503 and "sealed" in _errors(body).lower():
            return self.fail("sealed", "its operators must unseal it (bao operator unseal); try again then")
        if status == 429:
            return self.fail("a standby node answered (429)", "point [openbao] address at the active node")
        if status == 403:  # summarised: its text says no more than the status (and may be long)
            return self.fail(f"permission denied on {escape(path)}",
                             "check the policy of the AppRole in [openbao] role_id covers the prefix")
        if status == 404 and "no handler for route" in _errors(body):
            return self._unrouted(path)
        return self.fail(f"refused {escape(path)} (HTTP {status}: {said})",
                         "check the server's log and the [openbao] settings")

    def _unrouted(self, path: str) -> ClawgateError:
        """A 404 "no handler for route": nothing is mounted there (not a missing record, nor a policy gap)."""
        from ..display import escape

        if path.startswith("auth/"):
            return self.fail(f"no auth method at {escape('/'.join(path.split('/')[:2]))}/ (no handler for route)",
                             "enable AppRole there (bao auth enable approle)")
        mount = escape(path.split("/", 1)[0])
        return self.fail(f"no secrets engine mounted at {mount}/ (no handler for route)",
                         "check [openbao] mount names a KV version 2 mount (bao secrets list)")

    def _forbidden(self, path: str, token: str) -> ClawgateError:
        """A 403 on a fresh token: the policy's answer, or a token this host may not use at all
        (the role's token_bound_cidrs): a token that cannot even look itself up is the latter."""
        status, _ = self.request("GET", "auth/token/lookup-self", None, token)
        if status == 403:
            return self.fail("refused this host's fresh token on every path, even auth/token/lookup-self",
                             "check the AppRole's token_bound_cidrs lists this host's address "
                             "(and that its tokens keep the default policy)")
        return self._answer_failure(403, {}, path)

    def _login_refused(self, body: "Dict[str, object]") -> ClawgateError:
        """A refused AppRole login, told apart by OpenBao's text where it says which; else both causes."""
        text = _errors(body).lower()
        if "cidr" in text:
            return self.fail("refused the AppRole login from this host's address (outside the role's "
                             "secret_id_bound_cidrs)", "add this host's address to the role's CIDRs")
        if "invalid role or secret id" in text:
            return self.fail("refused the AppRole login (wrong role id, or the secret id expired or was revoked)",
                             "check [openbao] role_id and issue a new secret id (install.sh --store openbao)")
        return self.fail("refused the AppRole login (a wrong role id or secret id, or this host's address outside "
                         "the role's secret_id_bound_cidrs)",
                         "check [openbao] role_id, the role's CIDRs, and issue a new secret id (install.sh --store openbao)")

    # -- the connection ---------------------------------------------------------------------------
    # HTTP/1.1 by hand over one kept-alive TLS socket: http.client would add the email package (and
    # urllib.parse, re, datetime) to every `get`, about as much again as a whole file-store `get`.
    # The server is the one the CA vouches for; what it says is bounded all the same.
    def _connect(self, deadline: float) -> "Tuple[ssl.SSLSocket, io.BufferedReader, _Timed]":
        try:
            context = ssl.create_default_context(cafile=self.ca)
        except (OSError, ssl.SSLError) as err:
            raise self.fail(f"cannot load the CA file {self.ca} ({err})", "check [openbao] ca") from None
        # The host as bytes: a str would have ssl and getaddrinfo import the idna codec (and stringprep).
        address = (self._host.encode("ascii"), self._port)
        raw = socket.create_connection(address, timeout=_left(deadline))  # type: ignore[arg-type]  # bytes work
        try:
            raw.settimeout(_left(deadline))  # the handshake's wait is one deadline in ssl, not one per read
            tls = context.wrap_socket(raw, server_hostname=self._host.encode("ascii"))
        except BaseException:
            raw.close()
            raise
        stream = _Timed(tls)
        return tls, io.BufferedReader(stream), stream

    def request(self, method: str, path: str, body: "Optional[Dict[str, object]]" = None,
                token: "Optional[str]" = None) -> "Tuple[int, Dict[str, object]]":
        """(status, decoded JSON body) of one call to /v1/PATH; transport failures are exit 6.

        The whole call (connect, TLS, request, the full answer) is bounded by one deadline.
        One thread at a time: open_store gives each thread its own client (and connection)."""
        deadline = time.monotonic() + TIMEOUT
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} /v1/{path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\nAccept: application/json\r\n"
                f"Content-Length: {len(data)}\r\n" + ("Content-Type: application/json\r\n" if body is not None else "")
                + (f"X-Vault-Token: {token}\r\n" if token else "") + "\r\n")
        for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
            try:
                if self._conn is None:
                    self._conn = self._connect(deadline)
                sock, reader, stream = self._conn
                stream.deadline = deadline
                _send(sock, head.encode("ascii") + data, deadline)
                status, raw, keep = _response(reader, method)
                if not keep:
                    self.close()
                break
            except (_Dropped, BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                    ssl.SSLEOFError, ssl.SSLZeroReturnError):
                self.close()
                if attempt == 2:
                    raise self._dropped() from None
            except (OSError, ValueError) as err:  # ssl.SSLError and socket.timeout are OSErrors
                self.close()
                raise self._transport_failure(err) from None
        try:
            decoded = json.loads(raw) if raw.strip() else {}
        except ValueError:
            decoded = {}
        return status, decoded if isinstance(decoded, dict) else {}

    # What went wrong on the way, told apart: the fix differs (the CA file, the server, the network).
    def _dropped(self) -> ClawgateError:
        return self.fail("closed or reset the connection before answering",
                         "is OpenBao running and healthy at [openbao] address? (its log says why)")

    def _transport_failure(self, err: "OSError | ValueError") -> ClawgateError:
        if isinstance(err, ssl.SSLCertVerificationError):
            return self.fail(f"TLS certificate not verified ({err.verify_message or err.reason})",
                             f"check [openbao] ca ({self.ca}) is the CA that signed the server's certificate")
        if isinstance(err, ssl.SSLError):
            return self.fail(f"TLS handshake failed ({err.reason or err})",
                             "check [openbao] address is OpenBao's TLS listener")
        if isinstance(err, (socket.timeout, TimeoutError)):
            return self.fail(f"no answer within {TIMEOUT:g}s", "check that it is running and reachable")
        if isinstance(err, ConnectionRefusedError):
            return self.fail("unreachable (connection refused)",
                             "is OpenBao running, and listening at [openbao] address?")
        if isinstance(err, OSError):
            return self.fail(f"unreachable ({err.strerror or err})",
                             "is OpenBao running and reachable? check [openbao] address and the network")
        return self.fail(f"answered something that is not HTTP ({err})", "check [openbao] address")

    def close(self) -> None:
        if self._conn is not None:
            sock, reader, _ = self._conn
            self._conn = None
            reader.close()
            sock.close()

    # -- the token --------------------------------------------------------------------------------
    def _cached_token(self, now: float) -> "Optional[str]":
        raw = fsio.read_checked(self._token_path, self._owner_uid)
        if raw is None:
            return None
        expiry, _, token = raw.decode("ascii", "replace").strip().partition(" ")
        try:
            if float(expiry) - EARLY > now and _plain(token):
                return token
        except ValueError:
            pass
        return None  # lapsed or damaged: log in again

    def login(self, now: float) -> str:
        """A fresh token from the secret id in the state dir, cached there with its expiry."""
        secret_id = fsio.read_checked(self.secret_id_path, self._owner_uid)
        if secret_id is None:
            raise self.fail(f"no AppRole secret id in {self.secret_id_path}",
                            "give it to install.sh on stdin (--store openbao)")
        token, lifetime = self.authenticate(secret_id.decode("utf-8", "replace").strip())
        fsio.write_atomic(self._token_path, f"{now + lifetime:.0f} {token}\n".encode("ascii"))
        self._token = token
        return token

    def authenticate(self, secret_id: str) -> "Tuple[str, float]":
        """(token, seconds it lives) from an AppRole login; nothing written."""
        status, body = self.request("POST", APPROLE_LOGIN, {"role_id": self.role_id, "secret_id": secret_id})
        auth = body.get("auth")
        if status in (400, 403) or (status == 200 and not isinstance(auth, dict)):
            raise self._login_refused(body)
        if status != 200 or not isinstance(auth, dict):
            raise self._answer_failure(status, body, APPROLE_LOGIN)
        token = str(auth.get("client_token") or "")
        lease = auth.get("lease_duration")
        lifetime = float(lease) if isinstance(lease, (int, float)) and lease > 0 else 365 * 86400.0
        if not _plain(token):
            raise self.fail("answered the login without a token", "check the AppRole's token settings")
        return token, lifetime

    def unwrap(self, wrapping_token: str) -> str:
        """The secret id inside a response-wrapped answer (sys/wrapping/unwrap: it works once)."""
        status, body = self.request("POST", "sys/wrapping/unwrap", {}, wrapping_token)
        data = body.get("data")
        secret_id = data.get("secret_id") if isinstance(data, dict) else None
        if status != 200 or not isinstance(secret_id, str) or not secret_id:
            raise self.fail("did not unwrap the secret id (the wrapping token is spent, expired or not one)",
                            "ask for a new wrapped secret id (-wrap-ttl) and give it once")
        return secret_id

    def token(self, now: float) -> str:
        """The token calls use now: from memory, the cache file, or a fresh login."""
        token = self._token or self._cached_token(now) or self.login(now)
        self._token = token
        return token

    def clone(self) -> "Bao":
        """Another client of the same server with its own connection (prefetch's workers)."""
        twin = Bao.__new__(Bao)
        twin.__dict__.update(self.__dict__)
        twin._conn = None
        return twin

    def use(self, token: str) -> None:
        """Call with this token (install.sh's check: a token that is not cached)."""
        self._token = token

    def call(self, method: str, path: str, body: "Optional[Dict[str, object]]" = None,
             ok: "Tuple[int, ...]" = (200, 204), now: "Optional[float]" = None) -> "Tuple[int, Dict[str, object]]":
        """An authenticated call: statuses in `ok` (and 404) come back, anything else is exit 6.

        A 403 on a cached token is answered by one fresh login and one retry: the token may have
        been revoked or have lapsed early; a 403 on a fresh token is the policy's answer."""
        when = time.time() if now is None else now
        token = self._token or self._cached_token(when)
        fresh = token is None
        if token is None:
            token = self.login(when)
        status, answer = self.request(method, path, body, token)
        if status == 403 and not fresh:
            token = self.login(when)
            status, answer = self.request(method, path, body, token)
        self._token = token
        if status == 404 and "no handler for route" in _errors(answer):
            raise self._unrouted(path)  # a missing mount, not a missing record
        if status in ok or status == 404:
            return status, answer
        if status == 403:
            raise self._forbidden(path, token)
        raise self._answer_failure(status, answer, path)


class OpenBaoStore(Store):
    """KV v2 under [openbao] mount and prefix; see the module's docstring for the layout."""

    shared_gate = True

    def __init__(self, settings: "Dict[str, str]", bao: Bao) -> None:
        self.bao = bao
        self._fetched: "Dict[str, Dict[str, Optional[Dict[str, object]]]]" = {}  # prefetch()
        self._mount = settings["mount"]
        self._prefix = settings["prefix"]

    @classmethod
    def of(cls, cfg: Config) -> "OpenBaoStore":
        return cls(cfg.openbao, Bao(cfg.openbao, cfg.owner.uid, cfg.state_dir))

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
