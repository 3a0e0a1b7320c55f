"""Requests: a code bound to what the owner was shown.

The agent asks first (`clawgate request NAME` or `request @root -- CMD...`); the request is
kept in the owner's state (requests/ID, 0600) with a short id, what it asks, the agent's
reason and, when a channel is set, a fresh 2-digit match that only the notification carries.
`approve ID CODE` then grants exactly what that request named: from the agent, with a channel
(or on a request that has a match), CODE is the TOTP code followed by the match, and a bare
code or another request's match is denied and counted like a wrong code. A root request, once
approved, runs its argv once (`elevate ID`). Requests expire after 10 minutes (sooner when the
config's root cap is shorter). Ids start with '@', which no secret name can, so `approve ID` never shadows a
secret.
"""

import hmac
import os
import secrets
import time

from . import durations, fsio, gate, grants, guard, names, notify, state, tiers
from .records import Record
from .context import Context
from .errors import APPROVAL_REQUIRED, ClawgateError, denied, usage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional

ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or typed from a phone
ID_LEN = 6
DIR = "requests"
MAX_PENDING = 16   # a flood of requests fills neither the owner's disk nor their phone
MAX_ARGS = 64
MAX_ARGV_CHARS = 4096
MAX_REASON = notify.MAX_FIELD
MATCH_DIGITS = 2
LIFETIME = 10 * 60


class Request(Record):
    __slots__ = ("id", "kind", "name", "tier", "ttl", "argv", "reason", "by", "created", "expires", "match",
                 "status")
    id: str
    kind: str            # "secret" or "root"
    name: str            # the secret, or @root
    tier: str
    ttl: int             # seconds the grant will last (0 for root: it runs once)
    argv: "List[str]"    # root only
    reason: str
    by: str
    created: float
    expires: float
    match: "Optional[str]"
    status: str          # "pending", or "approved" (root requests waiting for elevate)

    def what(self) -> str:
        if self.kind == "root":
            return f"run as root: {notify.argv_text(self.argv)}"
        return f"{self.name} ({self.tier}, {durations.show(self.ttl)})"


def is_id(text: str) -> bool:
    return (isinstance(text, str) and len(text) == ID_LEN + 1 and text[0] == "@"
            and all(ch in ID_ALPHABET for ch in text[1:]))


def lifetime(ctx: Context) -> int:
    """10 minutes, or the config's root cap when it is shorter: no request outlives a root session."""
    return min(LIFETIME, ctx.cfg.cap("root"))


def _dir(ctx: Context) -> str:
    return fsio.ensure_private_dir(state.path(ctx.cfg, DIR), ctx.cfg.owner.uid)


def _path(ctx: Context, rid: str) -> str:
    if not is_id(rid):
        raise usage(f"{names.shown(rid)}: not a request id (they look like @k3x9qa; see: clawgate pending)")
    return os.path.join(_dir(ctx), rid[1:])


def _lock(ctx: Context):
    return fsio.locked(state.path(ctx.cfg, "requests.lock"))


def _read(ctx: Context, rid: str) -> "Optional[Request]":
    raw = fsio.read_checked(_path(ctx, rid), ctx.cfg.owner.uid)
    if raw is None:
        return None
    import json  # requests are read by request, approve, pending and elevate ID, never by get

    try:
        record = json.loads(raw)
        found = Request(**{field: record[field] for field in Request.__slots__})
    except (ValueError, KeyError, TypeError):
        return None  # a damaged request approves nothing
    return found if found.id == rid else None


def _write(ctx: Context, request: Request) -> None:
    import json

    fsio.write_atomic(_path(ctx, request.id), json.dumps(request._asdict()).encode())


def _remove(ctx: Context, rid: str) -> bool:
    return fsio.remove(_path(ctx, rid))


def _all(ctx: Context, now: float) -> "List[Request]":
    """Every live request; expired ones are removed on the way (call with the lock held)."""
    live = []
    for entry in sorted(os.listdir(_dir(ctx))):
        if fsio.is_temp_name(entry) or not is_id("@" + entry):
            continue
        found = _read(ctx, "@" + entry)
        if found is None or now >= found.expires:
            _remove(ctx, "@" + entry)
            if found is not None:
                ctx.audit("request", id=found.id, result="expired")
            continue
        live.append(found)
    return sorted(live, key=lambda r: r.created)


def _new_id(ctx: Context) -> str:
    while True:
        rid = "@" + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LEN))
        if not os.path.lexists(_path(ctx, rid)):
            return rid


# -- the agent asks ------------------------------------------------------------------------------

def check_reason(reason: "Optional[str]") -> str:
    reason = reason or ""
    if len(reason) > MAX_REASON:
        raise usage(f"--reason: at most {MAX_REASON} characters")
    return reason


def check_argv(argv: "List[str]") -> "List[str]":
    if not argv or not argv[0]:
        raise usage("usage: clawgate request @root [--reason TEXT] -- CMD [ARG...]")
    if len(argv) > MAX_ARGS or sum(len(word) + 1 for word in argv) > MAX_ARGV_CHARS:
        raise usage(f"request @root: at most {MAX_ARGS} arguments and {MAX_ARGV_CHARS} characters")
    return list(argv)


def create(ctx: Context, name: str, ttl: "Optional[int]", reason: "Optional[str]",
           argv: "Optional[List[str]]", now: float) -> Request:
    """A new pending request (exit 1 with MAX_PENDING already pending)."""
    from .store import open_store

    reason = check_reason(reason)
    if name == names.ROOT:
        kind, tier, ttl_, argv = "root", "root", 0, check_argv(argv or [])
    else:
        names.check(name)
        if argv:
            raise usage("usage: clawgate request NAME [--ttl DUR] [--reason TEXT]")
        open_store(ctx.cfg).require(name)  # exit 4: no request for a secret that is not there
        kind, tier, argv = "secret", tiers.get(ctx.cfg, name), []
        if tier == "open":
            raise ClawgateError(0, f"{name} is open; no approval needed")
        ttl_ = min(ttl or ctx.cfg.cap(tier), ctx.cfg.cap(tier))
    channel = notify.load(ctx.cfg)
    match = f"{secrets.randbelow(10 ** MATCH_DIGITS):0{MATCH_DIGITS}d}" if channel is not None else None
    with _lock(ctx):
        if len(_all(ctx, now)) >= MAX_PENDING:
            ctx.audit("request", name=name, result="refused", cause="too many pending")
            raise denied(f"too many pending requests ({MAX_PENDING}); the owner can see them: clawgate pending")
        request = Request(_new_id(ctx), kind, name, tier, ttl_, argv, reason, ctx.caller.name, now,
                          now + lifetime(ctx), match, "pending")
        _write(ctx, request)
    ctx.audit("request", id=request.id, result="pending", name=name, tier=tier, ttl=ttl_, argv=argv or None,
              reason=reason, notify=channel is not None)
    return request


def announce(ctx: Context, request: Request) -> bool:
    """Tell the owner what is asked, with the match; True if the channel took it."""
    reason = notify.plain(request.reason) if request.reason else "(none given)"
    text = (f"{notify.plain(request.by, 64)} asks {request.id}: {request.what()}. Reason: {reason}. "
            f"Match {request.match}: if you agree, give your code followed by {request.match}.")
    message = notify.event("request", text, id=request.id, match=request.match, what=request.what(),
                           reason=notify.plain(request.reason), argv=request.argv or None, name=request.name,
                           tier=request.tier, ttl=request.ttl, expires=int(request.expires))
    return ctx.deliver(message)


# -- the owner looks, denies --------------------------------------------------------------------------

def pending(ctx: Context, now: float) -> "List[Request]":
    with _lock(ctx):
        return _all(ctx, now)


def deny(ctx: Context, rid: str) -> None:
    with _lock(ctx):
        removed = _remove(ctx, rid)
    ctx.audit("request", id=rid, result="denied by owner" if removed else "no such request")
    if not removed:
        raise no_such(ctx, rid)


def no_such(ctx: Context, rid: str) -> ClawgateError:
    """Told to each caller in their words: only the agent asks again."""
    then = "; ask again: clawgate request ..." if ctx.caller.is_agent else " (clawgate pending lists the open ones)"
    return ClawgateError(APPROVAL_REQUIRED, f"{rid}: no such pending request (expired or done){then}")


# -- approving: the code, bound to the request ---------------------------------------------------------

def split_relayed(text: str, digits: int) -> "tuple[str, Optional[str]]":
    """`48291647`, `482916 47` or `482916-47` → ("482916", "47"); anything else → (text, None)."""
    if len(text) == digits + MATCH_DIGITS + 1 and text[digits] in " -":
        text = text[:digits] + text[digits + 1:]
    if len(text) == digits + MATCH_DIGITS and text.isascii() and text.isdigit():
        return text[:digits], text[digits:]
    return text, None


def relay_cause(ctx: Context, request: "Optional[Request]", match: "Optional[str]") -> "Optional[str]":
    """Why a code the agent relays must be refused before the TOTP check, or None.

    With a channel set (or on a request that has a match), the agent's code must carry the
    match of the request the owner was shown; a bare code relayed by the agent is refused
    everywhere (approve NAME, approve @root, elevate CODE), so the owner's code only ever
    unlocks what the owner saw.
    """
    if not ctx.caller.is_agent:
        return None
    need_match = notify.is_set(ctx.cfg) or (request is not None and request.match is not None)
    if not need_match:
        return None
    if request is None:
        return "bare code (channel set: the agent must use a request)"
    if match is None:
        return "no match"
    if request.match is None or not hmac.compare_digest(match, request.match):
        return "wrong match"
    return None


def bare_code_cause(ctx: Context) -> "Optional[str]":
    """For approve NAME|@root CODE and elevate CODE: refused from the agent once a channel is set."""
    return relay_cause(ctx, None, None)


def approve(ctx: Context, rid: str, code_text: "Optional[str]", now: float) -> str:
    """Approve one request: a grant for a secret, or a root request elevate ID may run once."""
    from . import prompt

    request = _read(ctx, rid)
    if request is None or now >= request.expires or request.status != "pending":
        ctx.audit("request", id=rid, result="not pending", action="approve")
        raise no_such(ctx, rid)
    gate.refuse_if_locked(ctx, now, purpose=rid)
    if code_text is None:
        code_text = prompt.code(f"code for {rid} ({request.what()})")
        now = time.time()  # the owner took their time at the prompt
    code, match = code_text, None
    if relay_cause(ctx, request, None) is not None:  # the agent relays: the code must carry the match
        code, match = split_relayed(code_text.strip(), gate.params(ctx, root=request.kind == "root").digits)
    with guard.critical():  # code, request, grant and records: a relayed signal acts after all of them
        gate.check(ctx, code, purpose=f"{rid} {request.name}", now=now, root=request.kind == "root",
                   refuse_cause=relay_cause(ctx, request, match))
        with _lock(ctx):
            current = _read(ctx, rid)
            if current is None or current.status != "pending" or now >= current.expires:
                raise no_such(ctx, rid)
            if request.kind == "root":
                _write(ctx, current._replace(status="approved", expires=now + lifetime(ctx)))
            else:
                _remove(ctx, rid)
        if request.kind == "root":
            ctx.audit("request", id=rid, result="approved", argv=request.argv)
            return f"{rid}: approved; run it once within {durations.show(lifetime(ctx))}: clawgate elevate {rid}"
        ttl = min(request.ttl, ctx.cfg.cap(request.tier))
        grants.write(ctx.cfg, grants.Grant(request.name, request.tier, now, now + ttl, ctx.caller.name))
        try:
            ctx.audit("grant", name=request.name, tier=request.tier, ttl=ttl, request=rid)
        except BaseException:
            grants.revoke(ctx.cfg, request.name)  # no grant without its record
            raise
    return f"{request.name}: granted for {durations.show(ttl)} (until {durations.clock(now + ttl)})"


def take_root(ctx: Context, rid: str, now: float) -> "List[str]":
    """The argv of an approved root request, which is spent here: it runs once, or not at all."""
    with _lock(ctx):
        request = _read(ctx, rid)
        usable = (request is not None and request.kind == "root" and request.status == "approved"
                  and now < request.expires)
        if usable:
            _remove(ctx, rid)
    if not usable:
        ctx.audit("elevate", result="denied", cause="no approved root request", id=rid)
        raise ClawgateError(APPROVAL_REQUIRED, f"{rid}: no approved root request by that id (it may have run "
                                               "once already, expired or been denied); see: clawgate request --help")
    return list(request.argv)  # type: ignore[union-attr]


def as_json_record(request: Request, now: float) -> "Dict[str, object]":
    return {"id": request.id, "kind": request.kind, "name": request.name, "tier": request.tier,
            "ttl": request.ttl, "argv": request.argv, "reason": request.reason, "by": request.by,
            "age": int(now - request.created), "expires_in": int(request.expires - now), "status": request.status}


# -- the verbs ---------------------------------------------------------------------------------------

def show_pending(ctx: Context, as_json: bool, now: float) -> None:
    found = pending(ctx, now)
    if as_json:
        import json

        print(json.dumps([as_json_record(r, now) for r in found], indent=2))
        return
    if not found:
        print("no pending requests")
    for r in found:
        state_ = "approved, waiting for: clawgate elevate " + r.id if r.status == "approved" else "pending"
        reason = notify.plain(r.reason) if r.reason else "(none given)"
        print(f"{r.id}  {state_}, asked {durations.show(max(1, int(now - r.created)))} ago by {notify.plain(r.by, 64)}, "
              f"expires in {durations.show(max(1, int(r.expires - now)))}")
        print(f"    {r.what()}")
        print(f"    reason: {reason}")
