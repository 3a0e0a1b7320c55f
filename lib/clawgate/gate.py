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

With a store shared by several hosts (openbao: Store.shared_gate) the record lives in that store
and each write is a check-and-set on the version read: a write that loses (another host wrote
first) is retried from a fresh read, at most CAS_TRIES times. Of two hosts spending one code,
exactly one write lands; the other re-reads a later last step and is denied. A guess counted
before a lost write stays counted and is not counted twice; on success it is taken back only if
nobody changed the count since (else the record keeps the larger count: failing closed).

A shared record is written before anything on this host's disk: a full disk would be found only
after the code was spent or the guess counted, with no audit line. So, as sudo logs a command
before it runs it, check() first makes sure the audit log's filesystem has room (else exit 74,
nothing counted or spent) and then records the attempt (`code result=checking`) before the first
shared write: a disk that fills after that still leaves the spent code or counted guess in the
log, and the line the caller sees says its outcome is what went unrecorded.
"""

import json
import os
from typing import Callable, NamedTuple, NoReturn

from . import durations, fsio, grants, guard, lockout, seed, state, totp
from .context import Context, sudo_uid
from .errors import IO_ERROR, LOCKED_OUT, ClawgateError, denied, io_error, unsafe, usage
from .store import Conflict, Store, open_store

DENIED_MESSAGE = "code denied"
CAS_TRIES = 10  # lost check-and-set writes before giving up: only other hosts' writes cause one
ROOM = 64 << 10  # bytes free the audit log's filesystem needs before a shared record is touched


class GateState(NamedTuple):
    last_step: int
    lock: lockout.State


def _path(ctx: Context) -> str:
    return state.path(ctx.cfg, "totp.json")


def _shared(ctx: Context) -> "Store | None":
    store = open_store(ctx.cfg)
    return store if store.shared_gate else None


def load_state(ctx: Context) -> GateState:
    return _load(ctx)[0]


def _load(ctx: Context) -> "tuple[GateState, int]":
    """The record and its version (0 for the state directory's, which the lock alone guards)."""
    shared = _shared(ctx)
    if shared is None:
        raw, version, where = fsio.read_checked(_path(ctx), ctx.cfg.owner.uid), 0, _path(ctx)
    else:
        (raw, version), where = shared.load_gate(), "the gate record in OpenBao"
    if raw is None:
        return GateState(-1, lockout.State()), version
    try:
        record = json.loads(raw)
        return GateState(
            int(record["last_step"]),
            lockout.State(int(record["failures"]), float(record["last_failure"]), float(record["locked_until"])),
        ), version
    except (ValueError, KeyError, TypeError):
        raise unsafe(f"{where}: damaged; the owner can reset it with: clawgate unlock") from None


def _save_state(ctx: Context, gate: GateState, version: int = 0) -> int:
    """The new version; Conflict if a shared record moved past `version`."""
    raw = json.dumps({"last_step": gate.last_step, **gate.lock._asdict()}).encode()
    shared = _shared(ctx)
    if shared is None:
        fsio.write_atomic(_path(ctx), raw)
        return version
    return shared.save_gate(raw, version)


def _busy() -> ClawgateError:
    return ClawgateError(LOCKED_OUT, f"the gate record kept changing under us ({CAS_TRIES} tries: other hosts "
                                     "are using codes right now); try again")


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
    if sudo_uid() is not None:
        guard.beyond_sudo()  # from the first record to the last, out of reach of a kill the agent can aim
    params_ = params(ctx, root)
    refuse_malformed(ctx, code, params_, purpose)
    shared = _shared(ctx) is not None
    if shared:
        _require_room(ctx)
    with _lock(ctx):
        mine = None  # (before, after): the lock state our guess replaced and the one it left, once durable
        noted = False  # the attempt is in the audit log (a shared record: before it is first written)
        for _ in range(CAS_TRIES):
            current, version = _load(ctx)
            if mine is None:
                if ctx.caller.is_agent and lockout.is_locked(current.lock, now):
                    ctx.audit("code", purpose=purpose, result="locked", until=until_text(current.lock.locked_until))
                    raise locked_out(current.lock.locked_until)
                if shared and not noted:
                    ctx.audit("code", purpose=purpose, result="checking")
                    noted = True
                counted = lockout.after_failure(current.lock, now) if ctx.caller.is_agent else current.lock
                if counted != current.lock:
                    try:  # durable before the guess is checked
                        version = _save_state(ctx, GateState(current.last_step, counted), version)
                    except Conflict:
                        continue
                mine, current = (current.lock, counted), GateState(current.last_step, counted)
            # Our guess is in `current` now; take it back on success only if nobody counted since.
            restored = mine[0] if current.lock == mine[1] else current.lock
            step = totp.match_step(params_, code, now, current.last_step)
            try:
                if step is None or refuse_cause:
                    _deny(ctx, params_, code, now, purpose, refuse_cause, step, current, version, mine)
                _accept(ctx, GateState(step, restored), version, purpose, grant, grant_record)
            except Conflict:
                continue
            except (OSError, ClawgateError) as err:
                if noted:
                    _unrecorded(err)
                raise
            return step
        raise _busy()


def _require_room(ctx: Context) -> None:
    """Refuse before a shared record is touched when the audit log's filesystem is (nearly) full."""
    try:
        fs = os.statvfs(ctx.cfg.state_dir)
    except OSError:
        return  # the append itself will say what is wrong, before anything is written
    free = fs.f_bavail * fs.f_frsize
    if free < ROOM:
        raise io_error(f"{ctx.cfg.state_dir}: no room for the audit log ({free // 1024} KiB free); "
                       "nothing was checked, counted or spent; free some space, then try again")


def _unrecorded(err: "OSError | ClawgateError") -> None:
    """A local write failed after the shared record changed: say so, not "nothing was done"."""
    if isinstance(err, ClawgateError) and err.code != IO_ERROR:
        return  # a refusal (denied, a store failure): its own line says it
    why = (err.strerror or "a write failed") if isinstance(err, OSError) else "the audit log cannot be written"
    raise io_error(f"cannot record the outcome on this host ({why}); the code was checked "
                   "against OpenBao's record and the attempt is in the audit log; no grant was made") from None


def _deny(ctx: Context, params_: totp.Params, code: str, now: float, purpose: str, refuse_cause: "str | None",
          step: "int | None", current: GateState, version: int,
          mine: "tuple[lockout.State, lockout.State]") -> NoReturn:
    """Spend a valid code refused all the same, audit the denial and raise it (Conflict: retry)."""
    denial = {"purpose": purpose, "result": "denied", "cause": refuse_cause or _cause(params_, code, now),
              "failures": current.lock.failures}
    if step is not None:
        _save_state(ctx, GateState(step, current.lock), version)
        denial["spent"] = True
    records = [("code", denial)]
    if lockout.is_locked(mine[1], now) and mine[1] != mine[0]:
        records.append(("lockout", {"until": until_text(mine[1].locked_until), "failures": mine[1].failures}))
    ctx.audit_all(records)
    raise denied(DENIED_MESSAGE)


def _accept(ctx: Context, spent: GateState, version: int, purpose: str, grant: "grants.Grant | None",
            grant_record: "dict[str, object]") -> None:
    """Spend, grant, audit: in that order, the grant undone if its record cannot be written.

    The code is spent first: a process killed between two writes (SIGKILL, which nothing defers,
    or a CPU-time limit guard refused to run under) leaves at worst a spent code and no grant,
    never a grant whose code could be used again."""
    records = [("code", {"purpose": purpose, "result": "accepted", "step": spent.last_step})]
    _save_state(ctx, spent, version)  # the code spent and the guess taken back, in one write (Conflict: nothing done)
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
        current, version = _write_retried(ctx, lambda gate: GateState(gate.last_step, lockout.State()))
        try:
            ctx.audit("unlock", failures=current.lock.failures)
        except BaseException:
            _write_retried(ctx, lambda gate: GateState(gate.last_step, current.lock))
            raise
    return current.lock


def record_step(ctx: Context, step: int) -> None:
    """After enrolment: the confirming code's step is spent like any other."""
    with _lock(ctx):
        _write_retried(ctx, lambda gate: GateState(max(step, gate.last_step), gate.lock))


def _write_retried(ctx: Context, change: "Callable[[GateState], GateState]") -> "tuple[GateState, int]":
    """Read, change, write by check-and-set, retried on a lost write; (what was read, the new version)."""
    for _ in range(CAS_TRIES):
        current, version = _load(ctx)
        try:
            return current, _save_state(ctx, change(current), version)
        except Conflict:
            continue
    raise _busy()
