"""Routes: the owner's binding of one secret to one upstream, for the agent-blind proxy.

A route fixes everything about where a secret goes: scheme (always https), host, port, base
path, the header that carries it and how (`Authorization: Bearer {secret}`), the methods and
path prefix the agent may use, the CA that vouches for the upstream, and whether the host may
resolve to a private address. The agent chooses only the rest of the path, the query, the body
and its other headers. Each route has its own random token, which the agent's client sends in
the route's header where the key would go; the proxy swaps it for the secret.

Records live in the owner's state (routes/NAME, JSON, 0600), never in the world-readable config
and never in an argv. A CA given with --ca is copied into the record, so the proxy never reads
a path the agent could change.
"""

import hmac
import json
import os
import time
from urllib.parse import unquote, urlsplit

from . import fsio, names, state
from .config import Config
from .errors import ClawgateError, NO_SUCH_SECRET, usage
from .records import Record

DIR = "routes"
MAX_NAME = 64
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Headers the proxy owns or strips: a route may not inject into them.
RESERVED_HEADERS = frozenset((
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-authenticate", "proxy-connection", "expect",
    "accept-encoding", "content-encoding",
))
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
PLACEHOLDER = "{secret}"
TOKEN_PREFIX = "cgp_"


class Route(Record):
    __slots__ = ("name", "host", "port", "base", "secret", "header", "format", "methods", "path_prefix",
                 "ca", "allow_private", "token", "created")
    name: str
    host: str  # lower-case DNS name or IP literal (no brackets)
    port: int
    base: str  # "" or "/v1": no trailing slash
    secret: str
    header: str  # as the owner wrote it; compared case-insensitively
    format: str  # holds {secret} once
    methods: "tuple[str, ...]"
    path_prefix: str  # "" or "/chat": no trailing slash
    ca: "str | None"  # PEM text, trusted instead of the system store
    allow_private: bool
    token: str
    created: float

    @property
    def upstream(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{host}{port}{self.base}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"

    def inject(self, value: str) -> str:
        return self.format.replace(PLACEHOLDER, value)

    def token_from(self, presented: str) -> "str | None":
        """The token inside the header value the agent's client sent, framed as the secret would be."""
        before, _, after = self.format.partition(PLACEHOLDER)
        if len(presented) < len(before) + len(after) or not presented.startswith(before) or not presented.endswith(after):
            return None
        return presented[len(before):len(presented) - len(after)]

    def token_matches(self, presented: str) -> bool:
        token = self.token_from(presented)
        return token is not None and self.token_matches_bare(token)

    def token_matches_bare(self, token: str) -> bool:
        return hmac.compare_digest(token.encode("utf-8", "replace"), self.token.encode())


class NoSuchRoute(ClawgateError):
    def __init__(self, name: str) -> None:
        super().__init__(NO_SUCH_SECRET, f"{names.shown(name)}: no such route")


def header_text(value: bytes) -> bool:
    """Whether a value can be sent in a header as it is: visible ASCII, spaces and tabs inside.
    API keys are; a CR or LF would split the header, and other bytes would go out raw and come
    back in escapes (JSON's \\u00e9) the scrubber does not know."""
    return bool(value) and value == value.strip() and all(0x20 <= byte < 0x7F or byte == 0x09 for byte in value)


NOT_HEADER_TEXT = "its value is not header text (visible ASCII, as API keys are), so the proxy will not send it"


def check_name(name: str) -> str:
    """A route name is one path segment: a secret name's characters without `/`, at most 64."""
    if "/" in name or len(name) > MAX_NAME or not names.is_valid(name):
        raise usage(f"{names.shown(name)}: invalid route name (letters, digits, `.`, `_`, `-`; at most {MAX_NAME})")
    return name


def parse_upstream(text: str) -> "tuple[str, int, str]":
    """(host, port, base) of `https://HOST[:PORT][/BASE]`, or exit 2 naming what is wrong."""
    if not text.isascii() or not text.isprintable() or " " in text:
        raise usage("--upstream: must be printable ASCII without spaces")
    parts = urlsplit(text)
    if parts.scheme != "https":
        raise usage("--upstream: must be an https:// URL (the proxy never sends a secret in the clear)")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment or "#" in text:
        raise usage("--upstream: no user, query or fragment: https://HOST[:PORT][/BASE]")
    try:
        port = parts.port or 443
    except ValueError:
        raise usage("--upstream: bad port") from None
    host = (parts.hostname or "").rstrip(".")
    if not host or len(host) > 253 or not all(c.isalnum() or c in ".-:" for c in host):
        raise usage("--upstream: bad host (a DNS name or an address, at most 253 characters)")
    return host.lower(), port, normal_path(parts.path, "--upstream")


def normal_path(path: str, what: str) -> str:
    """A base or prefix: `/a/b` with no empty, `.` or `..` segment, nothing percent-encoded
    that could change its meaning; "" for the root."""
    path = path.rstrip("/")
    if not path:
        return ""
    if not path.startswith("/"):
        raise usage(f"{what}: a path must start with /")
    for segment in path[1:].split("/"):
        if segment in ("", ".", "..") or unquote(segment) != segment or "\\" in segment or not segment.isprintable():
            raise usage(f"{what}: {names.shown(path)}: no empty, `.` or `..` segments, no %-escapes or control characters")
    return path


def parse_inject(text: str) -> "tuple[str, str]":
    header, sep, fmt = text.partition(":")
    header, fmt = header.strip(), fmt.strip()
    if not sep or not header or not _TOKEN_CHARS.issuperset(header):
        raise usage("--inject: must be 'HEADER: FORMAT', for example 'Authorization: Bearer {secret}'")
    if header.lower() in RESERVED_HEADERS:
        raise usage(f"--inject: {header} is the proxy's own header; choose the one the API reads its key from")
    if fmt.count(PLACEHOLDER) != 1 or not fmt.isprintable() or not fmt.isascii():
        raise usage("--inject: FORMAT must hold {secret} exactly once, in printable ASCII")
    return header, fmt


def parse_methods(text: "str | None") -> "tuple[str, ...]":
    if text is None:
        return METHODS
    chosen = tuple(dict.fromkeys(word.strip().upper() for word in text.split(",") if word.strip()))
    wrong = [word for word in chosen if word not in METHODS]
    if not chosen or wrong:
        raise usage(f"--methods: one or more of {','.join(METHODS)}" + (f" (not {names.shown(wrong[0])})" if wrong else ""))
    return chosen


def new_token() -> str:
    return TOKEN_PREFIX + os.urandom(24).hex()


def _path(cfg: Config, name: str) -> str:
    return state.path(cfg, DIR, check_name(name))


def locked(cfg: Config):
    """`with routes.locked(cfg):` a check and the write it decides, with no other route add between."""
    return fsio.locked(state.path(cfg, "routes.lock"))


def save(cfg: Config, route: Route) -> None:
    record = dict(route._asdict(), methods=list(route.methods))
    fsio.write_atomic(_path(cfg, route.name), json.dumps(record, sort_keys=True).encode("utf-8"))


def load(cfg: Config, name: str) -> Route:
    """The route, or NoSuchRoute (exit 4); a damaged record is refused (exit 6)."""
    raw = fsio.read_checked(_path(cfg, name), cfg.owner.uid) if _dir_exists(cfg) else None
    if raw is None:
        raise NoSuchRoute(name)
    try:
        record = json.loads(raw)
        route = Route(**{**record, "methods": tuple(record["methods"])})
        if route.name != name or not isinstance(route.port, int) or PLACEHOLDER not in route.format:
            raise ValueError("fields")
    except (ValueError, TypeError, KeyError, RecursionError):
        from .errors import unsafe

        raise unsafe(f"route {name}: its record is damaged; remove and add it again") from None
    return route


def _dir_exists(cfg: Config) -> bool:
    if not os.path.lexists(state.path(cfg, DIR)):
        return False
    fsio.check_dir(state.path(cfg, DIR), cfg.owner.uid)
    return True


def all_names(cfg: Config) -> "list[str]":
    if not _dir_exists(cfg):
        return []
    found = (entry for entry in os.listdir(state.path(cfg, DIR)) if not fsio.is_temp_name(entry))
    return sorted(entry for entry in found if "/" not in entry and names.is_valid(entry))


def using(cfg: Config, secret: str) -> "list[str]":
    """The routes that send `secret` (for the message that tells the agent where to use it)."""
    found = []
    for name in all_names(cfg):
        try:
            if load(cfg, name).secret == secret:
                found.append(name)
        except ClawgateError:
            continue
    return found


def remove(cfg: Config, name: str) -> bool:
    return _dir_exists(cfg) and fsio.remove(_path(cfg, name))


def make(name: str, upstream: str, secret: str, inject: str, methods: "str | None", path_prefix: "str | None",
         ca: "str | None", allow_private: bool, now: "float | None" = None) -> Route:
    host, port, base = parse_upstream(upstream)
    header, fmt = parse_inject(inject)
    return Route(
        name=check_name(name), host=host, port=port, base=base, secret=names.check(secret), header=header,
        format=fmt, methods=parse_methods(methods), path_prefix=normal_path(path_prefix or "", "--path-prefix"),
        ca=ca, allow_private=allow_private, token=new_token(), created=time.time() if now is None else now,
    )
