"""`secrets migrate --to openbao`: move this host's file store into the shared OpenBao prefix.

Run once the config says `store = openbao` (install.sh --store openbao ...): the values, tier
records and seeds still in the state directory (what the file store kept there) go into the
prefix, and the once-only step and lockout are merged into the prefix's gate record by
check-and-set (the later step, the stricter lockout). All or nothing: everything local is read
and checked first; a name the prefix already holds with another value, or a different seed
there (another host enrolled), stops it before anything is written. Everything written is read
back; on any failure what was written is removed again, and nothing local is touched. Only
after the read-back are the local copies removed.
"""

import json
import os

from . import fsio, gate, lockout, names, state
from .context import Context
from .errors import unsafe, usage
from .store import Conflict, FileStore, open_store
from .store.openbao import OpenBaoStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple


def _local_tier(ctx: Context, name: str) -> "Optional[bytes]":
    return fsio.read_checked(state.path(ctx.cfg, "tiers", names.to_filename(name)), ctx.cfg.owner.uid)


def _local_gate(ctx: Context) -> "Optional[gate.GateState]":
    raw = fsio.read_checked(state.path(ctx.cfg, "totp.json"), ctx.cfg.owner.uid)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        return gate.GateState(int(record["last_step"]), lockout.State(
            int(record["failures"]), float(record["last_failure"]), float(record["locked_until"])))
    except (ValueError, KeyError, TypeError):
        raise unsafe(f"{state.path(ctx.cfg, 'totp.json')}: damaged; nothing was moved") from None


def migrate(ctx: Context, target: str) -> int:
    if target != "openbao":
        raise usage("secrets migrate: --to openbao is the one target")
    remote = open_store(ctx.cfg)
    if not isinstance(remote, OpenBaoStore):
        raise usage(f"secrets migrate --to openbao: the config says store = {ctx.cfg.store}; first rerun "
                    "install.sh with --store openbao --openbao-address URL --openbao-ca FILE --openbao-role-id ID")
    local = FileStore(ctx.cfg)
    secrets_dir = state.path(ctx.cfg, "secrets")
    moving = local.names() if os.path.isdir(secrets_dir) else []
    values = {name: local.get(name) for name in moving}
    tier_records = {name: _local_tier(ctx, name) for name in moving}
    seeds = {root: local.load_seed(root) for root in (False, True)}
    local_gate = _local_gate(ctx)

    # Every check before any write.
    clashes = [name for name in moving if remote.exists(name) and remote.get(name) != values[name]]
    if clashes:
        raise _clash(ctx, clashes)
    for root, raw in seeds.items():
        theirs = remote.load_seed(root)
        if raw is not None and theirs is not None and theirs != raw:
            where = state.path(ctx.cfg, "totp-seed" + ("-root" if root else ""))
            raise usage(f"OpenBao's prefix already has a{' root' if root else ''} TOTP seed (another host enrolled) "
                        f"and this host's differs; nothing was moved. To use the fleet's seed (one authenticator "
                        f"entry), remove {where} and run this again")

    written: "List[Tuple[str, Optional[str]]]" = []  # (kind, name) to remove again on failure
    try:
        for name in moving:
            new = not remote.exists(name)  # else the same value, left by a run that failed later
            if new:
                written.append(("secret", name))
            remote.put(name, values[name])
            if tier_records[name] is not None:
                if new:
                    written.append(("tier", name))
                remote.save_tier(name, tier_records[name])
        for root, raw in seeds.items():
            if raw is not None and remote.load_seed(root) is None:
                written.append(("seed-root" if root else "seed", None))
                remote.save_seed(raw, root)
        # Read back before anything local goes.
        bad = [name for name in moving if remote.get(name) != values[name]
               or (tier_records[name] is not None and remote.load_tier(name) != tier_records[name])]
        bad += [f"the {'root ' if root else ''}seed" for root, raw in seeds.items()
                if raw is not None and remote.load_seed(root) != raw]
        if bad:
            raise unsafe(f"OpenBao at {remote.bao.address}: read back differs for {', '.join(bad[:5])}; "
                         "what was written is removed again, nothing local was touched")
        if local_gate is not None:
            _merge_gate(remote, local_gate)
    except BaseException:
        _undo(remote, written)
        raise
    ctx.audit("migrate", to="openbao", names=moving, seeds=sum(raw is not None for raw in seeds.values()))
    for name in moving:
        local.delete(name)
        fsio.remove(state.path(ctx.cfg, "tiers", names.to_filename(name)))
    for root in (False, True):
        fsio.remove(state.path(ctx.cfg, "totp-seed" + ("-root" if root else "")))
    fsio.remove(state.path(ctx.cfg, "totp.json"))
    print(f"clawgate: moved {len(moving)} secret{'s' if len(moving) != 1 else ''}"
          f"{' and the TOTP seed' if seeds[False] is not None else ''} into OpenBao at "
          f"{remote.bao.address} ({ctx.cfg.openbao['mount']}/{ctx.cfg.openbao['prefix']}); read back, "
          "then removed from this host")
    return 0


def _clash(ctx: Context, clashes: "List[str]") -> Exception:
    """The refusal when the prefix holds a name with another value, with the two ways out as commands
    that work as they stand: drop this host's copy (its files: with store = openbao, `secrets rm`
    acts on OpenBao), or drop the fleet's (`secrets rm`, for every host); then run it again."""
    first = clashes[0]
    files = " ".join(state.path(ctx.cfg, kind, names.to_filename(first)) for kind in ("secrets", "tiers"))
    more = f" and {len(clashes) - 1} more ({', '.join(names.shown(n) for n in clashes[1:4])}" \
           f"{' ...' if len(clashes) > 4 else ''}; each alike)" if len(clashes) > 1 else ""
    return usage(f"OpenBao's prefix already holds {names.shown(first)}{more} with another value; nothing was "
                 f"moved. Keep the fleet's value: rm -f {files}; or keep this host's: clawgate secrets rm "
                 f"{names.shown(first)} (removes it from OpenBao for every host); then run this again")


def _merge_gate(remote: OpenBaoStore, mine: gate.GateState) -> None:
    """The later last step and the stricter lockout, by check-and-set."""
    for _ in range(gate.CAS_TRIES):
        raw, version = remote.load_gate()
        theirs = json.loads(raw) if raw else None
        last = max(mine.last_step, int(theirs["last_step"])) if theirs else mine.last_step
        lock = mine.lock
        if theirs:  # each field's larger value: failing closed
            lock = lockout.State(max(lock.failures, int(theirs["failures"])),
                                 max(lock.last_failure, float(theirs["last_failure"])),
                                 max(lock.locked_until, float(theirs["locked_until"])))
        record: "Dict[str, object]" = {"last_step": last, **lock._asdict()}
        try:
            remote.save_gate(json.dumps(record).encode(), version)
            return
        except Conflict:
            continue
    raise unsafe("OpenBao: the gate record kept changing; nothing local was removed, run this again")


def _undo(remote: OpenBaoStore, written: "List[Tuple[str, Optional[str]]]") -> None:
    for kind, name in reversed(written):
        try:
            if kind == "secret" and name is not None:
                remote.delete(name)
            elif kind == "tier" and name is not None:
                remote.save_tier(name, None)
            elif kind.startswith("seed"):
                remote.erase_seed(kind == "seed-root")
        except Exception:  # noqa: BLE001 - the first failure is the one to report
            pass
