"""The INI config: principals, store and TTL caps. Root-owned; never taken from the environment.

Where it is comes from the running program's own path (Layout, of_program): a privileged
program never takes its config path from the environment or its arguments, so
PREFIX/libexec/clawgate/PROG reads PREFIX/etc/clawgate/clawgate.conf.

read_ini is clawgate's one INI reader (not configparser: it would double the cost of a `get`);
install.sh's checks (installcheck.py) and doctor read the config through it too.
"""

import os
import pwd
import stat

from . import durations, fsio
from .records import Record
from .errors import ClawgateError, unsafe

TIERS = ("open", "controlled", "restricted")
STORES = ("file", "keychain", "openbao")
# The caps DESIGN.md fixes; a config may shorten them, never lengthen them.
MAX_TTL = {"controlled": 4 * 3600, "restricted": 15 * 60, "root": 30 * 60}
DEFAULT_SECURITY = "/usr/bin/security"
DEFAULT_PROXY_PORT = 8217
# [audit]: the log is rotated once it reaches rotate_size bytes (0: never), and `keep` rotated files
# are kept beside it; what is older goes (the documented retention, about rotate_size x keep).
AUDIT_ROTATE_SIZE = 64 << 20
AUDIT_KEEP = 40
MIN_ROTATE_SIZE = 4096  # smaller would rotate at every few records
MAX_KEEP = 100_000
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class Layout(Record):
    __slots__ = ("prefix", "libexec", "config")
    prefix: str
    libexec: str
    config: str

    def program(self, name: str) -> str:
        return os.path.join(self.libexec, name)

    def door(self) -> str:
        """The front door as a hint names it: `clawgate` where a default PATH (a login shell's,
        sudo's secure_path) finds it, else its full path (a --prefix elsewhere); install.sh's rule."""
        bindir = os.path.join(self.prefix, "bin")
        return "clawgate" if bindir in ("/usr/local/bin", "/usr/bin", "/bin") else os.path.join(bindir, "clawgate")


def _from_prefix(prefix: str) -> Layout:
    return Layout(
        prefix=prefix,
        libexec=os.path.join(prefix, "libexec", "clawgate"),
        config=os.path.join(prefix, "etc", "clawgate", "clawgate.conf"),
    )


def of_program(script: str) -> Layout:
    """For PREFIX/libexec/clawgate/PROG."""
    libexec = os.path.dirname(os.path.realpath(script))
    return _from_prefix(os.path.dirname(os.path.dirname(libexec)))


class Principal(Record):
    __slots__ = ("name", "uid", "gid", "home")
    name: str
    uid: int
    gid: int
    home: str


class Config(Record):
    __slots__ = ("path", "owner", "agent", "state_dir", "store", "ttl", "security", "keychain", "service",
                 "proxy_port", "proxy_service", "audit_rotate", "openbao")
    path: str
    owner: Principal
    agent: Principal
    state_dir: str
    store: str
    ttl: "dict[str, int]"
    security: str
    keychain: str
    service: "dict[str, str]"  # [service] as install.sh wrote it: manager, path (doctor checks them)
    proxy_port: int  # [proxy] port: the agent-blind proxy listens on 127.0.0.1 and ::1 there
    proxy_service: str  # [proxy] service: its unit or plist as install.sh wrote it, or "none"
    audit_rotate: "tuple[int, int]"  # [audit] (rotate_size bytes, 0 = never; keep: rotated files kept)
    openbao: "dict[str, str]"  # store = openbao: address host port ca mount prefix role_id (_openbao), else {}

    def cap(self, tier: str) -> int:
        return self.ttl[tier]


def principal(name: str, role: str) -> Principal:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise unsafe(f"config: {role} {name!r} is not a user on this system") from None
    return Principal(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def load(path: str) -> Config:
    """The config at `path`: checked and read through one descriptor, owned by root or its own owner."""
    try:
        fd = os.open(path, fsio.READ_FLAGS)
    except FileNotFoundError:
        raise unsafe(f"{path}: missing (is clawgate installed?)") from None
    except OSError as err:  # ELOOP: a symlink where the config should be
        raise unsafe(f"{path}: cannot open safely ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise unsafe(f"{path}: not a regular file")
        if st.st_mode & 0o022:
            raise unsafe(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} is writable by others")
        raw = fsio.read_fd(fd)
    finally:
        os.close(fd)
    try:  # universal newlines, as configparser reads a file opened in text mode
        sections = read_ini(raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))
    except ValueError as err:  # UnicodeDecodeError included
        raise unsafe(f"{path}: not a valid config ({err})") from None
    cfg = _build(path, sections)
    # The trusted owners, by name: root, or the owner this config itself names.
    if st.st_uid not in (0, cfg.owner.uid):
        raise unsafe(f"{path}: owned by uid {st.st_uid}; must be root's or {cfg.owner.name}'s")
    return cfg


def _value(sections: "dict[str, dict[str, str]]", section: str, key: str, fallback: str = "") -> str:
    return sections.get(section, {}).get(key, fallback)


def _build(path: str, sections: "dict[str, dict[str, str]]") -> Config:
    def get(section: str, key: str, default: str = "") -> str:
        value = _value(sections, section, key, default).strip()
        if not value:
            raise unsafe(f"{path}: [{section}] {key} is not set")
        return value

    owner = principal(get("clawgate", "owner"), "owner")
    agent = principal(get("clawgate", "agent_user", "openclaw"), "agent_user")
    if agent.uid in (0, owner.uid):
        raise unsafe(f"{path}: agent_user must be its own non-root user")
    store = get("clawgate", "store", "file")
    if store not in STORES:
        raise unsafe(f"{path}: store must be file, keychain or openbao, not {store!r}")
    state_dir = get("clawgate", "state_dir")
    if not os.path.isabs(state_dir):
        raise unsafe(f"{path}: state_dir must be an absolute path")
    keychain = _value(sections, "keychain", "path").strip() or os.path.join(
        owner.home, "Library", "Keychains", "clawgate.keychain-db"
    )
    return Config(
        path=path,
        owner=owner,
        agent=agent,
        state_dir=os.path.normpath(state_dir),
        store=store,
        ttl=_ttl_caps(path, sections),
        security=_value(sections, "keychain", "security", DEFAULT_SECURITY).strip(),
        keychain=keychain,
        service=sections.get("service", {}),
        proxy_port=_port(path, _value(sections, "proxy", "port", str(DEFAULT_PROXY_PORT)).strip()),
        proxy_service=_value(sections, "proxy", "service", "none").strip(),
        audit_rotate=_audit_rotation(path, sections),
        openbao=openbao_settings(path, sections, owner.name) if store == "openbao" else {},
    )


def _port(path: str, text: str) -> int:
    if not text.isdigit() or not text.isascii() or not 0 < int(text) < 65536:
        raise unsafe(f"{path}: [proxy] port must be a number from 1 to 65535")
    return int(text)


def _audit_rotation(path: str, sections: "dict[str, dict[str, str]]") -> "tuple[int, int]":
    """[audit] rotate_size (bytes, with an optional K, M or G; 0: never rotate) and keep."""
    size_text = _value(sections, "audit", "rotate_size", "").strip().upper()
    keep_text = _value(sections, "audit", "keep", "").strip()
    size, keep = AUDIT_ROTATE_SIZE, AUDIT_KEEP
    if size_text:
        digits, unit = (size_text[:-1], size_text[-1]) if size_text[-1] in _SIZE_UNITS else (size_text, "")
        if not digits.isdigit() or len(digits) > 12:
            raise unsafe(f"{path}: [audit] rotate_size = {size_text}: give bytes, e.g. 64M (0: never rotate)")
        size = int(digits) * _SIZE_UNITS[unit]
        if 0 < size < MIN_ROTATE_SIZE:
            raise unsafe(f"{path}: [audit] rotate_size must be 0 or at least {MIN_ROTATE_SIZE} bytes")
    if keep_text:
        if not keep_text.isdigit() or not 1 <= int(keep_text) <= MAX_KEEP:
            raise unsafe(f"{path}: [audit] keep = {keep_text}: give a number of rotated files from 1 to {MAX_KEEP}")
        keep = int(keep_text)
    return size, keep


_KV_PATH = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/")


def openbao_settings(path: str, sections: "dict[str, dict[str, str]]", owner: str) -> "dict[str, str]":
    """[openbao]: address (https://HOST[:PORT]), ca (absolute), role_id, mount, prefix."""
    def get(key: str, default: str = "") -> str:
        value = _value(sections, "openbao", key, default).strip()
        if not value or not value.isprintable() or " " in value:
            raise unsafe(f"{path}: [openbao] {key} is not set (or holds a space)")
        return value

    address = get("address").rstrip("/")
    scheme, _, rest = address.partition("://")
    host, port = rest, "8200"
    if rest.rpartition(":")[2].isdigit() and not rest.endswith("]"):
        host, _, port = rest.rpartition(":")
    if scheme != "https" or not host or "/" in host or "@" in host or not 0 < int(port) < 65536:
        raise unsafe(f"{path}: [openbao] address must be https://HOST[:PORT] (TLS always), not {address!r}")
    ca = get("ca")
    if not os.path.isabs(ca):
        raise unsafe(f"{path}: [openbao] ca must be an absolute path")
    settings = {"address": address, "host": host.strip("[]"), "port": port, "ca": ca, "role_id": get("role_id")}
    for key, default in (("mount", "secret"), ("prefix", f"clawgate/{owner}")):
        value = get(key, default).strip("/")
        if not value or not _KV_PATH.issuperset(value) or "" in value.split("/") or ".." in value.split("/"):
            raise unsafe(f"{path}: [openbao] {key} must be a KV path (letters, digits, . _ - /)")
        settings[key] = value
    return settings


def _ttl_caps(path: str, sections: "dict[str, dict[str, str]]") -> "dict[str, int]":
    caps = {}
    for tier, maximum in MAX_TTL.items():
        text = _value(sections, "ttl", tier, durations.show(maximum))
        try:
            seconds = durations.parse(text)
        except ClawgateError as err:
            raise unsafe(f"{path}: [ttl] {tier}: {err.message}") from None
        if seconds > maximum:
            raise unsafe(f"{path}: [ttl] {tier} = {text} exceeds the {durations.show(maximum)} maximum")
        caps[tier] = seconds
    return caps


def read_ini(text: str) -> "dict[str, dict[str, str]]":
    """{section: {key: value}} as configparser.ConfigParser(interpolation=None) reads it.

    Raises ValueError (with the line number) on anything configparser would refuse, and on
    what it would read in a way that a person editing the file might not expect: indented
    lines (continuations), a [DEFAULT] section, text after a section's `]`, a key with no
    `=` or `:`. Keys are lowercased and values stripped, as configparser does; a line whose
    first non-blank character is `#` or `;` is a comment; there are no inline comments.
    """
    sections: "dict[str, dict[str, str]]" = {}
    current = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if line[0].isspace():
            raise ValueError(f"line {number}: indented (continuation lines are not supported)")
        if stripped[0] == "[":
            name = stripped[1:-1]
            if stripped[-1] != "]" or not name or "[" in name or "]" in name or name == "DEFAULT":
                raise ValueError(f"line {number}: not a section header")
            if name in sections:
                raise ValueError(f"line {number}: section [{name}] appears twice")
            current = sections[name] = {}
            continue
        cut = min((at for at in (line.find("="), line.find(":")) if at >= 0), default=-1)
        key = line[:cut].strip().lower()
        if cut < 0 or not key:
            raise ValueError(f"line {number}: not `key = value`")
        if current is None:
            raise ValueError(f"line {number}: a key before any [section]")
        if key in current:
            raise ValueError(f"line {number}: {key} appears twice in its section")
        current[key] = line[cut + 1:].strip()
    return sections
