"""Invariant 3, decided in one place: a secret above `open` is served only under an active grant,
cut to the cap of the tier the secret has now; @root only inside an open root session.

decide() is the decision, read() the checklist every value read follows: decide, audit a
refusal, and only then read the value. broker (get), resolver, listing, revoke and elevate ask
here; approval_required() is the one message a refusal carries.
"""

from . import durations, grants, names, tiers
from .errors import APPROVAL_REQUIRED, DENIED, ClawgateError
from .store import NoSuchSecret

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (every `get` imports this module)
if TYPE_CHECKING:
    from .context import Context
    from .grants import Grant

OPEN = "open"


class UseOnly(ClawgateError):
    """Exit 1: the agent never reads a use-only secret, grant or not; it uses it through a route."""

    def __init__(self, name: str, route_names: "list[str]") -> None:
        where = (f"use it through the proxy: clawgate proxy-token {route_names[0]}" if route_names
                 else "no route sends it yet; ask the owner for one (clawgate route add)")
        self.reason = f"use-only: the agent never reads it; {where}"
        super().__init__(DENIED, f"{names.shown(name)}: {self.reason}")


class ApprovalRequired(ClawgateError):
    """Exit 3. `reason` is the message without the name (resolve keys its errors by name)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(APPROVAL_REQUIRED, f"{name}: {reason}")
        self.reason = reason


def decide(cfg, name: str, now: float, tier: "str | None" = None) -> "tuple[str, Grant | None]":
    """(tier, grant): the tier the name has now ("root" for @root) and the grant that opens it,
    cut to that tier's cap; grant None means no access unless the tier is open. A caller that
    has just read the secret's tier record passes `tier`, so it is read once."""
    if name == names.ROOT:
        return "root", grants.active(cfg, name, now, "root")
    if tier is None:
        tier = tiers.get(cfg, name)
    return tier, (grants.active(cfg, name, now, tier) if tier != OPEN else None)


def allowed(tier: str, grant: "Grant | None") -> bool:
    return tier == OPEN or grant is not None


def approval_required(ctx: "Context", name: str, tier: str) -> ApprovalRequired:
    """The one refusal message. Each caller is told what works for them: the owner's code never
    goes in argv (approve and elevate refuse it), so the owner is sent to the prompt."""
    cap = durations.show(ctx.cfg.cap(tier))
    if ctx.caller.is_agent and _channel_set(ctx):  # bare codes are refused then: only a request works
        what = f"request {names.ROOT} --reason TEXT -- CMD [ARG...]" if name == names.ROOT else f"request {name} --reason TEXT"
        return ApprovalRequired(name, f"approval required ({tier}, {'sessions' if name == names.ROOT else 'grants'} "
                                      f"last {cap}); ask with: clawgate {what}, then relay the owner's code and "
                                      f"match: clawgate approve ID CODEMATCH")
    if name == names.ROOT and ctx.caller.is_agent:
        return ApprovalRequired(name, f"approval required (root session, sessions last {cap}); ask the owner for "
                                      f"a code, then: clawgate elevate CODE -- CMD [ARG...] (or open a session: "
                                      f"clawgate approve {names.ROOT} CODE)")
    if name == names.ROOT:
        return ApprovalRequired(name, f"approval required (root session, sessions last {cap}); open one with: "
                                      f"clawgate approve {names.ROOT} (it asks for the code), then: "
                                      f"clawgate elevate session -- CMD [ARG...]")
    then = (f"ask the owner for a code, then: clawgate approve {name} CODE" if ctx.caller.is_agent
            else f"approve it with: clawgate approve {name} (it asks for the code)")
    return ApprovalRequired(name, f"approval required ({tier}, grants last {cap}); {then}")


def _channel_set(ctx: "Context") -> bool:
    """Whether a channel file exists (not parsed: a refused `get` stays as lean as a served one;
    a damaged channel refuses bare codes all the same)."""
    import os

    from . import notify, state

    return os.path.lexists(state.path(ctx.cfg, notify.FILE))


def read(ctx: "Context", store, event: str, name: str, now: float, audit: bool = True) -> "tuple[str, bytes]":
    """(tier, value) of a validated name, decided before the value is read.

    A refusal or a missing secret is audited here (as `event`), unless the caller records its
    decisions itself (resolve: one record per batch); the caller audits the success, since it may
    still refuse the value (resolve: not UTF-8)."""
    tier, use_only = tiers.read(ctx.cfg, name)
    try:
        if use_only and ctx.caller.is_agent:  # before the grant: no approval makes it readable
            store.require(name)
            if audit:
                ctx.audit(event, name=name, tier=tier, result="denied", cause="use-only")
            raise use_only_refusal(ctx, name)
        tier, grant = decide(ctx.cfg, name, now, tier)
        if not allowed(tier, grant):
            if not store.exists(name):  # no such secret says more than "approval required"
                raise NoSuchSecret(name)
            if audit:
                ctx.audit(event, name=name, tier=tier, result="denied", cause="no grant")
            raise approval_required(ctx, name, tier)
        return tier, store.get(name)
    except NoSuchSecret:
        if audit:
            ctx.audit(event, name=name, result="missing")
        raise


def use_only_refusal(ctx: "Context", name: str) -> UseOnly:
    from . import routes  # only a refusal names the routes

    return UseOnly(name, routes.using(ctx.cfg, name))


def root_session(ctx: "Context", now: float) -> "Grant":
    """The open root session, or the refusal (exit 3)."""
    tier, grant = decide(ctx.cfg, names.ROOT, now)
    if grant is None:
        raise approval_required(ctx, names.ROOT, tier)
    return grant
