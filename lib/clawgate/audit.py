"""The hash-chained audit log, mirrored to syslog (auth facility).

One JSON object per line, `hash` always last:
  {"seq":7,"ts":"2026-11-24T01:02:03Z","event":"get",...,"hash":"<sha256 hex>"}
hash = sha256(previous line's hash + this line up to `,"hash":"`). An edited
line breaks its own hash; a deleted or moved line breaks the chain and the
sequence. Appending reads only the log's tail, so its cost does not grow with
the log. Lines carry names, callers and decisions, never secret values.

Rotation ([audit] rotate_size, keep in the config): once audit.log reaches rotate_size, the same
append, still under the log's lock, hands it to its rotated name, audit.log.<seq of its first
record, 12 digits>, and starts a new audit.log whose first record is a `rotate` record carrying
the previous file's name, last seq and last hash; seq and chain run on across files. The `keep`
newest rotated files stay; older ones are removed (the documented retention). Steps, each safe
to be killed after (the tests kill it at each):
  1. audit.log.next written whole and fsynced (a leftover from a crash is overwritten);
  2. audit.log hard-linked as audit.log.<first seq> (audit.log still names it; verify skips a
     rotated name that is audit.log's own inode, and a rerun finds the link made);
  3. audit.log.next renamed over audit.log, the directory fsynced;
  4. rotated files beyond `keep` removed, oldest first.
An append that opened audit.log before step 3 and then got the lock finds the name moved on and
opens it again (_locked_log), so nothing is ever appended to a rotated file.
"""

import os
import stat

from . import durations, fsio, guard
from .errors import ClawgateError, io_error, unsafe
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
ROTATE = "rotate"  # the first record of every file after the first: the previous file's end
_ROTATE_MARK = b'"event":"rotate",'
NEXT = ".next"  # audit.log.next: the new file, whole, before it takes the name


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
                now: float, rotate: "Optional[Tuple[int, int]]" = None) -> None:
    """Append (event, fields) records in order, under one lock, with one tail read and one write;
    then, with rotate = (rotate_size, keep) and the log at rotate_size or past it, rotate it.

    `resolve` decides up to 512 ids in one request: one lock per line would cost more than
    deciding them.
    """
    records = [(event, list(fields)) for event, fields in records]
    if not records:
        return
    prefixes = []
    with guard.critical():  # a relayed signal acts after the whole batch is written, never half-way
        fd = _locked_log(path, owner_uid)
        try:
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
            data = b"".join(lines)
            _write_whole(fd, size, data)
            if rotate is not None and rotate[0] and size + len(data) >= rotate[0]:
                try:
                    prefixes.append(_rotate(fd, path, owner_uid, seq, prev_hash, rotate[1], now))
                except (OSError, ClawgateError):
                    # The records are written: the action they record stands. A rotation that
                    # cannot finish (a full disk) leaves the log whole and is tried again by the
                    # next append; whatever step it reached is one the next run picks up.
                    pass
        finally:
            os.close(fd)
    for prefix in prefixes:
        _to_syslog(prefix)


def _locked_log(path: str, owner_uid: int) -> int:
    """audit.log opened and locked, and still the file the name gives: one that was rotated while
    we waited for its lock is let go and the name opened again."""
    for _ in range(8):
        fd = _open_log(path, owner_uid)
        try:
            fsio.lock(fd, "the audit log")
            st, named = os.fstat(fd), os.stat(path, follow_symlinks=False)
        except BaseException:
            os.close(fd)
            raise
        if (st.st_dev, st.st_ino) == (named.st_dev, named.st_ino):
            return fd
        os.close(fd)
    raise unsafe(f"{path}: the audit log keeps changing under its lock; run: clawgate audit verify")


def rotated_name(path: str, first_seq: int) -> str:
    return f"{path}.{first_seq:012d}"


def _rotate(fd: int, path: str, owner_uid: int, seq: int, prev_hash: bytes, keep: int, now: float) -> bytes:
    """Steps 1-4 of the module's docstring, under the lock held on fd (audit.log); the rotate
    record's prefix, for syslog."""
    head = os.pread(fd, 40, 0)
    first_text = head[7:head.find(b",")] if head.startswith(b'{"seq":') else b""
    if not first_text.isdigit():
        raise unsafe(f"{path}: its first line is damaged; not rotated; run: clawgate audit verify")
    rotated = rotated_name(path, int(first_text))
    prefix = _body(seq + 1, now, ROTATE, [("prev_file", os.path.basename(rotated)), ("prev_seq", seq),
                                           ("prev_hash", prev_hash.decode())]).encode()
    line = prefix + _HASH_KEY + _chain(prev_hash, prefix) + b'"}\n'
    nxt = path + NEXT
    out = os.open(nxt, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | fsio.NOFOLLOW | fsio.CLOEXEC, 0o600)
    try:
        if os.geteuid() == 0:  # elevate's root side: the new log is the owner's, as _open_log does
            os.fchown(out, owner_uid, -1)
        _write_whole(out, 0, line)
        os.fsync(out)
    finally:
        os.close(out)
    try:
        os.link(path, rotated, follow_symlinks=False)
    except FileExistsError:  # made by a rotation killed before step 3: the same file, or refuse
        st, there = os.fstat(fd), os.stat(rotated, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != (there.st_dev, there.st_ino):
            raise unsafe(f"{rotated} exists and is not the log it would name; not rotated") from None
    os.rename(nxt, path)
    fsio.fsync_dir(os.path.dirname(path))
    for old in rotated_files(path)[:-keep or None]:
        os.unlink(old)
    return prefix


def rotated_files(path: str) -> "List[str]":
    """The rotated files beside `path`, oldest first (by the seq in their names)."""
    directory, base = os.path.split(path)
    found = []
    for name in os.listdir(directory or "."):
        suffix = name[len(base) + 1:]
        if name.startswith(base + ".") and len(suffix) == 12 and suffix.isdigit():
            found.append((int(suffix), os.path.join(directory, name)))
    return [full for _, full in sorted(found)]


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


def verify_lines(lines: "Iterable[bytes]", notes: "Optional[List[Problem]]" = None,
                 start: "Tuple[bytes, int]" = (GENESIS, 0), end: "Optional[list]" = None) -> "Tuple[int, List[Problem]]":
    """(lines checked, problems). Each problem names the line and what happened to it.

    notes, if given, receives what is explained and accepted: each repair record, and a torn
    last line (no newline) that the next append will cut back. start: the (hash, seq) the lines
    chain on from (a rotated file's predecessor); end, if given, receives the last (hash, seq).
    """
    (prev_hash, prev_seq), count = start, 0
    problems: List[Problem] = []
    notes = [] if notes is None else notes
    from hashlib import sha256 as fast_sha256  # OpenSSL's: faster in bulk; never on a `get`'s path

    key, mark, tail = _HASH_KEY, _REPAIR_MARK, len(_HASH_KEY) + 67  # tail: the key, 64 hex digits, '"}', newline
    for count, raw in enumerate(lines, 1):
        # The usual line, checked with as little Python as it takes (10 million in `make bench`):
        # whole, the next seq, its hash right, nothing to note. Anything else: the full path below.
        at = len(raw) - tail
        if raw.startswith(b'{"seq":%d,' % (prev_seq + 1)) and raw.startswith(key, at) and raw.endswith(b'"}\n'):
            prefix = raw[:at]
            recorded = raw[at + 9:-3]
            if fast_sha256(prev_hash + prefix).hexdigest().encode() == recorded and mark not in prefix:
                prev_hash, prev_seq = recorded, prev_seq + 1
                continue
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
    if end is not None:
        end[:] = [prev_hash, prev_seq]
    return count, problems


class Verified(Record):
    __slots__ = ("records", "problems", "notes", "start")
    records: int
    problems: "List[Tuple[str, Problem]]"  # (file name, problem)
    notes: "List[Tuple[str, Problem]]"
    start: str  # where the kept history starts, in words; "" at seq 1 (nothing rotated out)


def kept_files(path: str) -> "List[str]":
    """The rotated files, oldest first, then audit.log. A rotated name that is audit.log's own
    inode (a rotation killed between its steps 2 and 3) is the same file, listed once."""
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return rotated_files(path)
    kept = []
    for full in rotated_files(path):
        try:
            st = os.stat(full, follow_symlinks=False)
        except FileNotFoundError:  # removed by a rotation's step 4 since the listing
            continue
        if (st.st_dev, st.st_ino) != (current.st_dev, current.st_ino):
            kept.append(full)
    return kept + [path]


def verify_log(path: str, owner_uid: int, newest: int = 0) -> Verified:
    """Every kept file in order (newest: only that many of the newest, as doctor does within its
    time bound), the chain running on across them. Each file after the first must begin with a
    rotate record naming the end of the file before it: a file removed from the middle, two files
    swapped or renamed, or an edit anywhere is a problem naming the file."""
    problems: "List[Tuple[str, Problem]]" = []
    notes: "List[Tuple[str, Problem]]" = []
    total, prev, prev_name, start = 0, None, "", ""
    files = kept_files(path)[-newest:] if newest else kept_files(path)
    done = _verify_apart(files, owner_uid)
    for full in files:
        name = os.path.basename(full)
        lines = read_lines(full, owner_uid)
        first = next(lines, None)
        if first is None:
            continue
        parsed = _parse_line(first.rstrip(b"\n"))
        begin: "Tuple[bytes, int]" = (GENESIS, 0) if prev is None else prev
        if parsed is not None and full != path and int(name.rsplit(".", 1)[1]) != parsed[0]:
            problems.append((name, Problem(1, f"named for seq {int(name.rsplit('.', 1)[1])} but begins at seq "
                                              f"{parsed[0]}: rotated files renamed or reordered")))
        if parsed is not None and _ROTATE_MARK in parsed[1]:
            try:
                record = fields_of(first)
                stated = (str(record["prev_hash"]).encode(), int(record["prev_seq"]))
            except (ValueError, KeyError, TypeError):
                record, stated = {}, begin
            if prev is None:
                start = (f"seq {parsed[0]} ({record.get('ts', '?')}) in {name}: the {stated[1]} records before it "
                         "were rotated out")
            elif stated != prev:
                gap = (f"records {prev[1] + 1}-{stated[1]} are missing: a rotated file was removed from the middle"
                       if stated[1] > prev[1] else "rotated files reordered or edited")
                problems.append((name, Problem(1, f"continues seq {stated[1]}, but {prev_name} ends at seq "
                                                  f"{prev[1]}: {gap}")))
            begin = stated
        elif prev is not None and parsed is not None:
            problems.append((name, Problem(1, f"does not begin with a rotate record naming {prev_name}")))
        file_notes: "List[Problem]" = []
        end: list = []
        if full in done and done[full][3] == begin:  # checked apart, from the start the chain reaches
            count, found, file_notes, _, end = done[full]
        else:
            count, found = verify_lines(_chained(first, lines), file_notes, start=begin, end=end)
        total += count
        problems += [(name, problem) for problem in found]
        notes += [(name, note) for note in file_notes]
        if end:
            prev, prev_name = (end[0], end[1]), name
    return Verified(total, problems, notes, start)


PARALLEL_BYTES = 32 << 20  # below this, one process verifies faster than forking workers would


def _verify_apart(files: "List[str]", owner_uid: int) -> dict:
    """Each file that begins with a rotate record verified on its own, from the start it states,
    in parallel on the machine's cores (10 million records in rotated files: `make bench`):
    {path: (count, problems, notes, (start hash, start seq), [end hash, end seq] or [])}. verify_log
    uses a result only when the start the file states is the start the chain reaches."""
    import json

    sizes = {full: _size(full) for full in files}
    workers = min(os.cpu_count() or 1, len(files), 8)
    if workers < 2 or sum(sizes.values()) < PARALLEL_BYTES:
        return {}
    shares: "List[List[str]]" = [[] for _ in range(workers)]
    for full in sorted(files, key=lambda f: -sizes[f]):  # largest first, each to the least loaded
        min(shares, key=lambda share: sum(sizes[f] for f in share)).append(full)
    running = []
    for share in shares:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - seen through the parent
            try:
                os.close(read_end)
                answer = json.dumps({full: _verify_alone(full, owner_uid) for full in share}).encode()
                view = memoryview(answer)
                while view:
                    view = view[os.write(write_end, view):]
            finally:
                os._exit(0)
        os.close(write_end)
        running.append((pid, read_end))
    done: dict = {}
    for pid, read_end in running:
        chunks = []
        while True:
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_end)
        os.waitpid(pid, 0)
        try:
            answers = json.loads(b"".join(chunks) or b"{}")
        except ValueError:  # a worker that died: its files are verified in order, as without workers
            continue
        for full, found in answers.items():
            if found is not None:
                count, problems, notes, begin, end = found
                done[full] = (count, [Problem(*p) for p in problems], [Problem(*n) for n in notes],
                              (begin[0].encode(), begin[1]), [end[0].encode(), end[1]] if end else [])
    return done


def _verify_alone(full: str, owner_uid: int) -> "Optional[list]":
    lines = read_lines(full, owner_uid)
    first = next(lines, None)
    parsed = None if first is None else _parse_line(first.rstrip(b"\n"))
    if first is None or parsed is None or _ROTATE_MARK not in parsed[1]:
        return None
    try:
        record = fields_of(first)
        begin = (str(record["prev_hash"]).encode(), int(record["prev_seq"]))
    except (ValueError, KeyError, TypeError):
        return None
    notes: "List[Problem]" = []
    end: list = []
    count, problems = verify_lines(_chained(first, lines), notes, start=begin, end=end)
    return [count, [list(p._values()) for p in problems], [list(n._values()) for n in notes],
            [begin[0].decode(), begin[1]], [end[0].decode(), end[1]] if end else []]


def _size(full: str) -> int:
    try:
        return os.stat(full).st_size
    except OSError:
        return 0


def _chained(first: bytes, rest: "Iterator[bytes]") -> "Iterator[bytes]":
    yield first
    yield from rest


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
