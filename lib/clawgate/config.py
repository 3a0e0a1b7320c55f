"""The INI config: principals, store and TTL caps. Root-owned; never taken from the environment."""

import os
import pwd

from . import durations, fsio
from .lean import Record, read_ini  # not configparser/typing: they would double the cost of a `get`
from .errors import ClawgateError, unsafe

TIERS = ("open", "controlled", "restricted")
# The caps DESIGN.md fixes; a config may shorten them, never lengthen them.
MAX_TTL = {"controlled": 4 * 3600, "restricted": 15 * 60, "root": 30 * 60}
DEFAULT_SECURITY = "/usr/bin/security"


class Principal(Record):
    name: str
    uid: int
    gid: int
    home: str


class Config(Record):
    path: str
    owner: Principal
    agent: Principal
    state_dir: str
    store: str
    ttl: "dict[str, int]"
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
    try:
        with open(path, encoding="utf-8") as handle:
            parser = _Sections(read_ini(handle.read()))
    except ValueError as err:  # UnicodeDecodeError included
        raise unsafe(f"{path}: not a valid config ({err})") from None
    return _build(path, parser)


class _Sections(dict):
    """The parsed INI with configparser's get(section, key, fallback=...), which _build uses."""

    def get(self, section: str, key: str, fallback: str = "") -> str:  # type: ignore[override]
        return dict.get(self, section, {}).get(key, fallback)


def _trusted_uids() -> "tuple[int, ...]":
    """Root, or the owner a program runs as (DESIGN.md allows either to own the config)."""
    return (0, os.geteuid())


def _build(path: str, parser: _Sections) -> Config:
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


def _ttl_caps(path: str, parser: _Sections) -> "dict[str, int]":
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
