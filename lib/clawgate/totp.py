"""RFC 4226 HOTP and RFC 6238 TOTP. Pure functions: time is always a parameter."""

import base64
import hashlib
import hmac
import secrets
import urllib.parse
from typing import NamedTuple, Optional

ALGORITHMS = ("SHA1", "SHA256", "SHA512")
SEED_BYTES = 20  # 160 bits, RFC 4226's recommendation
WINDOW = 1  # accept the previous, current and next step


class Params(NamedTuple):
    secret: bytes
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30


def hotp(secret: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    mac = hmac.new(secret, counter.to_bytes(8, "big"), getattr(hashlib, algorithm.lower())).digest()
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFFFFFF
    return str(binary % 10 ** digits).zfill(digits)


def step_at(now: float, period: int = 30) -> int:
    return int(now) // period


def code_at(params: Params, now: float) -> str:
    return hotp(params.secret, step_at(now, params.period), params.digits, params.algorithm)


def match_step(params: Params, code: str, now: float, after_step: int) -> Optional[int]:
    """The step in now±WINDOW whose code equals `code` and is later than `after_step`, else None.

    Every candidate is compared in constant time and none is skipped early, so
    timing says nothing about which part of the code was right.
    """
    if len(code) != params.digits or not (code.isascii() and code.isdigit()):
        return None
    current = step_at(now, params.period)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        candidate = hotp(params.secret, step, params.digits, params.algorithm)
        if hmac.compare_digest(candidate.encode(), code.encode()) and step > after_step and found is None:
            found = step
    return found


MATCH_DIGITS = 2  # a request's match number, typed after the code (DESIGN: requests)


def split_code(text: str, digits: int) -> "Optional[tuple]":
    """(code, match) from what was typed, or None when it is not the shape of a code.

    The one rule for every code clawgate reads: exactly `digits` ASCII digits (the enrolled
    seed's 6 or 8), optionally followed by MATCH_DIGITS more, with one space or '-' allowed
    between the two parts; match is "" when absent. A wrong shape is a typo, not a guess:
    callers refuse it with exit 2 before the gate counts anything.
    """
    code, rest = text[:digits], text[digits:]
    if rest[:1] in (" ", "-") and len(rest) == MATCH_DIGITS + 1:
        rest = rest[1:]
    if len(code) != digits or len(rest) not in (0, MATCH_DIGITS):
        return None
    if not (code + rest).isascii() or not (code + rest).isdigit():
        return None
    return code, rest


def new_secret() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def to_base32(secret: bytes) -> str:
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def from_base32(text: str) -> bytes:
    cleaned = "".join(text.split()).replace("-", "").upper().rstrip("=")
    if not cleaned or any(ch not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for ch in cleaned):
        raise ValueError("not a base32 seed")
    try:
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except ValueError:  # binascii.Error: a length no base32 encoder produces
        raise ValueError("not a base32 seed") from None


def uri(params: Params, account: str, issuer: str = "clawgate") -> str:
    label = urllib.parse.quote(f"{issuer}:{account}")
    query = urllib.parse.urlencode(
        {
            "secret": to_base32(params.secret),
            "issuer": issuer,
            "algorithm": params.algorithm,
            "digits": params.digits,
            "period": params.period,
        }
    )
    return f"otpauth://totp/{label}?{query}"


def parse_uri(text: str) -> Params:
    """Params from an otpauth://totp/ URI; ValueError naming what is wrong."""
    parsed = urllib.parse.urlparse(text.strip())
    if parsed.scheme != "otpauth" or parsed.netloc.lower() != "totp":
        raise ValueError("not an otpauth://totp/ URI")
    query = urllib.parse.parse_qs(parsed.query)

    def one(key: str, default: str) -> str:
        return query.get(key, [default])[0]

    algorithm = one("algorithm", "SHA1").upper()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm {algorithm} is not supported")
    digits, period = one("digits", "6"), one("period", "30")
    if digits not in ("6", "8"):
        raise ValueError("digits must be 6 or 8")
    if period != "30":
        raise ValueError("period must be 30")
    return Params(from_base32(one("secret", "")), algorithm, int(digits), 30)


def check_strength(params: Params) -> None:
    if len(params.secret) * 8 < 160:
        raise ValueError(f"seed is {len(params.secret) * 8} bits; at least 160 are required")
