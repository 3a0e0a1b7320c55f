"""Grants: one record per granted name in the owner's state; absence or expiry means no access."""

import os

from . import fsio, names, state, tiers
from .records import Record
from .config import Config

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms on every `get`): annotations
if TYPE_CHECKING:  # that name its types are strings, never evaluated at run time
    from typing import List, Optional


class Grant(Record):
    __slots__ = ("name", "tier", "granted_at", "expires_at", "caller")
    name: str
    tier: str
    granted_at: float
    expires_at: float
    caller: str

    def left(self, now: float) -> float:
        return self.expires_at - now


def _path(cfg: Config, name: str) -> str:
    return state.path(cfg, "grants", names.to_filename(name))


def write(cfg: Config, grant: Grant) -> None:
    # Every value is one line: a checked name, a tier, floats (their str() round-trips), a user name.
    text = "".join(f"{field}={value}\n" for field, value in grant._asdict().items())
    fsio.write_atomic(_path(cfg, grant.name), text.encode("utf-8"))


def _parse(raw: bytes, name: str) -> "Optional[Grant]":
    """A grant file: `field=value` lines, read without json (which drags in re) on every `get`.

    A file that starts with `{` was written as JSON by clawgate 0.x; such a grant is still
    honoured until it expires (at most a tier's cap), json imported for it alone.
    """
    try:
        if raw.startswith(b"{"):
            import json

            record = json.loads(raw)
        else:  # every field once, each line ended (a cut last line is left out): else damaged
            lines = raw.decode("utf-8").split("\n")
            record = dict(line.partition("=")[::2] for line in lines[:-1])
            if len(record) != len(lines) - 1 or set(record) != set(Grant.__slots__):
                return None
        grant = Grant(
            str(record["name"]), str(record["tier"]), float(record["granted_at"]),
            float(record["expires_at"]), str(record["caller"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # a damaged record grants nothing
    return grant if grant.name == name else None


def active(cfg: Config, name: str, now: float, tier: "Optional[str]" = None) -> "Optional[Grant]":
    """The unexpired grant for `name`, cut to the cap of `tier` (the secret's tier now).

    A grant never outlives the cap in force: not after the owner moves the secret to a
    stricter tier, nor after the config shortens the cap.
    """
    raw = fsio.read_checked(_path(cfg, name), cfg.owner.uid)
    grant = _parse(raw, name) if raw is not None else None
    cap = cfg.ttl.get(tier or grant.tier) if grant is not None else None
    if grant is None or cap is None:
        return None
    grant = grant._replace(expires_at=min(grant.expires_at, grant.granted_at + cap))
    return grant if grant.granted_at <= now < grant.expires_at else None


def revoke(cfg: Config, name: str) -> bool:
    return fsio.remove(_path(cfg, name))


def all_names(cfg: Config) -> "List[str]":
    return sorted(
        names.from_filename(entry)
        for entry in os.listdir(state.path(cfg, "grants"))
        if not fsio.is_temp_name(entry)
    )


def all_active(cfg: Config, now: float) -> "List[Grant]":
    found = (active(cfg, name, now, None if name == names.ROOT else tiers.get(cfg, name)) for name in all_names(cfg))
    return [grant for grant in found if grant is not None]
