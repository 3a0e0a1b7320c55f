"""The domain every program acts in: who called (Caller), with what config and layout (Context),
and the audit trail the context writes. The program runner (exit codes, one-line errors, the
parser) is cli.py; the library modules import this one, never the runner.
"""

import os
import time

from . import audit as audit_log
from . import config as config_mod
from . import state
from .errors import denied
from .records import Record  # not typing.NamedTuple: importing typing alone costs more than a `get` does

_PUSHED = frozenset(("grant", "elevate", "lockout", "revoke", "enroll"))  # notify.PUSHED, kept off the hot path


class Caller(Record):
    __slots__ = ("uid", "name", "role")
    uid: int
    name: str
    role: str  # "owner", "agent" or "root" ("other": only elevate, refused after its audit line)

    @property
    def is_agent(self) -> bool:
        return self.role == "agent"


class Context:
    """The config, the caller and the layout of one run, and the audit records it holds back."""

    __slots__ = ("cfg", "caller", "layout", "_held")

    def __init__(self, cfg: config_mod.Config, caller: Caller, layout: config_mod.Layout) -> None:
        self.cfg = cfg
        self.caller = caller
        self.layout = layout
        self._held: "list | None" = None  # records held by an open audit_batch()

    def now(self) -> float:
        return time.time()

    def audit(self, event: str, **fields: object) -> None:
        self.audit_all([(event, fields)])

    def audit_all(self, records: "list[tuple[str, dict[str, object]]]") -> None:
        """Several (event, fields) records in one append: all of them or none."""
        held = [(event, [("caller", self.caller.name), ("role", self.caller.role), *fields.items()])
                for event, fields in records]
        if self._held is not None:
            self._held.extend(held)
        else:
            audit_log.append_many(state.path(self.cfg, "audit.log"), self.cfg.owner.uid, held, time.time(),
                                  self.cfg.audit_rotate)
        for event, fields in records:
            if event in _PUSHED:  # decisions the owner's channel hears of at once (notify.py)
                self._emit(event, fields)

    # -- the owner's channel: the context emits, notify delivers, a failure is recorded here ------

    def _emit(self, event: str, fields: "dict[str, object]") -> None:
        from . import notify

        text = notify.text_for(event, dict(fields, caller=self.caller.name))
        if text is not None and notify.is_set(self.cfg):
            self.deliver(notify.event(event, text), wait=False)

    def deliver(self, message: "dict[str, object]", wait: bool = True) -> bool:
        """Hand one event to the owner's channel: sent now (wait: a request, a test; True if the
        owner was reached) or pushed from a detached child (False). Either way a failure is
        audited, by undelivered alone."""
        from . import notify

        def failed(error: str) -> None:
            self.undelivered(message, error)

        if wait:
            return notify.send(self.cfg, message, failed)
        notify.push(self.cfg, message, failed)
        return False

    def undelivered(self, message: "dict[str, object]", error: str) -> None:
        """The one record of a failed delivery (invariant 11: the owner's side never fails quietly)."""
        from .notify import plain

        self.audit("notify", result="failed", notified=message.get("event"), error=plain(error, 200))

    def audit_batch(self) -> "_AuditBatch":
        """`with ctx.audit_batch():` holds this context's audit records and appends them together
        when the block ends, error or not: one lock and one write instead of one per record.
        Nothing the records describe may leave the process before the block ends."""
        return _AuditBatch(self)


class _AuditBatch:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __enter__(self) -> None:
        if self._ctx._held is not None:
            raise RuntimeError("audit batches do not nest")
        self._ctx._held = []

    def __exit__(self, *exc: object) -> None:
        ctx = self._ctx
        records, ctx._held = ctx._held or [], None
        audit_log.append_many(state.path(ctx.cfg, "audit.log"), ctx.cfg.owner.uid, records, time.time(),
                              ctx.cfg.audit_rotate)


def sudo_uid() -> "int | None":
    """The uid sudo ran us for (SUDO_UID), or None when sudo did not.

    Only sudo can start a program as the owner (or root) on someone else's behalf, and sudo
    sets SUDO_UID itself; a caller who fakes it while already running as the owner only makes
    itself look like a less trusted caller.
    """
    text = os.environ.get("SUDO_UID", "")
    return int(text) if text.isdigit() and len(text) < 11 else None


def known_caller(cfg: config_mod.Config, uid: int) -> "Caller | None":
    """The owner, the agent or root; None for anyone else."""
    if uid == cfg.owner.uid:
        return Caller(uid, cfg.owner.name, "owner")
    if uid == cfg.agent.uid:
        return Caller(uid, cfg.agent.name, "agent")
    if uid == 0:
        return Caller(uid, "root", "root")
    return None


def identify(cfg: config_mod.Config) -> Caller:
    """The user behind this process: sudo's SUDO_UID when sudo ran us, else our real uid."""
    uid = sudo_uid()
    caller = known_caller(cfg, os.getuid() if uid is None else uid)
    if caller is None:
        raise denied("this user may not use clawgate")
    return caller


def context(script: str) -> Context:
    """Config, safety checks and caller for a program installed at PREFIX/libexec/clawgate/."""
    layout = config_mod.of_program(script)
    cfg = config_mod.load(layout.config)
    if os.geteuid() != cfg.owner.uid:
        raise denied(f"must run as {cfg.owner.name} (use: clawgate VERB)")
    state.check(cfg)
    return Context(cfg, identify(cfg), layout)


def require_owner(ctx: Context, what: str) -> None:
    if ctx.caller.is_agent:
        ctx.audit("denied", action=what, cause="owner only")
        raise denied(f"{what}: only the owner may do this")
