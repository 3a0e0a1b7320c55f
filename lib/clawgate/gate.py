"""The TOTP gate: one code, checked and recorded under one lock, lockout applied to the agent.

A code is accepted once: its step must be later than the last accepted step,
and the check and the record happen while totp.lock is held, so of two racing
uses of one code exactly one wins. Every outcome reads the same to the caller
(`code denied`) and differs only in the audit log.

The agent's guess is counted (totp.json written) before it is checked, and the
count taken back only on success: a run killed at any instant leaves the guess
counted. Everything from the lock to the audit record runs with fatal signals
deferred (fsio.locked), so a relayed signal cannot separate the count from its
denial record, nor a spent code from its grant.
"""

import json
from typing import NamedTuple

from . import durations, fsio, grants, lockout, seed, state, totp
from .context import Context
from .errors import LOCKED_OUT, ClawgateError, denied, unsafe, usage

DENIED_MESSAGE = "code denied"


class GateState(NamedTuple):
    last_step: int
    lock: lockout.State


def _path(ctx: Context) -> str:
    return state.path(ctx.cfg, "totp.json")


def load_state(ctx: Context) -> GateState:
    raw = fsio.read_checked(_path(ctx), ctx.cfg.owner.uid)
    if raw is None:
        return GateState(-1, lockout.State())
    try:
        record = json.loads(raw)
        return GateState(
            int(record["last_step"]),
            lockout.State(int(record["failures"]), float(record["last_failure"]), float(record["locked_until"])),
        )
    except (ValueError, KeyError, TypeError):
        raise unsafe(f"{_path(ctx)}: damaged; the owner can reset it with: clawgate unlock") from None


def _save_state(ctx: Context, gate: GateState) -> None:
    record = {"last_step": gate.last_step, **gate.lock._asdict()}
    fsio.write_atomic(_path(ctx), json.dumps(record).encode())


def _lock(ctx: Context):
    return fsio.locked(state.path(ctx.cfg, "totp.lock"))


def until_text(when: float) -> str:
    return durations.stamp(when)


def locked_out(until: float) -> ClawgateError:
    return ClawgateError(
        LOCKED_OUT,
        f"locked out until {until_text(until)} after too many wrong codes; the owner can run: clawgate unlock",
    )


def params(ctx: Context, root: bool = False) -> totp.Params:
    """The seed whose codes pass: the root seed for root once one is enrolled (enroll --root)."""
    found = (root and seed.load(ctx.cfg, root=True)) or seed.load(ctx.cfg)
    if found is None:
        raise unsafe("no TOTP seed enrolled; the owner must run: clawgate enroll")
    return found


def _cause(params_: totp.Params, code: str, now: float) -> str:
    if len(code) != params_.digits or not (code.isascii() and code.isdigit()):
        return "malformed"
    return "reused" if totp.match_step(params_, code, now, -1) is not None else "wrong"


def refuse_if_locked(ctx: Context, now: float, purpose: str = "check") -> None:
    """Before asking the agent for a code at all: a locked-out agent is told so at once."""
    if ctx.caller.is_agent:
        current = load_state(ctx)
        if lockout.is_locked(current.lock, now):
            ctx.audit("code", purpose=purpose, result="locked", until=until_text(current.lock.locked_until))
            raise locked_out(current.lock.locked_until)


def refuse_malformed(ctx: Context, code: str, params_: totp.Params, purpose: str) -> None:
    """A typo is not a guess: a code of the wrong shape is exit 2 and costs none of the free guesses."""
    if totp.split_code(code, params_.digits) is None:
        ctx.audit("code", purpose=purpose, result="denied", cause="malformed", counted=False)
        whose = "the owner's authenticator shows" if ctx.caller.is_agent else "your authenticator shows"
        raise usage(f"that is not a code: a code is the {params_.digits} digits {whose} "
                    f"(not counted as a wrong code)")


def check(ctx: Context, code: str, purpose: str, now: float, root: bool = False,
          refuse_cause: "str | None" = None, grant: "grants.Grant | None" = None,
          **grant_record: object) -> int:
    """The accepted step; raises exit 1 (denied), 2 (not the shape of a code) or 5 (agent locked out).

    root: the code must be the root seed's once one exists. refuse_cause: the code is refused
    whatever it is, counted and audited like a wrong one (requests.relay_cause: no match); a valid
    code refused so is spent all the same, so a relayed code gets one try at a match, not six.
    With `grant`, it is written on success under the same lock, after the code is spent and
    before both are audited (its `grant` record carries grant_record too): a failure at any point
    leaves the grant and the records, or neither, and never a code that works twice.
    """
    params_ = params(ctx, root)
    refuse_malformed(ctx, code, params_, purpose)
    with _lock(ctx):
        current = load_state(ctx)
        if ctx.caller.is_agent and lockout.is_locked(current.lock, now):
            ctx.audit("code", purpose=purpose, result="locked", until=until_text(current.lock.locked_until))
            raise locked_out(current.lock.locked_until)
        counted = lockout.after_failure(current.lock, now) if ctx.caller.is_agent else current.lock
        if counted != current.lock:
            _save_state(ctx, GateState(current.last_step, counted))  # durable before the guess is checked
        step = totp.match_step(params_, code, now, current.last_step)
        if step is None or refuse_cause:
            denial = {"purpose": purpose, "result": "denied", "cause": refuse_cause or _cause(params_, code, now),
                      "failures": counted.failures}
            if step is not None:
                _save_state(ctx, GateState(step, counted))
                denial["spent"] = True
            records = [("code", denial)]
            if lockout.is_locked(counted, now) and counted != current.lock:
                records.append(("lockout", {"until": until_text(counted.locked_until), "failures": counted.failures}))
            ctx.audit_all(records)
            raise denied(DENIED_MESSAGE)
        _accept(ctx, GateState(step, current.lock), purpose, grant, grant_record)
        return step


def _accept(ctx: Context, spent: GateState, purpose: str, grant: "grants.Grant | None",
            grant_record: "dict[str, object]") -> None:
    """Spend, grant, audit: in that order, the grant undone if its record cannot be written.

    The code is spent first: a process killed between two writes (SIGKILL, which nothing defers,
    or a CPU-time limit guard refused to run under) leaves at worst a spent code and no grant,
    never a grant whose code could be used again."""
    records = [("code", {"purpose": purpose, "result": "accepted", "step": spent.last_step})]
    _save_state(ctx, spent)  # the code spent and the guess taken back, in one write
    if grant is not None:
        grants.write(ctx.cfg, grant)
        records.append(("grant", {"name": grant.name, "tier": grant.tier, **grant_record}))
    try:
        ctx.audit_all(records)
    except BaseException:
        if grant is not None:
            grants.revoke(ctx.cfg, grant.name)  # no grant without its record; the code stays spent
        raise


def unlock(ctx: Context) -> lockout.State:
    """Clear the agent's failure count and lockout, audited; returns what was cleared.

    If the record cannot be written, the count is put back: cleared and audited, or neither."""
    with _lock(ctx):
        current = load_state(ctx)
        _save_state(ctx, GateState(current.last_step, lockout.State()))
        try:
            ctx.audit("unlock", failures=current.lock.failures)
        except BaseException:
            _save_state(ctx, current)
            raise
    return current.lock


def record_step(ctx: Context, step: int) -> None:
    """After enrolment: the confirming code's step is spent like any other."""
    with _lock(ctx):
        current = load_state(ctx)
        _save_state(ctx, GateState(max(step, current.last_step), current.lock))
