"""What `list` and `status` show: names, tiers and grant state, never values."""

from __future__ import annotations  # annotations stay text: typing is never imported at run time

from . import access, display, durations, grants, names, tiers
from .context import Context
from .store import open_store

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~10 ms on every `list`)
if TYPE_CHECKING:
    from typing import Any, Dict, List


def secrets_table(ctx: Context, now: float) -> List[Dict[str, Any]]:
    rows = []
    store = open_store(ctx.cfg)
    listed = store.names()
    if store.batched:  # a remote store: every tier record at once, over parallel connections
        store.prefetch("tiers", listed)
    for name in listed:
        tier, use_only = tiers.read(ctx.cfg, name)
        tier, grant = access.decide(ctx.cfg, name, now, tier)
        rows.append({
            "name": name,
            "tier": tier,
            "access": "open" if tier == access.OPEN else ("granted" if grant else "approval required"),
            "expires_in": int(grant.left(now)) if grant else None,
            "use_only": use_only,
        })
    return rows


def print_secrets(rows: List[Dict[str, Any]], as_json: bool) -> None:
    if as_json:
        import json  # here: only --json speaks it

        print(json.dumps(rows))
        return
    if not rows:  # on stderr: a script reading stdout still sees an empty list
        display.say("no secrets yet; the owner adds the first with: clawgate secrets set NAME")
    shown = [display.field(row["name"]) for row in rows]
    width = max([len(name) for name in shown] + [4])
    for name, row in zip(shown, rows):
        left = f" ({durations.show(row['expires_in'])} left)" if row["expires_in"] is not None else ""
        mark = "  (use-only: through the proxy)" if row["use_only"] else ""
        print(f"{name:<{width}}  {display.field(row['tier']):<10}  {row['access']}{left}{mark}")


def status(ctx: Context, now: float) -> Dict[str, Any]:
    from . import gate, lockout  # here: they load the TOTP machinery, which `list` does not need

    active = grants.all_active(ctx.cfg, now)
    current = gate.load_state(ctx)
    root = next((grant for grant in active if grant.name == names.ROOT), None)
    return {
        "grants": [
            {"name": grant.name, "tier": grant.tier, "expires_in": int(grant.left(now))}
            for grant in active if grant.name != names.ROOT
        ],
        "root_session": int(root.left(now)) if root else None,
        "locked_until": gate.until_text(current.lock.locked_until)
        if lockout.is_locked(current.lock, now) else None,
        "failures": lockout.failures_now(current.lock, now),
    }


def print_status(report: Dict[str, Any], as_json: bool) -> None:
    if as_json:
        import json  # here: only --json speaks it

        print(json.dumps(report))
        return
    for grant in report["grants"]:
        name, tier = display.field(grant["name"]), display.field(grant["tier"])
        print(f"grant  {name}  ({tier}, {durations.show(grant['expires_in'])} left)")
    if not report["grants"]:
        print("grants  none")
    root = report["root_session"]
    print(f"root session  {'open, ' + durations.show(root) + ' left' if root is not None else 'closed'}")
    locked = report["locked_until"]
    failures = report["failures"]
    print(f"lockout  {'until ' + str(locked) if locked else 'none'} ({failures} recent wrong code{'' if failures == 1 else 's'})")
