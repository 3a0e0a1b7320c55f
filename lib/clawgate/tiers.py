"""Each secret's tier. A secret with no recorded tier is restricted."""

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


def get(cfg: Config, name: str) -> str:
    raw = fsio.read_checked(_path(cfg, name), cfg.owner.uid)
    tier = raw.decode("ascii", "replace").strip() if raw is not None else DEFAULT
    # An unreadable record fails closed.
    return tier if tier in TIERS else DEFAULT


def set(cfg: Config, name: str, tier: str) -> None:
    if tier == DEFAULT:
        fsio.remove(_path(cfg, name))
    else:
        fsio.write_atomic(_path(cfg, name), tier.encode("ascii") + b"\n")


def forget(cfg: Config, name: str) -> None:
    fsio.remove(_path(cfg, name))
