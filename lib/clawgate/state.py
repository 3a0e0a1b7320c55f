"""The owner's state directory: where each kind of record lives, and its safety check.

state_dir (owner, 0700)
  secrets/   file store: one 0600 file per secret       tiers/   one file per non-default tier
  grants/    one file per grant, @root included         totp-seed, totp.json, audit.log, *.lock
  routes/    one JSON record per proxy route (routes.py)
"""

import os

from . import fsio
from .config import Config

SUBDIRS = ("secrets", "tiers", "grants", "routes")


def path(cfg: Config, *parts: str) -> str:
    return os.path.join(cfg.state_dir, *parts)


def check(cfg: Config) -> None:
    """Exit 6 unless the state dir and its subdirectories are the owner's and closed to everyone else."""
    fsio.check_dir(cfg.state_dir, cfg.owner.uid)
    # O_NOFOLLOW guards only a path's last part: a linked grants/ would lend its records.
    for sub in SUBDIRS:
        if os.path.lexists(path(cfg, sub)):
            fsio.check_dir(path(cfg, sub), cfg.owner.uid)


def ensure(cfg: Config) -> None:
    """Create the subdirectories on first use (the installer creates state_dir itself)."""
    check(cfg)
    for sub in SUBDIRS:
        fsio.ensure_private_dir(path(cfg, sub), cfg.owner.uid)
