"""The proxy's worker: one caller's connections, bounded, and one exchange.

Each connection gets a thread, within the caller's budget (front.py gives each caller a worker
process of its own, so the agent cannot use up the owner's), and every read and wait has a
deadline (wire.py, upstream.py), so a slow, silent or endless client holds one slot of its own
budget for a bounded time. One exchange, in order: read the head, permit() it (policy.py), open
the upstream, stream the body up, stream the answer back scrubbed of every form of the value
(redact.py), audit one record. A watcher cuts every exchange whose grant has ended, wherever it
is waiting."""

import hashlib
import http.client
import os
import socket
import threading
import time
import zlib

from .. import redact
from ..config import Config
from ..context import Caller, Context
from . import policy, upstream, wire

MAX_BODY = 32 * 1024 * 1024
CONNECTIONS_PER_CALLER = 64
GRANT_RECHECK = 1.0  # seconds between the watcher's checks that in-flight grants still hold
MAX_LOGGED_PATH = 256  # characters of a path in a record (with its full length): the agent writes it
# Hop-by-hop headers (RFC 9110 7.6.1) and what the proxy sets itself: never relayed upstream.
HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection",
    "host", "content-length", "expect", "accept-encoding",
    # A method in a header, which some APIs obey over the request's own: the route's --methods decide.
    "x-http-method-override", "x-http-method", "x-method-override",
))
# What of an upstream's answer headers reaches the agent: what API clients read, and no more. A
# header name is the upstream's to choose (it could carry the key) and Set-Cookie would hand the
# agent a session that outlives a revoke; neither passes.
ANSWER_HEADERS = frozenset((
    "content-type", "content-language", "content-disposition", "date", "etag", "last-modified", "cache-control",
    "expires", "age", "vary", "retry-after", "location", "link", "www-authenticate", "request-id", "x-request-id",
))
ANSWER_HEADER_PREFIXES = ("openai-", "anthropic-", "x-ratelimit-", "ratelimit-")


def _is_proxy_header(name: str) -> bool:
    return name.startswith("proxy-")


def answer_header_allowed(name: str) -> bool:
    return name in ANSWER_HEADERS or name.startswith(ANSWER_HEADER_PREFIXES)


class Worker:
    """One caller's connections (front.py hands them over): a thread each, within the caller's
    budget, and a watcher that cuts exchanges whose grant has ended."""

    def __init__(self, cfg: Config, layout, caller: Caller) -> None:
        self.cfg = cfg
        self.layout = layout
        self.caller = caller
        self.watcher = Watcher()
        self._open = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self.watcher.run, daemon=True).start()

    def admit(self, conn: socket.socket) -> None:
        with self._lock:
            busy = self._open >= CONNECTIONS_PER_CALLER
            if not busy:
                self._open += 1
        if busy:
            refuse_now(conn, 503, f"{self.caller.name} has {CONNECTIONS_PER_CALLER} connections open; close some")
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an event is sent when it comes, not an ACK later
        thread = threading.Thread(target=self._connection, args=(conn, self.caller), daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: give the slot back, refuse this one
            self._release()
            refuse_now(conn, 503, "the proxy is busy")

    def _release(self) -> None:
        with self._lock:
            self._open -= 1

    def _connection(self, conn: socket.socket, caller: Caller) -> None:
        ctx = Context(self.cfg, caller, self.layout)
        reader = wire.Reader(conn)
        try:
            first = True
            while True:
                try:
                    request = wire.parse_head(reader.head(first))
                except wire.Closed:
                    return
                first = False
                if not Exchange(ctx, conn, reader, request, self.watcher).run():
                    return
        except wire.Refusal as refusal:  # a head we could not read: record it, say why, once, and close
            _audit_quietly(ctx, route="-", method="-", path="-", status=refusal.status, result="refused",
                           cause=refusal.reason)
            _send_quietly(conn, error_response(refusal.status, refusal.reason, refusal.kind))
        except OSError:
            pass
        except Exception as err:  # noqa: BLE001 - a bug of ours: one record, never a traceback
            _audit_quietly(ctx, route="-", method="-", path="-", status=0, result="failed",
                           cause=f"internal error ({type(err).__name__})")
        finally:
            _close(conn)
            self._release()


class Watcher:
    """Cuts, within a second, every exchange whose grant ended (a revoke, an expiry), wherever it
    waits: sending the body up, waiting for the answer, relaying a stream. Its sockets are shut
    down, so whatever the exchange's thread is blocked on returns at once."""

    def __init__(self) -> None:
        self._watched: "set[Exchange]" = set()
        self._lock = threading.Lock()

    def watch(self, exchange: "Exchange") -> None:
        with self._lock:
            self._watched.add(exchange)

    def forget(self, exchange: "Exchange") -> None:
        with self._lock:
            self._watched.discard(exchange)

    def run(self) -> None:
        while True:
            time.sleep(GRANT_RECHECK)
            self.check(time.time())

    def check(self, now: float) -> None:
        with self._lock:
            watched = list(self._watched)
        decided: "dict[str, bool]" = {}
        for exchange in watched:
            secret = exchange.secret
            try:
                if secret not in decided:
                    decided[secret] = policy.still_allowed(exchange.ctx, secret, now)
            except Exception:  # noqa: BLE001 - a record we cannot read opens nothing
                decided[secret] = False
            if not decided[secret]:
                exchange.cut()


class Exchange:
    """One request and its answer. run() is True when the connection may carry another."""

    def __init__(self, ctx: Context, conn: socket.socket, reader: wire.Reader, request: wire.Request,
                 watcher: Watcher) -> None:
        self.ctx = ctx
        self.conn = conn
        self.reader = reader
        self.request = request
        self.watcher = watcher
        self.started = time.monotonic()
        self.sent_up = 0
        self.sent_down = 0
        self.status = 0
        self.tail = b""  # the answer's last bytes, sent after the audit record
        self.close_after = False  # an answer delimited by closing the connection
        self.secret = ""
        self.upstream: "http.client.HTTPConnection | None" = None
        self.was_cut = False
        self.route = request.target.lstrip("/").split("/", 1)[0].split("?", 1)[0][:64] or "-"
        self.path = request.target

    def cut(self) -> None:
        self.was_cut = True
        for sock in (self.upstream.sock if self.upstream is not None else None, self.conn):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def run(self) -> bool:
        """The exchange; its audit record is written before the client sees the answer end
        (the last chunk, or the refusal), so a client that got an answer finds it in the log."""
        result, cause = "ok", None
        try:
            allowed = policy.permit(self.ctx, self.request)
            self.route, self.path, self.secret = allowed.route.name, allowed.path, allowed.route.secret
            self.watcher.watch(self)  # an open tier too: the owner may tighten it mid-stream
            if (self.request.one("expect") or "").lower() == "100-continue":
                self.conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            elif self.request.one("expect") is not None:
                raise wire.Refusal(417, "only `Expect: 100-continue`")
            result, cause = self._forward(allowed)
            return result == "ok" and self.request.keep_alive and not self.close_after
        except wire.Refusal as refusal:
            result, cause, self.status = "refused", refusal.reason, refusal.status
            if not self.sent_down:
                self.tail = error_response(refusal.status, refusal.reason, refusal.kind)
            return False
        except (OSError, http.client.HTTPException, zlib.error) as err:
            result, cause = "failed", type(err).__name__
            if not self.sent_down and not self.was_cut:
                self.status = 502
                self.tail = error_response(502, "the upstream connection failed", "api_error")
            return False
        except Exception as err:  # noqa: BLE001 - a bug of ours: one record, never a traceback (it could hold the value)
            result, cause = "failed", f"internal error ({type(err).__name__})"
            if not self.sent_down and not self.was_cut:
                self.status = 502
                self.tail = error_response(502, "the proxy failed on this request", "api_error")
            return False
        finally:
            self.watcher.forget(self)
            if self.was_cut:
                result, cause, self.tail = "cut", "the grant ended during the exchange", b""
            path = self.path if len(self.path) <= MAX_LOGGED_PATH else self.path[:MAX_LOGGED_PATH] + "..."
            fields = dict(route=self.route, method=self.request.method, path=path, status=self.status,
                          up=self.sent_up, down=self.sent_down,
                          ms=int((time.monotonic() - self.started) * 1000), result=result)
            if len(self.path) > MAX_LOGGED_PATH:
                fields["path_length"] = len(self.path)
            if cause:
                fields["cause"] = cause
            _audit_quietly(self.ctx, **fields)
            if self.tail:
                _send_quietly(self.conn, self.tail)

    def _forward(self, allowed: policy.Permit) -> "tuple[str, str | None]":
        route = allowed.route
        request = self.request
        conn = self.upstream = upstream.take(route, time.monotonic())
        reusable = False
        try:
            # Connecting may have taken seconds: decide again before the value leaves, and not at all
            # if the watcher cut us meanwhile (it could not shut a socket that did not exist yet).
            if self.was_cut or not policy.still_allowed(self.ctx, route.secret, time.time()):
                self.was_cut = True
                raise wire.Refusal(403, "the grant ended", "permission_error")
            kind, length = wire.framing(request)
            conn.putrequest(request.method, allowed.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", route.host_header)
            dropped = HOP_BY_HOP | {route.header.lower(), allowed.token_header} | _connection_tokens(request)
            for name, value in request.headers:
                if name not in dropped and not _is_proxy_header(name):
                    conn.putheader(name, value)
            conn.putheader(route.header, route.inject(allowed.value.decode("latin-1")))
            conn.putheader("Accept-Encoding", "identity")  # a compressed answer could hide an echo from the scrubber
            if kind == "length":
                conn.putheader("Content-Length", str(length))
            elif kind == "chunked":
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for piece in wire.body(self.reader, request, MAX_BODY):
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if kind == "chunked" else piece)
                self.sent_up += len(piece)
            if kind == "chunked":
                conn.send(b"0\r\n\r\n")
            if self.was_cut:
                raise wire.Refusal(403, "the grant ended", "permission_error")
            response = conn.getresponse()
            outcome = self._relay(allowed, response)
            # Read to its end: chunked answers close themselves there; one of a Content-Length has
            # its count at 0 (and http.client leaves it open: without this, never reused).
            ended = response.isclosed() or response.length == 0
            response.close()
            # After an answer that has no body by rule (HEAD, 204, 304), an upstream that sent one
            # anyway would have it read as the next answer: such a connection is not kept.
            bodyless = request.method == "HEAD" or response.status in (204, 304)
            reusable = outcome[0] == "ok" and ended and not bodyless and not response.will_close and not self.was_cut
            return outcome
        finally:
            if reusable:
                upstream.give_back(route, conn, time.monotonic())
            else:
                conn.close()

    def _relay(self, allowed: policy.Permit, response: http.client.HTTPResponse) -> "tuple[str, str | None]":
        route = allowed.route
        scrubber = _scrubber(route.secret, allowed.value)
        scrub = scrubber.fresh()
        self.status = response.status
        if response.status == 101 or response.status < 200:
            raise wire.Refusal(502, "the upstream tried to switch protocols", "api_error")
        coding = (response.getheader("transfer-encoding") or "chunked").strip().lower()
        if coding != "chunked":  # http.client undoes chunked only: another coding would pass unscrubbed
            raise wire.Refusal(502, f"the upstream sent a {coding[:32]!r} transfer coding, which the proxy cannot "
                                    "scrub", "api_error")
        encoding = (response.getheader("content-encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise wire.Refusal(502, f"the upstream sent a {encoding[:32]!r} body, which the proxy cannot scrub",
                               "api_error")
        inflate = Inflater(encoding) if encoding != "identity" else None
        lines = [f"HTTP/1.1 {response.status} {_scrubbed(scrubber, response.reason)[:128]}"]
        for name, value in response.getheaders():
            # A folded value (obs-fold) could split the key across its lines: such a header is dropped.
            if answer_header_allowed(name.lower()) and "\r" not in value and "\n" not in value:
                lines.append(_scrubbed(scrubber, f"{name}: {value}"))
        bodyless = self.request.method == "HEAD" or response.status in (204, 304)
        chunked = not bodyless and self.request.version == "HTTP/1.1"
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif bodyless:
            lines.append("Content-Length: 0")
        else:
            self.close_after = True  # HTTP/1.0: the end of the answer is the end of the connection
        if not self.request.keep_alive or self.close_after:
            lines.append("Connection: close")
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), framed=False)
        if bodyless:
            return "ok", None
        while True:
            data = response.read1(wire.READ_SIZE) if hasattr(response, "read1") else response.read(wire.READ_SIZE)
            if not data:
                break
            for piece in inflate.feed(data) if inflate is not None else (data,):
                self._send(scrub.feed(piece), framed=chunked)
        self._send(scrub.finish(), framed=chunked)
        if chunked:
            self.tail = b"0\r\n\r\n"  # sent once the exchange is audited (run)
        return "ok", None

    def _send(self, data: bytes, framed: bool) -> None:
        if not data:
            return
        self.conn.settimeout(wire.IDLE * 4)  # a client that stops reading releases its slot
        self.conn.sendall(b"%x\r\n%s\r\n" % (len(data), data) if framed else data)
        self.sent_down += len(data)


class Inflater:
    """A gzip or deflate body, inflated in bounded pieces (a small compressed body may inflate a
    thousandfold): every gzip member, deflate with its zlib wrapper or raw, as servers send it."""

    def __init__(self, encoding: str) -> None:
        self.gzip = "gzip" in encoding
        self.wbits = 47 if self.gzip else zlib.MAX_WBITS
        self.inflate = zlib.decompressobj(self.wbits)
        self.started = False

    def feed(self, data: bytes):
        if not self.started and not self.gzip and data[:1] and (data[0] & 0x0F != 8 or int.from_bytes(data[:2], "big") % 31):
            self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate: no zlib header
        self.started = True
        while data:
            piece = self.inflate.decompress(data, wire.READ_SIZE)
            data = self.inflate.unconsumed_tail
            if piece:
                yield piece
            if self.inflate.eof:  # a gzip body may be several members, one after another
                data = self.inflate.unused_data + data
                if not data or not self.gzip:
                    return
                self.inflate = zlib.decompressobj(self.wbits)


def _connection_tokens(request: wire.Request) -> "set[str]":
    return {token.strip().lower() for value in request.all("connection") for token in value.split(",")}


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else " " for c in text)


_scrubbers: "dict[tuple[str, bytes], redact.Redactor]" = {}
_scrubbers_lock = threading.Lock()


def _scrubber(secret: str, value: bytes) -> redact.Redactor:
    """The compiled forms of a value, built once per value (a new value gets its own)."""
    key = (secret, hashlib.sha256(value).digest())
    with _scrubbers_lock:
        found = _scrubbers.get(key)
        if found is None:
            if len(_scrubbers) >= 64:
                _scrubbers.clear()
            found = _scrubbers[key] = redact.Redactor([(secret, value)])
        return found


def _scrubbed(scrubber: redact.Redactor, text: str) -> str:
    """A header line or reason phrase from the upstream: made one printable line first (a folded
    or CR-split value is one value), then every form of the value redacted."""
    scrub = scrubber.fresh()
    raw = _printable(text).encode("latin-1", "replace")
    return (scrub.feed(raw) + scrub.finish()).decode("latin-1")


def error_response(status: int, reason: str, kind: str) -> bytes:
    """A refusal an LLM client shows: the shape both OpenAI's and Anthropic's SDKs read."""
    import json

    body = json.dumps({"type": "error", "error": {"type": kind, "message": f"clawgate proxy: {reason}"}}).encode()
    phrase = http.client.responses.get(status, "Error")
    head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def refuse_now(conn: socket.socket, status: int, reason: str) -> None:
    """From the accept loop: never wait on this client."""
    conn.setblocking(False)
    _send_quietly(conn, error_response(status, reason, "permission_error" if status == 403 else "overloaded_error"))
    _close(conn)


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError:
        pass


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


class _Record:
    __slots__ = ("ctx", "fields", "outcome")

    def __init__(self, ctx: Context, fields: "dict[str, object]") -> None:
        self.ctx, self.fields = ctx, fields
        self.outcome: "str | None" = None  # "" once written, else why not


class Recorder:
    """The worker's audit records, appended in batches: each exchange's record is written before
    its client sees the answer end, but the records of exchanges ending together share one lock
    and one write. With a thread per exchange each taking the log's lock for itself, a flood of
    the agent's short exchanges kept the lock so busy that a waiter (the owner's record among
    them) gave up after the lock's bound and its record was lost; now one thread of a worker at a
    time asks for the lock, and whatever queued meanwhile goes with it."""

    def __init__(self) -> None:
        self._writing = threading.Lock()  # one writer at a time in this process
        self._queue_lock = threading.Lock()
        self._queue: "list[_Record]" = []

    def write(self, ctx: Context, fields: "dict[str, object]") -> None:
        record = _Record(ctx, fields)
        with self._queue_lock:
            self._queue.append(record)
        with self._writing:
            if record.outcome is None:  # no writer took it while we waited: write all that waits
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._flush(batch)
        if record.outcome:
            os.write(2, f"clawgate proxy: audit record not written ({record.outcome})\n".encode())

    @staticmethod
    def _flush(batch: "list[_Record]") -> None:
        by_caller: "dict[Caller, list[_Record]]" = {}
        for record in batch:  # a worker serves one caller; grouped all the same
            by_caller.setdefault(record.ctx.caller, []).append(record)
        for records in by_caller.values():
            try:
                records[0].ctx.audit_all([("proxy", record.fields) for record in records])
                outcome = ""
            except Exception as err:  # noqa: BLE001 - said on stderr (the journal), never a reason to stop serving
                outcome = type(err).__name__
            for record in records:
                record.outcome = outcome


RECORDER = Recorder()


def _audit_quietly(ctx: Context, **fields: object) -> None:
    """Every use is one record (in a batch: Recorder); one that cannot be written is said on
    stderr (the journal), never a reason to stop serving the other connections."""
    RECORDER.write(ctx, fields)
