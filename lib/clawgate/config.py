"""The INI config: principals, store and TTL caps. Root-owned; never taken from the environment."""

import configparser
import os
import pwd
from typing import Dict, NamedTuple

from . import durations, fsio
from .errors import ClawgateError, unsafe

TIERS = ("open", "controlled", "restricted")
# The caps DESIGN.md fixes; a config may shorten them, never lengthen them.
MAX_TTL = {"controlled": 4 * 3600, "restricted": 15 * 60, "root": 30 * 60}
DEFAULT_SECURITY = "/usr/bin/security"


class Principal(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str


class Config(NamedTuple):
    path: str
    owner: Principal
    agent: Principal
    state_dir: str
    store: str
    ttl: Dict[str, int]
    security: str
    keychain: str

    def cap(self, tier: str) -> int:
        return self.ttl[tier]


def principal(name: str, role: str) -> Principal:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise unsafe(f"config: {role} {name!r} is not a user on this system") from None
    return Principal(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def load(path: str) -> Config:
    fsio.check_trusted_file(path, _trusted_uids())
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError) as err:
        raise unsafe(f"{path}: not a valid config ({type(err).__name__})") from None
    return _build(path, parser)


def _trusted_uids() -> "tuple[int, ...]":
    """Root, or the owner a program runs as (DESIGN.md allows either to own the config)."""
    return (0, os.geteuid())


def _build(path: str, parser: configparser.ConfigParser) -> Config:
    def get(section: str, key: str, default: str = "") -> str:
        value = parser.get(section, key, fallback=default).strip()
        if not value:
            raise unsafe(f"{path}: [{section}] {key} is not set")
        return value

    owner = principal(get("clawgate", "owner"), "owner")
    agent = principal(get("clawgate", "agent_user", "openclaw"), "agent_user")
    if agent.uid in (0, owner.uid):
        raise unsafe(f"{path}: agent_user must be its own non-root user")
    store = get("clawgate", "store", "file")
    if store not in ("file", "keychain"):
        raise unsafe(f"{path}: store must be file or keychain, not {store!r}")
    state_dir = get("clawgate", "state_dir")
    if not os.path.isabs(state_dir):
        raise unsafe(f"{path}: state_dir must be an absolute path")
    keychain = parser.get("keychain", "path", fallback="").strip() or os.path.join(
        owner.home, "Library", "Keychains", "clawgate.keychain-db"
    )
    return Config(
        path=path,
        owner=owner,
        agent=agent,
        state_dir=os.path.normpath(state_dir),
        store=store,
        ttl=_ttl_caps(path, parser),
        security=parser.get("keychain", "security", fallback=DEFAULT_SECURITY).strip(),
        keychain=keychain,
    )


def _ttl_caps(path: str, parser: configparser.ConfigParser) -> Dict[str, int]:
    caps = {}
    for tier, maximum in MAX_TTL.items():
        text = parser.get("ttl", tier, fallback=durations.show(maximum))
        try:
            seconds = durations.parse(text)
        except ClawgateError as err:
            raise unsafe(f"{path}: [ttl] {tier}: {err.message}") from None
        if seconds > maximum:
            raise unsafe(f"{path}: [ttl] {tier} = {text} exceeds the {durations.show(maximum)} maximum")
        caps[tier] = seconds
    return caps
