"""permit(): the proxy's whole policy for one request, decided before anything is sent.

Read top to bottom, it is the checklist: the target is a path of ours (never an absolute URL,
never CONNECT), its first segment names a route, the method and path are within the route's
limits and cannot climb out of its base, the route's header carries the route's token, and the
secret is usable now (its tier, and a grant for anything above open, exactly as for a read).
Only then is the value read; where it goes is the route's alone (upstream.py).
"""

import time
import unicodedata
from urllib.parse import unquote

from .. import access, routes
from ..context import Context
from ..errors import ClawgateError
from ..store import NoSuchSecret, open_store
from .wire import Refusal, Request


class Permit:
    __slots__ = ("route", "value", "path", "tier", "token_header")

    def __init__(self, route: routes.Route, value: bytes, path: str, tier: str, token_header: str) -> None:
        self.route = route
        self.value = value
        self.path = path  # what the upstream is asked for: the route's base, the rest, the query
        self.tier = tier
        self.token_header = token_header  # where the token came: never relayed upstream


def split_target(target: str) -> "tuple[str, str, str]":
    """(route name, rest of the path, query with its `?`) of an origin-form target."""
    if not target.startswith("/"):
        raise Refusal(400, "absolute-form or authority-form targets are refused: send the path only")
    if "#" in target:
        raise Refusal(400, "a fragment in the request target is refused")
    path, mark, query = target.partition("?")
    name, slash, rest = path[1:].partition("/")
    return unquote(name), slash + rest, mark + query


def check_rest(rest: str) -> str:
    """The path below the route, refused if it could climb out of the route's base in any reading
    an upstream server might apply: no `.` or `..` segment (plain, %-encoded, or after the Unicode
    folding some servers do: a fullwidth `．`), no empty segment (`//`), no encoded `/`, `\\` or NUL,
    no double escape, no escape that is not UTF-8 (an overlong `%c0%ae`), no `;` (a servlet
    container reads `..;` as `..`)."""
    if not rest:
        return rest
    segments = rest[1:].split("/")
    for number, segment in enumerate(segments):
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise Refusal(400, "path holds a %-escape that is not UTF-8") from None
        folded = unicodedata.normalize("NFKC", decoded)
        last = number == len(segments) - 1
        if (segment == "" and not last) or decoded in (".", "..") or folded in (".", ".."):
            raise Refusal(400, "path escapes the route (`..`, `.` or `//`)")
        if any(c in decoded or c in folded for c in "/\\\0%;"):
            raise Refusal(400, "path holds `;`, an encoded `/`, `\\` or NUL, or a double %-escape")
    return rest


def permit(ctx: Context, request: Request, now: "float | None" = None) -> Permit:
    if request.method in ("CONNECT", "TRACE"):
        raise Refusal(405, f"{request.method} is refused: the proxy is a reverse proxy to fixed upstreams")
    name, rest, query = split_target(request.target)
    try:
        route = routes.load(ctx.cfg, routes.check_name(name))
    except ClawgateError:  # no such route, a bad name, or a damaged record: the agent learns only "no route"
        raise Refusal(404, f"no route {name[:64]!r}; the owner lists them with: clawgate route list",
                      "not_found_error") from None
    if request.method not in route.methods:
        raise Refusal(405, f"route {route.name}: method {request.method} is not allowed ({','.join(route.methods)})",
                      "permission_error")
    rest = check_rest(rest)
    prefix = route.path_prefix
    if prefix and not (rest == prefix or rest.startswith(prefix + "/")):
        raise Refusal(403, f"route {route.name}: only paths under {prefix}", "permission_error")
    token_header = presented_token(request, route)
    if token_header is None:
        where = route.header if route.header.lower() == "authorization" else f"{route.header} or Authorization: Bearer"
        raise Refusal(401, f"route {route.name}: missing or wrong proxy token in {where} "
                           f"(get it with: clawgate proxy-token {route.name})", "authentication_error")
    when = time.time() if now is None else now
    store = open_store(ctx.cfg)
    if not store.exists(route.secret):  # before the tier: approval would not help
        raise Refusal(502, f"route {route.name}: its secret is not stored; ask the owner", "api_error")
    tier, grant = access.decide(ctx.cfg, route.secret, when)
    if not access.allowed(tier, grant):
        message = access.approval_required(ctx, route.secret, tier).message
        raise Refusal(403, message, "permission_error")
    try:
        value = store.get(route.secret)
    except NoSuchSecret:
        raise Refusal(502, f"route {route.name}: its secret is not stored; ask the owner", "api_error") from None
    if not routes.header_text(value):  # the value changed since `route add` checked it
        raise Refusal(502, f"route {route.name}: {routes.NOT_HEADER_TEXT}; ask the owner", "api_error")
    return Permit(route, value, (route.base + rest or "/") + query, tier, token_header)


def presented_token(request: Request, route: routes.Route) -> "str | None":
    """The header that carries the route's token: the route's own, framed as the secret would be,
    or `Authorization: Bearer TOKEN`, where most SDKs put an API key whatever the API reads
    (Anthropic's Python SDK among them). None if neither does."""
    own = route.header.lower()
    presented = request.one(own)
    if presented is not None and route.token_matches(presented):
        return own
    if own != "authorization":
        bearer = request.one("authorization") or ""
        if bearer[:7].lower() == "bearer " and route.token_matches_bare(bearer[7:].strip()):
            return "authorization"
    return None


def still_allowed(ctx: Context, secret: str, now: float) -> bool:
    """For a stream in flight: a revoke or an expiry cuts it."""
    return access.allowed(*access.decide(ctx.cfg, secret, now))
