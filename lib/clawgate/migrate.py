"""`secrets import-keychain`: copy a keychain built with the guide's scripts into clawgate.

The guide kept every secret as a generic password under one service, in a keychain of its
own, and the TOTP seed as one more item of that service (account `totp_secret`). This copies
every other item of the service (tier restricted unless --tier), checks everything before
storing anything, and reads each copy back. The old keychain is only read: nothing in it is
changed or deleted. The seed is not a secret: `enroll --import` takes it, through the command
printed at the end, so it never shows on a screen or in argv.
"""

import os
import shlex
from typing import List, NamedTuple, Optional

from . import names, prompt, seed, tiers
from .context import Context
from .errors import denied, unsafe, usage
from .store import open_store
from .store.keychain import Keychain
from .store.securitytool import Tool

SEED_ACCOUNTS = ("totp_secret", "_totp_secret")  # the guide's scripts; their later versions
MAX_VALUE = 1 << 20  # as `secrets set`


class Entry(NamedTuple):
    name: str
    value: bytes


def seed_command(security: str, path: str, service: str, account: str, rotate: bool = False) -> str:
    """The exact command that hands the guide's seed to enroll: keychain -> pipe -> enroll.

    `-w` is safe here: a base32 seed or otpauth URI is printable text, which -w prints as it
    is. The code that confirms the enrolment is the line typed next on the terminal.
    """
    return (f"( {shlex.quote(security)} find-generic-password -w -s {shlex.quote(service)} "
            f"-a {shlex.quote(account)} {shlex.quote(path)}; head -n 1 /dev/tty ) | clawgate enroll --import"
            + (" --rotate" if rotate else ""))


def import_keychain(ctx: Context, path: str, service: str, tier: Optional[str]) -> int:
    path = os.path.abspath(path)
    source = Keychain(Tool(ctx.cfg.security), path)
    _check_source(ctx, source, service)
    _unlock(source)
    accounts = source.accounts(service)
    if not accounts:
        raise usage(f"{path}: no item under service {service!r}; nothing was imported")
    seeds = [account.decode("latin-1") for account in accounts if account.decode("latin-1") in SEED_ACCOUNTS]
    wanted = [account for account in accounts if account.decode("latin-1") not in SEED_ACCOUNTS]
    store = open_store(ctx.cfg)
    entries = [_read(source, service, name) for name in _checked_names(store, wanted, path)]
    tier = tier or tiers.DEFAULT
    for entry in entries:
        store.put(entry.name, entry.value)
        tiers.set(ctx.cfg, entry.name, tier)
        verified = store.get(entry.name) == entry.value
        ctx.audit("import", name=entry.name, tier=tier, source="keychain", verified=verified)
        if not verified:
            raise unsafe(f"{entry.name}: the stored copy reads back different; the original is untouched")
        print(f"clawgate: {entry.name}: imported ({tier})")
    enrolled = bool(seeds) and seed.load(ctx.cfg) is not None
    for account in seeds:
        print(f"clawgate: {account} is the guide's TOTP seed, not a secret; enrol it with:\n"
              f"  {seed_command(ctx.cfg.security, path, service, account, rotate=enrolled)}\n"
              f"  then type the current code from your authenticator and press Enter"
              + ("\n  (--rotate: it replaces the seed enrolled now and revokes every grant)" if enrolled else ""))
    return 0


def _check_source(ctx: Context, source: Keychain, service: str) -> None:
    if not service:
        raise usage("import-keychain: --service must not be empty")
    if not source.exists():
        raise usage(f"{source.path}: no such keychain")
    own = os.path.realpath(ctx.cfg.keychain)
    if ctx.cfg.store == "keychain" and os.path.realpath(source.path) in (own, own + "-db"):
        raise usage(f"{source.path} is clawgate's own keychain")


def _unlock(source: Keychain) -> None:
    # The keychain's password goes to security on stdin, like every password here.
    password = prompt.line(f"password of {source.path} (empty if it is unlocked)", hidden=True)
    if password:
        result = source.unlock(password)
        if result.failed_line:
            raise denied(f"{source.path}: cannot unlock it ({result.reason()}); nothing was imported")


def _checked_names(store, accounts: List[bytes], path: str) -> List[str]:
    """Every item's name, valid and new, or nothing is imported."""
    found = []
    for account in accounts:
        name = account.decode("utf-8", "replace")
        if not names.is_valid(name):
            raise usage(f"{names.shown(name)}: not a valid secret name; nothing was imported "
                        f"(rename the item in {path}, or store it with: clawgate secrets set NAME)")
        if store.exists(name):
            raise usage(f"{name}: already stored; nothing was imported (remove it first: clawgate secrets rm {name})")
        found.append(name)
    return found


def _read(source: Keychain, service: str, name: str) -> Entry:
    item = source.find(service, name)
    if item is None:
        raise usage(f"{name}: vanished from {source.path}; nothing was imported")
    if len(item.data) > MAX_VALUE:
        raise usage(f"{name}: larger than {MAX_VALUE} bytes; nothing was imported")
    return Entry(name, item.data)
