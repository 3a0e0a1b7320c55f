"""HTTP/1.1 as the proxy reads it from the agent: strictly, within bounds, or not at all.

The agent writes every byte this module reads, so anything two parsers could read two ways is
refused rather than guessed at (request smuggling lives in those gaps): header folding, a bare
LF or CR, both Content-Length and Transfer-Encoding, two Content-Lengths, a Transfer-Encoding
other than exactly `chunked`, whitespace before a header's colon, control characters. Every
read has a deadline and every buffer a cap, so a slow or endless sender costs one bounded
connection and nothing more.
"""

import socket
import time

MAX_HEAD = 64 * 1024  # request line and headers together
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024
MAX_CHUNKS = 16384  # a body of a million one-byte chunks is framing to parse, not data to send
HEAD_DEADLINE = 20.0  # seconds for a whole request head, however it trickles in
IDLE = 15.0  # seconds a kept-alive connection may wait for its next request
BODY_DEADLINE = 300.0  # seconds for a whole request body
READ_SIZE = 64 * 1024
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Refusal(Exception):
    """A request the proxy will not serve: the HTTP status and one line that says why."""

    def __init__(self, status: int, reason: str, kind: str = "invalid_request_error") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.kind = kind


class Closed(Exception):
    """The peer closed the connection, or went quiet past its deadline, between requests."""


class Request:
    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: str, version: str, headers: "list[tuple[str, str]]") -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # (lower-case name, value), in order

    def all(self, name: str) -> "list[str]":
        return [value for key, value in self.headers if key == name]

    def one(self, name: str) -> "str | None":
        """The header's value; a header that may appear once and appears twice is refused."""
        found = self.all(name)
        if len(found) > 1:
            raise Refusal(400, f"{name} appears more than once")
        return found[0] if found else None

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for value in self.all("connection") for t in value.split(",")}
        return "close" not in tokens if self.version == "HTTP/1.1" else "keep-alive" in tokens


class Reader:
    """Bytes from one socket, read against deadlines, with what was read ahead kept.

    What is consumed is marked by an offset, never cut off the front of the buffer: a client
    sending a thousand one-byte chunks costs a thousand short steps, not a thousand copies of
    64 KiB (which is how a slow trickle would turn into the proxy's CPU time).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(left)
        data = self.sock.recv(READ_SIZE)
        if not data:
            return False
        self.buf = self.buf[self.pos:] + data if self.pos else self.buf + data
        self.pos = 0
        return True

    def buffered(self) -> int:
        return len(self.buf) - self.pos

    def head(self, first: bool) -> bytes:
        """The request head up to its blank line. Closed if the peer leaves (or idles) before
        sending a byte of it; Refusal if it is too long, too slow or cut short."""
        deadline = time.monotonic() + (HEAD_DEADLINE if first else IDLE)
        started = bool(self.buffered())
        searched = self.pos  # where the blank line cannot start before: a trickle is not rescanned
        while True:
            end = self.buf.find(b"\r\n\r\n", max(self.pos, searched - 3))
            if end >= 0:
                if end + 4 - self.pos > MAX_HEAD:
                    raise Refusal(431, f"request head larger than {MAX_HEAD // 1024} KiB")
                head, self.pos = self.buf[self.pos:end + 2], end + 4
                return head
            if self.buffered() > MAX_HEAD:
                raise Refusal(431, f"request head larger than {MAX_HEAD // 1024} KiB")
            searched = len(self.buf) - self.pos
            try:
                if not self._fill(deadline):
                    if started:
                        raise Refusal(400, "connection closed inside the request head")
                    raise Closed()
            except socket.timeout:
                if not started:
                    raise Closed() from None
                raise Refusal(408, "request head too slow") from None
            if not started and self.buffered():
                started = True
                deadline = time.monotonic() + HEAD_DEADLINE

    def read_some(self, limit: int, deadline: float) -> bytes:
        if not self.buffered() and not self._fill(deadline):
            raise Refusal(400, "connection closed inside the request body")
        data = self.buf[self.pos:self.pos + limit]
        self.pos += len(data)
        return data

    def line(self, deadline: float) -> bytes:
        searched = self.pos
        while True:
            end = self.buf.find(b"\r\n", max(self.pos, searched - 1))
            if end >= 0:
                line, self.pos = self.buf[self.pos:end], end + 2
                if b"\n" in line or b"\r" in line:
                    raise Refusal(400, "bare CR or LF in chunked framing")
                return line
            if self.buffered() > MAX_CHUNK_LINE:
                raise Refusal(400, "chunk line too long")
            searched = len(self.buf) - self.pos
            if not self._fill(deadline):
                raise Refusal(400, "connection closed inside the request body")


def parse_head(head: bytes) -> Request:
    lines = head.split(b"\r\n")[:-1]  # the head ends with CRLF: the last piece is empty
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise Refusal(400, "bare CR or LF in the request head")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not _TCHAR.issuperset(parts[0]):
        raise Refusal(400, "malformed request line")
    method, target, version = (part.decode("latin-1") for part in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise Refusal(505, "only HTTP/1.1 and HTTP/1.0")
    if not target or any(c <= 0x20 or c >= 0x7F for c in parts[1]):
        raise Refusal(400, "malformed request target")
    if len(lines) - 1 > MAX_HEADERS:
        raise Refusal(431, f"more than {MAX_HEADERS} headers")
    headers = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise Refusal(400, "header folding (obsolete line continuation) is refused")
        name, colon, value = line.partition(b":")
        if not colon or not name or not _TCHAR.issuperset(name):
            raise Refusal(400, "malformed header line")
        value = value.strip(b" \t")
        if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
            raise Refusal(400, "control character in a header value")
        headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
    request = Request(method, target, version, headers)
    framing(request)  # refuse ambiguous framing before anything else looks at the request
    return request


def framing(request: Request) -> "tuple[str, int]":
    """("length", N), ("chunked", 0) or ("none", 0); what two parsers could read two ways is refused."""
    lengths = request.all("content-length")
    codings = request.all("transfer-encoding")
    if lengths and codings:
        raise Refusal(400, "both Content-Length and Transfer-Encoding (request smuggling) is refused")
    if len(lengths) > 1:
        raise Refusal(400, "more than one Content-Length is refused")
    if codings:
        if len(codings) > 1 or codings[0].lower() != "chunked" or request.version != "HTTP/1.1":
            raise Refusal(400, "only `Transfer-Encoding: chunked`, once, on HTTP/1.1")
        return "chunked", 0
    if lengths:
        text = lengths[0]
        if not text.isdigit() or not text.isascii() or len(text) > 15:
            raise Refusal(400, "malformed Content-Length")
        return "length", int(text)
    return "none", 0


def body(reader: Reader, request: Request, limit: int):
    """The request body as it arrives, never more than `limit` bytes in all. Many small chunks
    already here come out as one piece: each piece is a write to the upstream."""
    kind, length = framing(request)
    deadline = time.monotonic() + BODY_DEADLINE
    if kind == "length":
        if length > limit:
            raise Refusal(413, f"request body larger than {limit // (1024 * 1024)} MiB")
        while length:
            piece = reader.read_some(min(length, READ_SIZE), deadline)
            length -= len(piece)
            yield piece
    elif kind == "chunked":
        total = chunks = 0
        pending: "list[bytes]" = []
        held = 0
        while True:
            size_text = reader.line(deadline).split(b";", 1)[0].strip(b" \t")
            if not size_text or not _HEX.issuperset(size_text) or len(size_text) > 8:
                raise Refusal(400, "malformed chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            chunks += 1
            if chunks > MAX_CHUNKS:
                raise Refusal(413, f"request body in more than {MAX_CHUNKS} chunks")
            total += size
            if total > limit:
                raise Refusal(413, f"request body larger than {limit // (1024 * 1024)} MiB")
            while size:
                piece = reader.read_some(min(size, READ_SIZE), deadline)
                size -= len(piece)
                pending.append(piece)
                held += len(piece)
            if reader.line(deadline) != b"":
                raise Refusal(400, "chunk not followed by CRLF")
            if held >= READ_SIZE or not reader.buffered():  # send now: nothing more is here yet
                yield b"".join(pending)
                pending, held = [], 0
        if pending:
            yield b"".join(pending)
        for _ in range(MAX_HEADERS):  # trailers are read and dropped: none reaches the upstream
            if reader.line(deadline) == b"":
                return
        raise Refusal(400, "too many trailer lines")
