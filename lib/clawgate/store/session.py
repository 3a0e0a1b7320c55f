"""The owner's OpenBao session: one long-lived owner process that keeps the TLS connection and
the token warm, so a `get` (a fresh broker under sudo) need not import ssl nor shake hands.

It is a connection, not a cache: each question is asked of OpenBao then and there, so a value
changed or removed on another host is seen at once, and nothing is kept after the answer. It
answers two questions, a secret's value and its tier record, by a validated name; never a seed,
the gate record, the token or anything by path. It decides nothing: access.py does, in the
broker, as on the direct path.

Who may talk to whom: the socket is STATE/openbao.sock, in the owner's 0700 state directory, and
both ends ask the kernel who the other is (SO_PEERCRED): the session answers the owner's processes
only, and a broker believes only a session run by the owner. Where any of that is missing (no
session running, another platform, a busy session, one that gives no answer in time) the broker
talks to OpenBao itself: slower, never different. A session that answers with a failure (sealed,
refused, OpenBao too slow) is believed: that is OpenBao's answer, and it is exit 6 as on the
direct path.

The proxy service hosts it (store = openbao, Linux): start() forks it from the proxy's front,
and it ends when the front does. A second proxy leaves a live session in place.

Wire, one connection, any number of questions:
  -> "value NAME\\n" | "tier NAME\\n"
  <- "found LEN\\n" + LEN bytes | "none\\n" | "fail CODE LEN\\n" + LEN bytes of a one-line message
"""

import os
import struct
import sys

from .. import names
from ..errors import ClawgateError, unsafe

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import BinaryIO, List, Optional, Tuple

    from ..config import Config
    from .openbao import OpenBaoStore

SOCKET = "openbao.sock"
BROKERS = 64  # brokers served at once, a thread each; past that one is turned away (it goes direct)
BETWEEN = 2.0  # seconds a broker may take to ask (its questions come a few ms apart)
ANSWER_WITHIN = 11.0  # seconds: two of OpenBao's 5 s calls (a login, then the read), and a margin
RETRY_AFTER = 30.0  # seconds a caller the session refused talks to OpenBao itself before asking it again
MAX_MESSAGE = 1000
MAX_VALUE = 64 << 20
QUESTIONS = {b"value": "secrets", b"tier": "tiers"}


class Refused(Exception):
    """The session would not or could not answer (absent, not the owner's, busy, broken): go direct."""


def path(cfg: "Config") -> str:
    return os.path.join(cfg.state_dir, SOCKET)


def available() -> bool:
    """The kernel can say who is at the other end of a Unix socket: Linux's SO_PEERCRED (asked
    without importing socket, which a `get` that finds no session never needs)."""
    return sys.platform.startswith("linux")


def peer_uid(sock: "socket.socket") -> int:
    import socket

    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


# -- the broker's end -------------------------------------------------------------------------------
class Client:
    """One connection to the owner's session, opened at the first question and kept for the rest."""

    def __init__(self, where: str, owner_uid: int) -> None:
        self._where = where
        self._owner_uid = owner_uid
        self._sock: "Optional[socket.socket]" = None
        self._reader: "Optional[BinaryIO]" = None

    def ask(self, question: bytes, name: str) -> "Tuple[bool, bytes]":
        """(found, bytes) for a valid name; ClawgateError for OpenBao's refusal; Refused to go to
        OpenBao directly: no session, not the owner's, turned away, gone, or no answer in time
        (a read asked twice does no harm; a session that is stuck is not waited for again)."""
        line = question + b" " + names.check(name).encode("ascii") + b"\n"
        # A kept connection the session has hung up on (it waits BETWEEN seconds for a question) is
        # opened again once: a long-lived caller (the proxy's workers) keeps using the session.
        for kept in ((True, False) if self._sock is not None else (False,)):
            if not kept:
                self._open()
            assert self._sock is not None and self._reader is not None
            import socket  # _open has imported it: only the name

            try:
                self._sock.sendall(line)
                head = self._reader.readline(64)
            except socket.timeout:  # took the question and gave no answer in time: stuck, not asked again
                self.close()
                raise Refused() from None
            except OSError:  # hung up on us
                self.close()
                continue
            if head:
                return self._answer(head)
            self.close()  # closed before answering: hung up on an idle connection, turned away, or gone
        raise Refused()

    def _open(self) -> None:
        if not os.path.exists(self._where):  # before importing socket: no session, no cost
            raise Refused()
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(ANSWER_WITHIN)
            sock.connect(self._where)
            if peer_uid(sock) != self._owner_uid:  # only the owner's session is believed
                raise OSError("not the owner's")
        except OSError:
            sock.close()
            raise Refused() from None
        self._sock, self._reader = sock, sock.makefile("rb")

    def _answer(self, head: bytes) -> "Tuple[bool, bytes]":
        parts = head.split()
        try:
            if head == b"none\n":
                return False, b""
            if len(parts) == 2 and parts[0] == b"found" and head.endswith(b"\n"):
                return True, self._body(int(parts[1]), MAX_VALUE)
            if len(parts) == 3 and parts[0] == b"fail" and head.endswith(b"\n"):
                code = int(parts[1])
                message = self._body(int(parts[2]), MAX_MESSAGE).decode("utf-8", "replace")
                raise ClawgateError(code if 0 < code < 126 else 6, " ".join(message.split()) or "OpenBao: a failure")
        except (ValueError, OSError):
            pass
        self.close()  # a session that answers nonsense is a fault to report, not a reason to guess
        raise unsafe(f"the owner's OpenBao session ({self._where}) gave an answer it should not give; restart the "
                     "proxy, which runs the session")

    def _body(self, length: int, most: int) -> bytes:
        assert self._reader is not None
        if not 0 <= length <= most:
            raise ValueError("too long")
        body = self._reader.read(length)
        if len(body) != length:
            raise ValueError("cut short")
        return body

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = self._reader = None


# -- the session's end ------------------------------------------------------------------------------
def start(cfg: "Config") -> "Optional[int]":
    """Fork the session from the proxy's front (pid), or None where there is none to run."""
    if cfg.store != "openbao" or not available():
        return None
    alive_r, alive_w = os.pipe()  # the front holds the write end: its end is the session's
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(alive_w)
            _close_inherited(keep=alive_r)
            _serve(cfg, alive_r)
            status = 0
        finally:
            os._exit(status)
    os.close(alive_r)
    return pid


def _close_inherited(keep: int) -> None:
    """Nothing of the front's (its listeners, its workers' channels) is the session's."""
    most = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024
    os.closerange(3, keep)
    os.closerange(keep + 1, most)


class _Clients:
    """OpenBao clients, each with its own kept connection, lent for one question at a time: a
    broker that stalls between its questions (the agent can stop its own sudo's child) holds
    its thread, never a connection another broker could use."""

    def __init__(self, cfg: "Config") -> None:
        import threading

        from .openbao import OpenBaoStore

        self._first = OpenBaoStore.direct(cfg)
        self._cfg = cfg
        self._idle: "List[OpenBaoStore]" = [self._first]
        self._lock = threading.Lock()

    def trust(self) -> None:
        """Read the CA now, before the socket says the session is there (clients made later share it)."""
        try:
            self._first.bao.trust()
        except ClawgateError:  # each question will meet it again, and say so
            pass

    def ask(self, kind: str, name: str) -> "Optional[bytes]":
        from . import NoSuchSecret
        from .openbao import OpenBaoStore

        with self._lock:
            store = self._idle.pop() if self._idle else None
        if store is None:
            cfg = self._cfg
            store = OpenBaoStore(cfg.openbao, self._first.bao.clone(), cfg.owner.uid, cfg.state_dir)
        try:
            return store.get(name) if kind == "secrets" else store.load_tier(name)
        except NoSuchSecret:
            return None
        finally:
            with self._lock:
                self._idle.append(store)


def _serve(cfg: "Config", alive: int) -> None:
    import socket
    import threading
    import time

    clients = _Clients(cfg)
    clients.trust()
    where = path(cfg)
    if _answering(where):  # a second proxy (another port, by hand) does not take a live session's place
        os.write(2, f"clawgate: an OpenBao session already answers on {where}: this proxy runs without its own\n".encode())
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(where)  # what a killed session left: nobody answers on it
    except FileNotFoundError:
        pass
    listener.bind(where)
    os.chmod(where, 0o600)
    listener.listen(BROKERS)
    mine = os.stat(where).st_ino
    room = threading.BoundedSemaphore(BROKERS)

    def front_gone() -> None:
        while os.read(alive, 1):
            pass
        try:
            if os.stat(where).st_ino == mine:
                os.unlink(where)
        finally:
            os._exit(0)

    def serve(conn: "socket.socket") -> None:
        try:
            _serve_one(clients, conn)
        except Exception:  # noqa: BLE001 - one broker's trouble ends its connection, never the session
            pass
        finally:
            conn.close()
            room.release()

    threading.Thread(target=front_gone, daemon=True).start()
    os.write(2, f"clawgate: OpenBao session on {where} (the owner's processes only)\n".encode())
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # out of descriptors: the next accept may work
            time.sleep(0.01)
            continue
        try:
            if peer_uid(conn) != cfg.owner.uid:
                raise OSError("not the owner")
        except OSError:  # a stranger: closed unanswered
            conn.close()
            continue
        if not room.acquire(blocking=False):  # as many brokers as we hold: this one goes direct
            conn.close()
            continue
        try:
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
        except RuntimeError:  # no thread to be had: this one goes direct
            conn.close()
            room.release()


def _answering(where: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(where)
            return True
        except OSError:  # none there, or a socket nobody listens on any more
            return False


def _serve_one(clients: _Clients, conn: "socket.socket") -> None:
    conn.settimeout(BETWEEN)  # a broker asks at once: one that stalls loses its place
    reader = conn.makefile("rb")
    while True:
        line = reader.readline(names.MAX_LEN + 16)
        if not line:
            return
        verb, _, name = line.rstrip(b"\n").partition(b" ")
        kind = QUESTIONS.get(verb)
        text = name.decode("ascii", "replace")
        if kind is None or not line.endswith(b"\n") or not names.is_valid(text):
            return  # not ours to guess at: the broker sees the connection close and goes direct
        try:
            found = clients.ask(kind, text)
        except ClawgateError as err:
            message = " ".join(err.message.split()).encode("utf-8", "replace")[:MAX_MESSAGE]  # bytes are what is bounded
            conn.sendall(b"fail %d %d\n" % (err.code, len(message)) + message)
            continue
        conn.sendall(b"none\n" if found is None else b"found %d\n" % len(found) + found)
