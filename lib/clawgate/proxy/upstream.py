"""Where a secret may go: the route's host and port, over TLS verified for that host, to an
address the route allows.

The host is resolved here, every address is checked, and the connection goes to the address
that was checked (never a second lookup a rebinding DNS server could answer differently).
Loopback and private addresses need the route's --allow-private; link-local (cloud metadata
lives at 169.254.169.254 and fd00:ec2::254's kin), multicast, unspecified and reserved ones are
never used. SNI and the certificate's name are the route's host, whatever the agent sent.
"""

import hashlib
import http.client
import ipaddress
import socket
import ssl
import threading

from ..routes import Route
from .wire import Refusal

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0  # a model may think for minutes before its first byte
# Cloud metadata services at addresses the checks below would otherwise let through with
# --allow-private: AWS's IPv6 one (a ULA, so "private") and Oracle's older 192.0.0.192.
_METADATA = (ipaddress.ip_network("fd00:ec2::/32"), ipaddress.ip_network("192.0.0.192/32"))


def address_refused(address: "ipaddress.IPv4Address | ipaddress.IPv6Address", allow_private: bool) -> "str | None":
    """Why the proxy will not send a secret to `address`, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one (mapped, 6to4, Teredo's server) is judged as itself.
        inner = address.ipv4_mapped or address.sixtofour or (address.teredo[0] if address.teredo else None)
        if inner is not None:
            return address_refused(inner, allow_private)
        if address.is_site_local:  # fec0::/10: deprecated, still routed privately where used
            return None if allow_private else "a loopback or private address (the route does not allow one: --allow-private)"
    # In this order: link-local also counts as private, and ::1 as reserved.
    if address.is_link_local or any(address in net for net in _METADATA):
        return "a link-local or metadata address"
    if address.is_multicast or address.is_unspecified or (address.is_reserved and not address.is_loopback):
        return "a multicast, unspecified or reserved address"
    if address.is_loopback or address.is_private:
        return None if allow_private else "a loopback or private address (the route does not allow one: --allow-private)"
    if not address.is_global:
        return "an address that is not globally routable"
    return None


def resolve(route: Route) -> "tuple[int, str]":
    """(family, address) to connect to: the first the route's host resolves to, all of them
    checked. Refusal (502) if the host does not resolve or any address is refused."""
    try:
        found = socket.getaddrinfo(route.host, route.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as err:
        raise Refusal(502, f"upstream host {route.host} does not resolve ({err})", "upstream_error") from None
    for _family, _type, _proto, _name, sockaddr in found:
        why = address_refused(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]), route.allow_private)
        if why is not None:
            raise Refusal(403, f"route {route.name}: {route.host} resolves to {why}; refused", "permission_error")
    family, _type, _proto, _name, sockaddr = found[0]
    return family, str(sockaddr[0])


_contexts: "dict[str, ssl.SSLContext]" = {}
_contexts_lock = threading.Lock()


def tls_context(ca: "str | None") -> ssl.SSLContext:
    """One verifying context per CA (loading the system store costs milliseconds: done once)."""
    key = hashlib.sha256(ca.encode()).hexdigest() if ca else ""
    with _contexts_lock:
        context = _contexts.get(key)
        if context is None:
            context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.check_hostname = True
            context.verify_mode = ssl.CERT_REQUIRED
            _contexts[key] = context
        return context


IDLE_REUSE = 4.0  # seconds: below every common server's keep-alive timeout (nginx 75 s, Node 5 s)
IDLE_PER_UPSTREAM = 8
_idle: "dict[tuple, list[tuple[float, http.client.HTTPConnection]]]" = {}
_idle_lock = threading.Lock()


def _key(route: Route) -> tuple:
    """A route's connections are its own: should an answer ever come out of step on a kept
    connection, it reaches an exchange that scrubs for the same value, never another route's."""
    return route.name, route.secret, route.host, route.port, route.allow_private, \
        hashlib.sha256((route.ca or "").encode()).digest()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection the upstream has closed (or sent something on) is readable: not reused."""
    import select

    sock = conn.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def take(route: Route, now: float) -> http.client.HTTPConnection:
    """A kept-alive connection to the route's upstream if one is idle and fresh, else a new one."""
    with _idle_lock:
        idle = _idle.get(_key(route), [])
        while idle:
            since, conn = idle.pop()
            if now - since < IDLE_REUSE and not _dropped(conn):
                return conn
            conn.close()
    return connect(route)


def give_back(route: Route, conn: http.client.HTTPConnection, now: float) -> None:
    """Keep a connection whose exchange ended cleanly for the next request to the same upstream."""
    with _idle_lock:
        idle = _idle.setdefault(_key(route), [])
        if len(idle) < IDLE_PER_UPSTREAM:
            idle.append((now, conn))
            return
    conn.close()


def connect(route: Route) -> http.client.HTTPConnection:
    """An HTTP connection to the route's upstream, TLS verified for the route's host."""
    family, address = resolve(route)
    try:
        raw = socket.socket(family, socket.SOCK_STREAM)
        raw.settimeout(CONNECT_TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            raw.connect((address, route.port))
            tls = tls_context(route.ca).wrap_socket(raw, server_hostname=route.host)
        except BaseException:
            raw.close()
            raise
    except ssl.SSLCertVerificationError as err:
        raise Refusal(502, f"route {route.name}: upstream TLS not trusted ({err.verify_message})", "upstream_error") from None
    except (OSError, ssl.SSLError) as err:
        raise Refusal(502, f"route {route.name}: cannot reach the upstream ({type(err).__name__})", "upstream_error") from None
    tls.settimeout(READ_TIMEOUT)
    conn = http.client.HTTPConnection(route.host, route.port, timeout=READ_TIMEOUT)
    conn.sock = tls  # http.client sends over this socket and never connects again by name
    return conn
