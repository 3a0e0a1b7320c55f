"""Each secret's tier. A secret with no recorded tier is restricted.

The record is one word in STATE/tiers/NAME; with a store shared by several hosts (openbao) it
lives in that store beside the value instead, so every host serves a secret at the same tier.
"""

from . import fsio, names, state
from .config import Config, TIERS
from .errors import usage

DEFAULT = "restricted"


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


def get(cfg: Config, name: str) -> str:
    raw = _read(cfg, name)
    tier = raw.decode("ascii", "replace").strip() if raw is not None else DEFAULT
    # An unreadable record fails closed.
    return tier if tier in TIERS else DEFAULT


def set(cfg: Config, name: str, tier: str) -> None:
    _write(cfg, name, None if tier == DEFAULT else tier.encode("ascii") + b"\n")


def forget(cfg: Config, name: str) -> None:
    _write(cfg, name, None)
