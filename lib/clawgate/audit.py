"""The hash-chained audit log, mirrored to syslog (auth facility).

One JSON object per line, `hash` always last:
  {"seq":7,"ts":"2026-11-24T01:02:03Z","event":"get",...,"hash":"<sha256 hex>"}
hash = sha256(previous line's hash + this line up to `,"hash":"`). An edited
line breaks its own hash; a deleted or moved line breaks the chain and the
sequence. Appending reads only the log's tail, so its cost does not grow with
the log. Lines carry names, callers and decisions, never secret values.
"""

import os
import stat

from . import durations, fsio, guard
from .errors import io_error, unsafe
from .records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms on every `get`): annotations
if TYPE_CHECKING:  # that name its types are strings, never evaluated at run time
    from typing import Iterable, Iterator, List, Optional, Tuple

try:  # hashlib pulls in OpenSSL, which costs more than the rest of a `get`
    from _sha256 import sha256  # type: ignore[import-not-found]  # Python <= 3.11
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # Python >= 3.12
    except ImportError:
        from hashlib import sha256

GENESIS = b"0" * 64
_HASH_KEY = b',"hash":"'
_TAIL_BLOCK = 8192
MAX_FIELD = 4096  # characters of one field's encoding; a longer one keeps this much, its length and sha256
REPAIR = "repair"  # the record an append writes after cutting back a torn tail
_REPAIR_MARK = b'"event":"repair",'


def _quote(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # nothing to escape: the usual case, and 20x faster than the loop below
    out = ['"']
    for ch in text:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f" or "\ud800" <= ch <= "\udfff":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(value: object) -> str:
    if type(value) is str:  # most fields: skip the checks below
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if value is None:
        return "null"
    return _quote(str(value))


_last_stamp: list = [None, ""]  # (time, its text): a batch stamps all its lines with one time


def _stamp(now: float) -> str:
    if _last_stamp[0] != now:
        _last_stamp[:] = [now, durations.stamp(now)]
    return _last_stamp[1]


def _body(seq: int, now: float, event: str, fields: "Iterable[Tuple[str, object]]") -> str:
    stamp = _stamp(now)
    parts = [f'{{"seq":{seq}', f'"ts":"{stamp}"', f'"event":{_quote(event)}']
    for key, value in fields:
        if value is None:
            continue
        text = _encode(value)
        if len(text) > MAX_FIELD:  # the agent chooses argv and names: one record must stay small
            whole = text.encode("utf-8", "backslashreplace")
            parts += [f"{_quote(key)}:{_quote(text[:MAX_FIELD])}", f"{_quote(key + '_length')}:{len(whole)}",
                      f"{_quote(key + '_sha256')}:\"{sha256(whole).hexdigest()}\""]
        else:
            parts.append(f"{_quote(key)}:{text}")
    return ",".join(parts)


def _chain(prev_hash: bytes, prefix: bytes) -> bytes:
    return sha256(prev_hash + prefix).hexdigest().encode()


class _Tail(Record):
    __slots__ = ("seq", "hash", "needs_newline", "torn")
    seq: int
    hash: bytes
    needs_newline: bool
    torn: bytes  # bytes after the last whole line that no record explains: a write cut short


def _read_tail(fd: int, size: int) -> _Tail:
    if size == 0:
        return _Tail(0, GENESIS, False, b"")
    end = size
    data = b""
    torn = b""
    while True:
        start = max(0, end - _TAIL_BLOCK)
        data = os.pread(fd, end - start, start) + data
        end = start
        if not torn and not data.endswith(b"\n"):
            cut = data.rfind(b"\n")
            if cut >= 0 or start == 0:
                piece = data[cut + 1:]
                if _parse_line(piece) is None:  # not a whole record missing only its newline: torn
                    torn, data = piece, data[:cut + 1]
                    if not data and start == 0:
                        return _Tail(0, GENESIS, False, torn)
        body = data.rstrip(b"\n")
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            last = body[cut + 1:]
            break
    parsed = _parse_line(last)
    if parsed is None:  # a whole line, newline and all, that is not ours: edited, not torn; fail closed
        raise unsafe("audit log: its last line is damaged; run: clawgate audit verify")
    return _Tail(parsed[0], parsed[2], not torn and not data.endswith(b"\n"), torn)


def _parse_line(line: bytes) -> "Optional[Tuple[int, bytes, bytes]]":
    """(seq, prefix, recorded hash), or None when the line is not one of ours."""
    at = line.rfind(_HASH_KEY)
    if not line.startswith(b'{"seq":') or at < 0 or not line.endswith(b'"}'):
        return None
    recorded = line[at + len(_HASH_KEY):-2]
    seq_text = line[7:line.find(b",")]
    if len(recorded) != 64 or not seq_text.isdigit():
        return None
    return int(seq_text), line[:at], recorded


def _open_log(path: str, owner_uid: int) -> int:
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | fsio.NOFOLLOW | fsio.CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as err:
        raise unsafe(f"{path}: cannot open the audit log ({err.strerror})") from None
    st = os.fstat(fd)
    if st.st_uid != owner_uid and os.geteuid() == 0 and st.st_size == 0:
        os.fchown(fd, owner_uid, -1)  # created by elevate's root side: hand it to the owner
        st = os.fstat(fd)
    if st.st_uid != owner_uid or st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise unsafe(f"{path}: the audit log must be the owner's regular file, mode 0600")
    return fd


def append(path: str, owner_uid: int, event: str, fields: "Iterable[Tuple[str, object]]", now: float) -> None:
    append_many(path, owner_uid, [(event, fields)], now)


def append_many(path: str, owner_uid: int, records: "Iterable[Tuple[str, Iterable[Tuple[str, object]]]]",
                now: float) -> None:
    """Append (event, fields) records in order, under one lock, with one tail read and one write.

    `resolve` decides up to 512 ids in one request: one lock per line would cost more than
    deciding them.
    """
    records = [(event, list(fields)) for event, fields in records]
    if not records:
        return
    prefixes = []
    with guard.critical():  # a relayed signal acts after the whole batch is written, never half-way
        fd = _open_log(path, owner_uid)
        try:
            fsio.lock(fd, "the audit log")
            size = os.fstat(fd).st_size
            tail = _read_tail(fd, size)
            if tail.torn:  # a crash tore the last write: cut it back, under the lock, and say so
                records.insert(0, (REPAIR, _repair_fields(tail.torn, size)))
                size -= len(tail.torn)
            seq, prev_hash, lines = tail.seq, tail.hash, [b"\n" if tail.needs_newline else b""]
            for event, fields in records:
                seq += 1
                prefix = _body(seq, now, event, fields).encode("utf-8", "backslashreplace")
                prev_hash = _chain(prev_hash, prefix)
                lines.append(prefix + _HASH_KEY + prev_hash + b'"}\n')
                prefixes.append(prefix)
            if tail.torn:
                os.ftruncate(fd, size)
            _write_whole(fd, size, b"".join(lines))
        finally:
            os.close(fd)
    for prefix in prefixes:
        _to_syslog(prefix)


def _repair_fields(torn: bytes, size: int) -> "List[Tuple[str, object]]":
    return [("cause", "torn tail cut back (a write cut short by a crash)"), ("offset", size - len(torn)),
            ("cut_bytes", len(torn)), ("cut_sha256", sha256(torn).hexdigest()),
            ("cut_head", torn[:256].decode("utf-8", "backslashreplace"))]


def _write_whole(fd: int, size: int, data: bytes) -> None:
    """All of `data` at `size` (the end of the log, a torn tail already cut), or nothing.

    A write can fail part-way (a full disk, a limit guard did not catch): cut back to `size`,
    still under the lock, and refuse. Only SIGKILL can stop us between; the next append repairs that.
    """
    view = memoryview(data)
    try:
        while view:  # O_APPEND: a short write's remainder still lands at the end, and we hold the lock
            view = view[os.write(fd, view):]
    except OSError as err:
        os.ftruncate(fd, size)
        raise io_error(f"cannot write the audit log ({err.strerror}); nothing was done") from None


def _to_syslog(prefix: bytes) -> None:
    try:
        import syslog

        syslog.openlog("clawgate", syslog.LOG_PID, syslog.LOG_AUTH)
        syslog.syslog(syslog.LOG_NOTICE, prefix.decode("utf-8", "replace") + "}")
    except (ImportError, OSError):  # pragma: no cover - no syslog on this host
        pass


class Problem(Record):
    __slots__ = ("line", "reason")
    line: int
    reason: str


def verify_lines(lines: "Iterable[bytes]", notes: "Optional[List[Problem]]" = None) -> "Tuple[int, List[Problem]]":
    """(lines checked, problems). Each problem names the line and what happened to it.

    notes, if given, receives what is explained and accepted: each repair record, and a torn
    last line (no newline) that the next append will cut back.
    """
    prev_hash, prev_seq, count = GENESIS, 0, 0
    problems: List[Problem] = []
    notes = [] if notes is None else notes
    for count, raw in enumerate(lines, 1):
        parsed = _parse_line(raw.rstrip(b"\n"))
        if parsed is None:
            if not raw.endswith(b"\n"):  # the last line, cut short by a crash: a tear, not an edit
                notes.append(Problem(count, f"torn by a crash ({len(raw)} bytes); the next audited action "
                                            "cuts it back and records that"))
                count -= 1
                continue
            problems.append(Problem(count, "not an audit record (damaged or inserted)"))
            continue
        if _REPAIR_MARK in parsed[1]:
            notes.append(Problem(count, _explain_repair(raw)))
        seq, prefix, recorded = parsed
        if seq <= prev_seq:
            # Out of place: report it, and keep chaining from the highest record so that a
            # swap of two lines names those two lines and nothing after them.
            problems.append(Problem(count, f"seq {seq} comes after seq {prev_seq}: lines reordered or repeated"))
            continue
        if seq != prev_seq + 1:
            problems.append(Problem(count, f"seq {seq} follows seq {prev_seq}: lines deleted (or moved) before it"))
        elif _chain(prev_hash, prefix) != recorded:
            problems.append(Problem(count, "hash does not match: this line (or the hash of the one before) was edited"))
        prev_hash, prev_seq = recorded, seq
    return count, problems


def _explain_repair(raw: bytes) -> str:
    try:
        record = fields_of(raw)
        return (f"repair: {record['cut_bytes']} torn bytes at offset {record['offset']} cut back "
                f"(a write cut short by a crash; sha256 {str(record['cut_sha256'])[:16]}...)")
    except (ValueError, KeyError):
        return "repair: a torn tail was cut back"


def read_lines(path: str, owner_uid: int) -> "Iterator[bytes]":
    fd = fsio.open_checked(path, owner_uid)
    if fd is None:
        return
    with os.fdopen(fd, "rb", buffering=1 << 20) as handle:
        yield from handle


def fields_of(line: bytes) -> dict:
    import json

    record = json.loads(line)
    record.pop("hash", None)
    return record
