"""Who is on the other end of a loopback TCP connection (Linux): the uid that owns its socket.

TCP has no SO_PEERCRED, but the kernel lists every socket with its owner's uid in
/proc/net/tcp and /proc/net/tcp6 (what identd reads). The client's socket is the entry whose
local address is the peer's and whose remote address is ours. A socket's uid is that of the
process that made it; a user cannot make a socket that the kernel lists as another user's.
Elsewhere (macOS) there is no such table: the per-route token is then the only check.
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


def uid_of(sock: socket.socket) -> "int | None":
    """The uid owning the peer's end of `sock`, or None if the table does not list it."""
    family = sock.family
    if family not in TABLES:
        return None
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
