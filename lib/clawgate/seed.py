"""The owner's TOTP seed record. The store keeps it (Store.load_seed/save_seed): never in the secrets
namespace, never served by broker."""

import json
from typing import Optional

from . import totp
from .config import Config
from .errors import unsafe
from .store import open_store


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
    raw = open_store(cfg).load_seed(root)
    return _decode(raw) if raw is not None else None


def save(cfg: Config, params: totp.Params, root: bool = False) -> None:
    open_store(cfg).save_seed(_encode(params), root)
