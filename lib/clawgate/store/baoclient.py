"""Talking to OpenBao: HTTPS by hand over ssl, AppRole login, the cached token, failures as exit 6.

One kept-alive connection per client, verified against [openbao] ca; AppRole login (role_id in
the config, the secret id in STATE/openbao-secret-id, 0600); the token cached in
STATE/openbao-token (0600, `EXPIRY TOKEN`) until shortly before it lapses, replaced by a fresh
login then or when OpenBao answers 403. Every call has one deadline. Any failure is exit 6 with
one line naming OpenBao and what to check. HashiCorp Vault speaks the same API.

Its imports (ssl, json, socket) cost a fresh process more than a whole file-store `get`: the
store (openbao.py) loads this module only when it talks to OpenBao itself, not through the
owner's session (session.py).
"""

import io
import json
import os
import socket
import ssl
import time

from .. import fsio, safepath
from ..cafile import MAX_CA
from ..errors import ClawgateError, unsafe

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


def _plain(token: str) -> bool:
    """A token that fits a header line as it is: printable ASCII, no space (nor CR or LF)."""
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


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
        self._context: "Optional[ssl.SSLContext]" = None

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
    def trust(self) -> "ssl.SSLContext":
        """The TLS context that trusts [openbao] ca alone, loaded once per client (a long-lived
        one, the owner's session, reads the CA file when it starts)."""
        if self._context is None:
            try:  # read by safepath's strict rule: whoever could change this file could vouch for any server
                pem = safepath.read_file(self.ca, self._owner_uid, MAX_CA, strict=True).decode("ascii")
                self._context = ssl.create_default_context(cadata=pem)
            except safepath.Refused as err:
                raise self.fail(f"will not trust the CA file {self.ca} ({err})",
                                "put [openbao] ca where only root or the owner can change it (/etc/ssl, say)") from None
            except (OSError, ValueError, ssl.SSLError) as err:  # UnicodeDecodeError included
                raise self.fail(f"cannot load the CA file {self.ca} ({err})", "check [openbao] ca") from None
        return self._context

    def _connect(self, deadline: float) -> "Tuple[ssl.SSLSocket, io.BufferedReader, _Timed]":
        context = self.trust()
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

    def wrapped_role(self, wrapping_token: str) -> str:
        """The AppRole a wrapping token's secret id is of (sys/wrapping/lookup: it does not spend
        the token), or "" when OpenBao does not say."""
        try:
            status, body = self.request("POST", "sys/wrapping/lookup", {"token": wrapping_token})
        except ClawgateError:
            return ""
        data = body.get("data")
        path = str(data.get("creation_path", "")) if status == 200 and isinstance(data, dict) else ""
        parts = path.split("/")
        role = parts[3] if len(parts) == 5 and parts[:3] == ["auth", "approle", "role"] and parts[4] == "secret-id" else ""
        return role if _plain(role) else ""

    def unwrap(self, wrapping_token: str) -> "Tuple[str, str]":
        """(secret id, its accessor) inside a response-wrapped answer (sys/wrapping/unwrap: it works once)."""
        status, body = self.request("POST", "sys/wrapping/unwrap", {}, wrapping_token)
        data = body.get("data")
        secret_id = data.get("secret_id") if isinstance(data, dict) else None
        if status != 200 or not isinstance(secret_id, str) or not secret_id:
            raise self.fail("did not unwrap the secret id (the wrapping token is spent, expired or not one)",
                            "ask for a new wrapped secret id (-wrap-ttl) and give it once")
        accessor = data.get("secret_id_accessor") if isinstance(data, dict) else None
        return secret_id, accessor if isinstance(accessor, str) and _plain(accessor) else ""

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
