"""Where the owner's TOTP seed is kept: never in the secrets namespace, never served by broker."""

import json
from typing import Optional

from . import fsio, state, totp
from .config import Config
from .errors import unsafe

KEYCHAIN_SERVICE = "clawgate-totp"
ROOT_SUFFIX = "-root"  # enroll --root: a second seed whose codes alone open root


def _encode(params: totp.Params) -> bytes:
    return json.dumps(
        {
            "secret": totp.to_base32(params.secret),
            "algorithm": params.algorithm,
            "digits": params.digits,
            "period": params.period,
        }
    ).encode()


def _decode(raw: bytes) -> totp.Params:
    try:
        record = json.loads(raw)
        return totp.Params(
            totp.from_base32(record["secret"]), record["algorithm"], int(record["digits"]), int(record["period"])
        )
    except (ValueError, KeyError, TypeError):
        raise unsafe("the TOTP seed record is damaged; run: clawgate enroll --rotate") from None


def load(cfg: Config, root: bool = False) -> Optional[totp.Params]:
    suffix = ROOT_SUFFIX if root else ""
    if cfg.store == "keychain":
        from .store.keychain import KeychainStore

        raw = KeychainStore(cfg).get_service_item(KEYCHAIN_SERVICE + suffix)
    else:
        raw = fsio.read_checked(state.path(cfg, "totp-seed" + suffix), cfg.owner.uid)
    return _decode(raw) if raw is not None else None


def save(cfg: Config, params: totp.Params, root: bool = False) -> None:
    suffix = ROOT_SUFFIX if root else ""
    if cfg.store == "keychain":
        from .store.keychain import KeychainStore

        KeychainStore(cfg).put_service_item(KEYCHAIN_SERVICE + suffix, _encode(params))
    else:
        fsio.write_atomic(state.path(cfg, "totp-seed" + suffix), _encode(params))
