"""Each secret's tier and use-only mark. A secret with no record is restricted and readable.

The record is one line, `TIER` or `TIER use-only`: both facts in one record, so one atomic write
changes them together and changing one can never drop the other. A use-only secret is never
served to the agent (access.read); only the proxy sends it, to its route's upstream.
The record is STATE/tiers/NAME; with a store shared by several hosts (openbao) it lives in that
store beside the value instead, so every host serves a secret at the same tier and mark, and
there it changes only by check-and-set (the owner's lock on one host does not hold the others).
"""

from . import fsio, names, state
from .config import Config, TIERS
from .errors import usage

DEFAULT = "restricted"
USE_ONLY = "use-only"


def check(tier: str) -> str:
    if tier not in TIERS:
        raise usage(f"{names.shown(tier)}: tier must be one of {', '.join(TIERS)}")
    return tier


def _path(cfg: Config, name: str) -> str:
    return state.path(cfg, "tiers", names.to_filename(name))


def _shared(cfg: Config):  # the shared store, when it keeps the records (not on the file store's path)
    from .store import open_store

    return open_store(cfg)


def _read(cfg: Config, name: str) -> "bytes | None":
    if cfg.store == "openbao":
        return _shared(cfg).load_tier(name)
    return fsio.read_checked(_path(cfg, name), cfg.owner.uid)


def _write(cfg: Config, name: str, record: "bytes | None") -> None:
    """Write the record; None removes it."""
    if cfg.store == "openbao":
        _shared(cfg).save_tier(name, record)
    elif record is None:
        fsio.remove(_path(cfg, name))
    else:
        fsio.write_atomic(_path(cfg, name), record)


def read(cfg: Config, name: str) -> "tuple[str, bool]":
    """(tier, use_only). A damaged record fails closed on both: restricted and use-only."""
    return _parse(_read(cfg, name))


def get(cfg: Config, name: str) -> str:
    return read(cfg, name)[0]


def use_only(cfg: Config, name: str) -> bool:
    return read(cfg, name)[1]


def _parse(raw: "bytes | None") -> "tuple[str, bool]":
    """(tier, use_only) of a record. A damaged record fails closed on both: restricted and use-only."""
    if raw is None:
        return DEFAULT, False
    words = raw.decode("ascii", "replace").split()
    if not 1 <= len(words) <= 2 or words[0] not in TIERS or words[1:] not in ([], [USE_ONLY]):
        return DEFAULT, True
    return words[0], len(words) == 2


def _record(tier: str, mark: bool) -> bytes:
    return f"{tier}{' ' + USE_ONLY if mark else ''}\n".encode("ascii")


def _changed(raw: "bytes | None", tier: "str | None", use_only: "bool | None") -> "tuple[str, bool]":
    old_tier, old_mark = _parse(raw)
    return (old_tier if tier is None else tier), (old_mark if use_only is None else use_only)


def set(cfg: Config, name: str, tier: "str | None" = None, use_only: "bool | None" = None) -> None:
    """Change the tier, the mark or both; what is None keeps its value."""
    if cfg.store == "openbao":
        return _set_shared(cfg, name, tier, use_only)
    tier, mark = _changed(_read(cfg, name), tier, use_only)
    _write(cfg, name, None if tier == DEFAULT and not mark else _record(tier, mark))


CAS_TRIES = 10  # lost check-and-set writes before giving up: only other hosts' changes cause one


def _set_shared(cfg: Config, name: str, tier: "str | None", use_only: "bool | None") -> None:
    """On a store shared by several hosts the owner's lock is only this host's: the change is a
    check-and-set on the version read, retried from a fresh read when another host wrote between
    (as the gate's record is), so a tier changed on one host and a mark set on another both hold.
    Back to the default the record is written, not removed: a removal cannot be check-and-set."""
    from .errors import unsafe
    from .store import Conflict

    store = _shared(cfg)
    for _ in range(CAS_TRIES):
        raw, version = store.load_tier_versioned(name)
        try:
            store.change_tier(name, _record(*_changed(raw, tier, use_only)), version)
            return
        except Conflict:
            continue
    raise unsafe(f"OpenBao: the tier record of {names.shown(name)} kept changing ({CAS_TRIES} tries: other hosts "
                 "are changing it right now); nothing was changed here, try again")


def forget(cfg: Config, name: str) -> None:
    _write(cfg, name, None)
