"""Who is on the other end of a loopback TCP connection (Linux): the uid that owns its socket.

TCP has no SO_PEERCRED, but the kernel knows every socket's owner. It is asked for exactly one
socket, the client's end (its address is the peer's, its peer is us), through sock_diag
(NETLINK_SOCK_DIAG, what `ss` uses): an exact lookup, so a thousand open connections cost
nothing more per accept. Where netlink is not to be had, /proc/net/tcp{,6} (what identd reads)
is scanned instead. A socket's uid is that of the process that made it; a user cannot make a
socket the kernel lists as another user's. Elsewhere (macOS) there is neither: the per-route
token is then the only check.
"""

import os
import socket
import struct

TABLES = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}


def available() -> bool:
    return os.path.exists(TABLES[socket.AF_INET])


def _hex_address(family: int, host: str, port: int) -> str:
    packed = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(packed) // 4}I", packed)  # the kernel prints each 32-bit word in host order
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_NOCOOKIE = 0xFFFFFFFF


def _diag_address(family: int, host: str) -> bytes:
    packed = socket.inet_pton(family, host)
    return packed + b"\0" * (16 - len(packed))


def _diag_request(sock: socket.socket, seq: int) -> bytes:
    family = sock.family
    peer, ours = sock.getpeername(), sock.getsockname()
    # struct inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid (ports and
    # addresses in network order, interface, cookie): the client's socket, seen from its side.
    sockid = struct.pack("!HH", peer[1], ours[1]) + _diag_address(family, peer[0]) + _diag_address(family, ours[0])
    sockid += struct.pack("=III", 0, _NOCOOKIE, _NOCOOKIE)
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    return struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + request


class Owners:
    """Who owns the other end of a connection, asked the cheapest way this host answers truly.

    sock_diag is used only once a probe (a connection of our own to a listener of our own) showed it
    answers here; then a connection it does not know is one already gone (refused, at no cost),
    never a reason to scan /proc/net/tcp: with the kernel's table full of the agent's closed
    connections (TIME_WAIT, 131072 of them by default) a scan costs half a second, and the front
    would do it for every connection the agent opens and closes. Where sock_diag does not answer
    (no netlink), the table is all there is."""

    def __init__(self) -> None:
        self._seq = 0
        self._diag: "socket.socket | None" = None
        try:
            self._diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
            self._diag.settimeout(1.0)
        except (OSError, AttributeError):
            return
        if self._probe() != os.geteuid():
            self._diag.close()
            self._diag = None

    @property
    def by_diag(self) -> bool:
        return self._diag is not None

    @property
    def how(self) -> str:
        return "sock_diag" if self._diag is not None else "/proc/net/tcp"

    def _probe(self) -> "int | None":
        """Our own connection to a listener of our own: on the proxy's, the first connection
        accepted could be the agent's (connecting in a loop while the proxy starts), and its
        answer would turn sock_diag off for good."""
        try:
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", 0))
                listener.listen(8)
                listener.settimeout(2.0)
                with socket.create_connection(listener.getsockname(), timeout=2.0) as ours:
                    for _ in range(64):  # someone else's, connecting to any port it finds: not asked about
                        conn, addr = listener.accept()
                        with conn:
                            if addr == ours.getsockname():
                                return self._ask(conn)
        except OSError:
            pass
        return None

    def _ask(self, sock: socket.socket) -> "int | None":
        assert self._diag is not None
        self._seq = self._seq % 0x7FFFFFFF + 1
        try:
            self._diag.send(_diag_request(sock, self._seq))
            while True:
                reply = self._diag.recv(8192)
                if len(reply) >= 16 and struct.unpack_from("=I", reply, 8)[0] == self._seq:
                    break  # an answer to an earlier question, cut off by its timeout, is passed over
        except OSError:
            return None
        _length, kind = struct.unpack_from("=IH", reply, 0)
        if kind != SOCK_DIAG_BY_FAMILY or len(reply) < 16 + 72:
            return None  # NLMSG_ERROR: no such socket; it closed meanwhile
        # struct inet_diag_msg: family, state, timer, retrans (4), sockid (48), expires, rqueue, wqueue, uid
        return struct.unpack_from("=I", reply, 16 + 4 + 48 + 12)[0]

    def uid_of(self, sock: socket.socket) -> "int | None":
        """The uid owning the peer's end of `sock`; None if it is gone (or the kernel does not list it)."""
        if sock.family not in TABLES:
            return None
        return self._ask(sock) if self._diag is not None else _from_table(sock)


def _from_table(sock: socket.socket) -> "int | None":
    family = sock.family
    peer = sock.getpeername()
    ours = sock.getsockname()
    local = _hex_address(family, peer[0], peer[1])
    remote = _hex_address(family, ours[0], ours[1])
    try:
        with open(TABLES[family], "rb") as table:
            next(table, None)  # the column header
            for line in table:
                fields = line.split()
                if len(fields) > 7 and fields[1].decode() == local and fields[2].decode() == remote:
                    return int(fields[7])
    except (OSError, ValueError):
        return None
    return None


LISTEN = "0A"


def _address(hex_address: str) -> str:
    """`0100007F:1F91` as the kernel prints it, back to `127.0.0.1` (the inverse of _hex_address)."""
    digits = hex_address.split(":")[0]
    raw = b"".join(struct.pack("=I", int(digits[at:at + 8], 16)) for at in range(0, len(digits), 8))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def listeners(port: int) -> "list[tuple[str, int]]":
    """(address, uid) of every socket listening on `port`, from the kernel's tables (doctor)."""
    found = []
    for path in TABLES.values():
        try:
            with open(path, "rb") as table:
                next(table, None)
                for line in table:
                    fields = line.decode("ascii", "replace").split()
                    if len(fields) > 7 and fields[3] == LISTEN and fields[1].endswith(f":{port:04X}"):
                        found.append((_address(fields[1]), int(fields[7])))
        except (OSError, ValueError):
            continue
    return found
