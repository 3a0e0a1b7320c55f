"""Streaming redaction for `clawgate run`: every secret value, and its common encodings, become `[redacted:NAME]`.

What counts as a form of a value (forms()):
- the value itself, and the value with surrounding whitespace stripped;
- its base64, standard and URL-safe alphabets, with and without `=` padding;
- the part of its base64 that is fixed whatever precedes it, for each of the three
  byte alignments: a token inside `base64(user:token)` (HTTP basic auth) is caught
  too. Only used when that part is long enough not to match ordinary text;
- its percent-encoding as common encoders write it (Python quote/quote_plus,
  JavaScript encodeURIComponent), upper- and lower-case hex;
- its hex, lower and upper case: unbroken (`xxd -p`, `hexdump`-style dumps, `.hex()`) and one
  byte per space-separated pair (`od -An -tx1`, `xxd` without -p groups by two bytes: not
  caught). A dump wrapped mid-value (xxd -p breaks every 30 bytes, od every 16) is not either.

A stream arrives in arbitrary pieces, so a value may be split across reads. The
redactor holds back the longest tail of what it has seen that could still grow
into a form, and never more: output is delayed by less than the longest form.
This guards against a tool printing a secret by accident; it is not a boundary
against a program that means to leak one (it could print it reversed).
"""

import base64
import copy
import re
from typing import Iterable, List, Tuple
from urllib.parse import quote, quote_plus

# An alignment core shorter than this would redact ordinary words: 12 base64
# characters carry 72 bits of the value.
MIN_CORE = 12


def forms(value: bytes) -> List[bytes]:
    """Every byte string that stands for `value` in output, longest first, without repeats."""
    if not value:
        return []
    found = [value]
    stripped = value.strip()
    if stripped and stripped != value:
        found.append(stripped)
    for raw in dict.fromkeys(found):
        found += _base64_forms(raw) + _url_forms(raw) + _hex_forms(raw) + _text_forms(raw)
    return sorted(set(found), key=lambda form: (-len(form), form))


def _text_forms(value: bytes) -> List[bytes]:
    """As JSON encoders escape it (PHP's and Java's write `/` as `\\/`), and upper- or lower-cased
    (a header parameter or a log line may fold the case); the case forms only for values long
    enough not to match ordinary words."""
    out = []
    escaped = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"/", b"\\/")
    if escaped != value:
        out.append(escaped)
    if len(value) >= MIN_CORE:
        out += [value.lower(), value.upper()]
    return [form for form in out if form != value]


def _base64_forms(value: bytes) -> List[bytes]:
    out = []
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        padded = encode(value)
        out += [padded, padded.rstrip(b"=")]
        for offset in range(3):
            core = _aligned_core(encode, value, offset)
            if len(core) >= MIN_CORE:
                out.append(core)
    return out


def _aligned_core(encode, value: bytes, offset: int) -> bytes:
    """The base64 characters of `value` placed `offset` bytes into a longer input,
    keeping only those that depend on the value's bits alone."""
    encoded = encode(b"\0" * offset + value + b"\0\0")
    first = (offset * 8 + 5) // 6  # first character whose 6 bits all come from the value
    last = ((offset + len(value)) * 8) // 6  # first character that needs a bit after it
    return encoded[first:last]


def _hex_forms(value: bytes) -> List[bytes]:
    lower = value.hex().encode("ascii")
    spaced = value.hex(" ").encode("ascii")
    return [form for form in (lower, lower.upper(), spaced, spaced.upper()) if form != value]


def _url_forms(value: bytes) -> List[bytes]:
    texts = [
        quote(value, safe=""),
        quote(value, safe="/"),
        quote_plus(value, safe=""),
        quote(value, safe="!'()*"),  # encodeURIComponent
    ]
    out = []
    for text in texts:
        out.append(text.encode("ascii"))
        out.append(re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), text).encode("ascii"))
    return [form for form in out if form != value]


class Redactor:
    """feed() bytes in, get bytes out that hold no form of any value; finish() at end of stream."""

    def __init__(self, secrets: Iterable[Tuple[str, bytes]]) -> None:
        by_form: "dict[bytes, bytes]" = {}
        for name, value in secrets:
            for form in forms(value):
                by_form.setdefault(form, f"[redacted:{name}]".encode())
        # Longest first: at one position the regex takes the first alternative
        # that matches, so the longest form wins.
        ordered = sorted(by_form, key=lambda form: (-len(form), form))
        self._label = by_form
        self._forms = ordered
        self._pattern = re.compile(b"|".join(re.escape(form) for form in ordered)) if ordered else None
        self._longest = len(ordered[0]) if ordered else 0
        self._starts = frozenset(form[0] for form in ordered)
        self._pending = b""

    def fresh(self) -> "Redactor":
        """A redactor for another stream, sharing this one's compiled forms (the proxy builds
        them once per value, not once per header and response)."""
        twin = copy.copy(self)
        twin._pending = b""
        return twin

    def feed(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        buf = self._pending + data
        out = []
        pos = 0
        while True:
            hold = self._hold_from(buf, pos)
            match = self._pattern.search(buf, pos)
            if match is None or match.start() >= hold:
                # Everything before `hold` is final: no form starts there that
                # could still be completed by bytes yet to come.
                out.append(buf[pos:hold])
                self._pending = buf[hold:]
                return b"".join(out)
            # A match that starts before `hold` is the longest form there: a
            # longer one would have made its start a place to hold from.
            out.append(buf[pos:match.start()])
            out.append(self._label[match.group(0)])
            pos = match.end()

    def finish(self) -> bytes:
        """The held-back tail, redacted: the stream has ended, so no form can grow any more."""
        rest, self._pending = self._pending, b""
        if self._pattern is None:
            return rest
        return self._pattern.sub(lambda match: self._label[match.group(0)], rest)

    def _hold_from(self, buf: bytes, pos: int) -> int:
        """The first position from which buf's tail is a proper prefix of some form."""
        end = len(buf)
        for start in range(max(pos, end - self._longest + 1), end):
            if buf[start] not in self._starts:
                continue
            tail = buf[start:]
            if any(len(form) > len(tail) and form.startswith(tail) for form in self._forms):
                return start
        return end
