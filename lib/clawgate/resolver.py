"""`broker resolve`: OpenClaw's exec SecretRef provider, protocol version 1.

The gateway (running as the agent) starts the agent's launcher (install.sh writes it), which execs
  /usr/bin/sudo -n -u OWNER PREFIX/libexec/clawgate/broker resolve
writes one request on stdin and reads one reply on stdout:
  {"protocolVersion":1,"provider":"clawgate","ids":["a","b"]}
  {"protocolVersion":1,"values":{"a":"..."},"errors":{"b":{"code":"NOT_FOUND","message":"not found"}}}
(OpenClaw 2026.9.6 docs/gateway/secrets/secretref-contract.md, "Exec provider"; its
dist/resolve-*.mjs, parseExecValues).

Per-id `code`: OpenClaw shows only the codes it knows (SAFE_EXEC_ERROR_CODES: NOT_FOUND,
AMBIGUOUS_DUPLICATE_KEY) and never a `message` (a resolver's output may hold credential
material). So a missing secret is NOT_FOUND, shown as `failed for id "x" (NOT_FOUND)`, and a
refusal gets a code of our own (APPROVAL_REQUIRED, INVALID_ID, NOT_UTF8) that OpenClaw reports as
a plain `failed for id "x"`; the message is for anyone reading the reply itself.

What the gateway does with our answer decides the shape of this file:
- any non-zero exit fails every id of the batch ("exited with code N") and stdout
  is ignored, so a refusal of one id is an entry in "errors" and exit 0;
- a broken request can only come from something that is not the gateway, so it
  gets exit 2, one line on stderr and nothing on stdout: nothing is written
  until the whole reply is built;
- values are JSON strings; a stored value that is not UTF-8 cannot be one, so it
  becomes the error "not valid UTF-8" rather than a lossy or escaped value.
Limits are the gateway's own defaults (maxRefsPerProvider 512, maxBatchBytes
256 KiB): a request over them did not come from a default gateway.
"""

from __future__ import annotations  # annotations stay text: typing is never imported at run time

import json  # resolve speaks JSON; `get` never imports this module

from . import access, names
from .context import Context
from .errors import usage
from .store import NoSuchSecret, open_store

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~10 ms on every call)
if TYPE_CHECKING:
    from typing import BinaryIO, Dict, List, TextIO

PROTOCOL_VERSION = 1
MAX_IDS = 512
MAX_INPUT = 256 * 1024


def serve(ctx: Context, stdin: BinaryIO, stdout: TextIO) -> int:
    ids = parse_request(read_request(stdin))
    with ctx.audit_batch():  # one locked append for all ids, written before any value leaves
        values, errors = answer(ctx, ids)
    reply = {"protocolVersion": PROTOCOL_VERSION, "values": values, "errors": errors}
    stdout.write(json.dumps(reply) + "\n")
    stdout.flush()
    return 0


def read_request(stdin: BinaryIO) -> bytes:
    raw = stdin.read(MAX_INPUT + 1)
    if len(raw) > MAX_INPUT:
        raise usage(f"resolve: request larger than {MAX_INPUT // 1024} KiB")
    return raw


def parse_request(raw: bytes) -> List[str]:
    """The requested ids, in order, without repeats; exit 2 for anything that is not a v1 request."""
    try:
        request = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise usage("resolve: request is not valid JSON") from None
    except RecursionError:  # absurd nesting; json would otherwise escape as a traceback
        raise usage("resolve: request is not valid JSON") from None
    if not isinstance(request, dict):
        raise usage("resolve: request must be a JSON object")
    version = request.get("protocolVersion")
    # type() rather than ==: JSON true and 1.0 compare equal to 1 in Python.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise usage(f"resolve: protocolVersion must be {PROTOCOL_VERSION}")
    if not isinstance(request.get("provider", ""), str):
        raise usage("resolve: provider must be a string")
    ids = request.get("ids")
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise usage("resolve: ids must be a list of strings")
    if len(ids) > MAX_IDS:
        raise usage(f"resolve: more than {MAX_IDS} ids")
    return list(dict.fromkeys(ids))


# Each decision's key in the batch's one audit record, which lists the ids it applied to.
DECIDED = ("ok", "proxy_token", "missing", "denied_no_grant", "denied_use_only", "denied_invalid_name",
           "denied_not_utf8")
# `proxy-token:ROUTE` is a route's proxy token (what `clawgate openclaw-config --proxy` points an
# apiKey at), never a secret: `:` occurs in no secret name, and OpenClaw's ids allow it.
PROXY_TOKEN = "proxy-token:"


def answer(ctx: Context, ids: List[str]):
    """(values, errors): every id lands in exactly one of them, and in the batch's audit record."""
    store = open_store(ctx.cfg)
    now = ctx.now()
    values: Dict[str, str] = {}
    errors: Dict[str, Dict[str, str]] = {}
    decided: Dict[str, List[str]] = {key: [] for key in DECIDED}
    try:
        if store.batched:  # a remote store: the batch's tiers, then the values it may read, in parallel
            valid = [secret_id for secret_id in ids if names.is_valid(secret_id)]
            store.prefetch("tiers", valid)
            store.prefetch("secrets", [secret_id for secret_id in valid
                                       if access.allowed(*access.decide(ctx.cfg, secret_id, now))])
        for secret_id in ids:
            try:
                values[secret_id] = _value(ctx, store, secret_id, now, decided)
            except _Refused as refusal:
                errors[secret_id] = {"code": refusal.code, "message": refusal.message}
    finally:
        # One record per batch, not one per id: 512 ids of 127 characters made 165 KB a call.
        # A list past audit.MAX_FIELD keeps its start, its length and its sha256.
        store.drop_prefetched()
        ctx.audit("resolve", ids=len(ids), **{key: found for key, found in decided.items() if found})
    return values, errors


def _proxy_token(ctx: Context, secret_id: str, decided: Dict[str, List[str]]) -> str:
    from . import routes
    from .errors import ClawgateError

    name = secret_id[len(PROXY_TOKEN):]
    try:
        token = routes.load(ctx.cfg, routes.check_name(name)).token
    except ClawgateError:
        decided["missing"].append(names.shown(secret_id))
        raise _Refused("NOT_FOUND", "no such route") from None
    decided["proxy_token"].append(secret_id)
    return token


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _value(ctx: Context, store, secret_id: str, now: float, decided: Dict[str, List[str]]) -> str:
    """The value for one id, or _Refused; notes the decision in `decided` either way, never the value."""
    if secret_id.startswith(PROXY_TOKEN):
        return _proxy_token(ctx, secret_id, decided)
    if not names.is_valid(secret_id):
        decided["denied_invalid_name"].append(names.shown(secret_id))
        raise _Refused("INVALID_ID", "invalid secret name")
    try:
        tier, value = access.read(ctx, store, "resolve", secret_id, now, audit=False)
    except NoSuchSecret:
        decided["missing"].append(secret_id)
        raise _Refused("NOT_FOUND", "not found") from None
    except access.ApprovalRequired as refused:
        decided["denied_no_grant"].append(secret_id)
        raise _Refused("APPROVAL_REQUIRED", refused.reason) from None
    except access.UseOnly as refused:
        decided["denied_use_only"].append(secret_id)
        raise _Refused("USE_ONLY", refused.reason) from None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        decided["denied_not_utf8"].append(secret_id)
        raise _Refused("NOT_UTF8", "not valid UTF-8 (a JSON reply cannot carry it; use clawgate run or get)") from None
    decided["ok"].append(secret_id)
    return text
