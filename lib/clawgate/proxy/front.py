"""The proxy's front: the loopback listeners, who is calling, and a process per caller.

The front accepts, asks the kernel whose socket the connection is (peer.py), and hands the
connection to that caller's worker (server.py), a process of its own, over a socketpair
(SCM_RIGHTS). What the agent sends that costs CPU (floods of tiny chunks, connect/close churn,
bodies that never end) then costs its own worker, which runs at a lower priority, and never the
interpreter lock the owner's requests need: the agent cannot stop the proxy serving the owner.
The front does nothing per connection but the lookup and the hand-off, never blocks on a worker
(a worker that cannot take a connection now gets it refused, not queued in front of others), and
forks only while it has one thread. A worker that dies is forked anew at its caller's next
connection; when the front goes, its workers see the socketpair close and go too.

Where the kernel cannot say who is calling (macOS), there is no one to tell apart: one worker,
in this process, takes every connection as the agent's (the token still decides).
"""

import os
import selectors
import socket
import time

from .. import context
from ..config import Config
from ..context import Caller
from . import peer
from .server import Worker, refuse_now

# The agent's worker yields the CPU to the owner's when both want it (the agent is the one that
# can make its worker busy); 10 is what `nice` gives by default.
AGENT_NICENESS = 10


class Front:
    def __init__(self, cfg: Config, layout, port: int, hosts: "tuple[str, ...]" = ("127.0.0.1", "::1")) -> None:
        self.cfg = cfg
        self.layout = layout
        self.listeners = [self._listen(host, port) for host in hosts]
        self.port = self.listeners[0].getsockname()[1]
        self.owners = peer.Owners() if peer.available() else None
        self._workers: "dict[int, tuple[int, socket.socket]]" = {}  # uid: (pid, the front's end)
        self._strangers = 0  # refused connections of other users since the last journal line
        self._gone = 0  # connections closed before they could be told apart, since then
        self._strangers_said = 0.0

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
        return sock

    def serve_forever(self) -> None:
        alone = None
        if self.owners is None:
            alone = Worker(self.cfg, self.layout, Caller(self.cfg.agent.uid, self.cfg.agent.name, "agent"))
            alone.start()
        selector = selectors.DefaultSelector()
        for listener in self.listeners:
            selector.register(listener, selectors.EVENT_READ)
        while True:
            for key, _events in selector.select():
                try:
                    conn, _addr = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:  # out of descriptors, or the client gave up: the next accept may work
                    time.sleep(0.01)
                    continue
                if alone is not None:
                    alone.admit(conn)
                    continue
                try:
                    self._route(conn)
                finally:
                    conn.close()  # the worker holds its own copy

    def _route(self, conn: socket.socket) -> None:
        try:
            uid = self.owners.uid_of(conn) if self.owners is not None else None
        except OSError:  # the client left before we could ask about it
            uid = None
        if uid is None:  # gone before it could be told apart: nobody to answer
            self._note(gone=1)
            return
        caller = context.known_caller(self.cfg, uid)
        if caller is None or caller.role not in ("agent", "owner"):  # root too: nobody here
            refuse_now(conn, 403, "this user may not use the clawgate proxy")
            self._note(strangers=1)
            return
        for _attempt in range(2):
            try:
                _pid, channel = self._workers.get(caller.uid) or self._spawn(caller)
            except OSError:  # no process to be had now (a task limit): this connection is refused, the front goes on
                break
            try:
                socket.send_fds(channel, [b"c"], [conn.fileno()])
                return
            except BlockingIOError:  # the worker is behind: this one waits nowhere, it is refused
                refuse_now(conn, 503, "the proxy is busy; try again")
                return
            except OSError:  # the worker is gone: reap it, fork another
                self._bury(caller.uid)
        refuse_now(conn, 503, "the proxy is busy; try again")

    def _spawn(self, caller: Caller) -> "tuple[int, socket.socket]":
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:  # the worker: nothing of the front's but the config
            status = 1
            try:
                ours.close()
                for held in self.listeners + [channel for _pid, channel in self._workers.values()]:
                    held.close()
                if caller.role != "owner":
                    os.setpriority(os.PRIO_PROCESS, 0, AGENT_NICENESS)
                _work(Worker(self.cfg, self.layout, caller), theirs)
                status = 0
            finally:
                os._exit(status)
        theirs.close()
        ours.setblocking(False)
        self._workers[caller.uid] = (pid, ours)
        self._reap()
        return pid, ours

    def _bury(self, uid: int) -> None:
        _pid, channel = self._workers.pop(uid)
        channel.close()
        self._reap()

    @staticmethod
    def _reap() -> None:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass

    def _note(self, strangers: int = 0, gone: int = 0) -> None:
        """Said in the journal, at most once a minute with counts; not in the audit log, since the
        accept loop never waits on a lock. Connections closed before the kernel could say whose
        they were are counted apart: they are nobody's to blame (the agent's churn, most likely)."""
        self._strangers += strangers
        self._gone += gone
        now = time.monotonic()
        if now - self._strangers_said >= 60:
            os.write(2, f"clawgate proxy: refused {self._strangers} connection(s) of users who are neither the agent "
                        f"nor the owner; {self._gone} closed before they could be identified\n".encode())
            self._strangers, self._gone, self._strangers_said = 0, 0, now


def _work(worker: Worker, channel: socket.socket) -> None:
    """A worker's life: take each connection the front hands over, until the front is gone."""
    worker.start()
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(channel, 1, 1)
        except InterruptedError:
            continue
        if not message and not fds:
            return
        for fd in fds:
            worker.admit(socket.socket(fileno=fd))
