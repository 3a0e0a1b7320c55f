"""Text the agent had a hand in, made safe for the owner's terminal (invariant 13), and say(): the
one `clawgate: reason` line on stderr.

The one escaping function: escape() for any text, field() for one value among
`key=value` fields. Names, ids, argv and reasons come from the agent; shown raw, an
ESC or CSI sequence retitles or rewrites the owner's terminal, a \\r overwrites what came
before on the line, and a space or `=` makes one field read as several.
"""

import sys

from .guard import quietly

PROG = "clawgate"
MAX_MESSAGE = 512  # characters; a message never runs past one line


def say(message: str) -> None:
    # One line whatever the message quotes: argparse echoes raw arguments (newlines, 100 KB).
    # Backslashes stay single: the names and ids a message quotes were escaped by names.shown.
    text = escape(message[:MAX_MESSAGE], double_backslashes=False)
    line = f"{PROG}: {text}{'...' if len(message) > MAX_MESSAGE else ''}\n"
    quietly(lambda: (sys.stderr.write(line), sys.stderr.flush()))  # stderr closed or broken: nobody to tell


_SAFE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7f)) - {"\\"}
# Printable by Python's test, yet drawn as nothing or as a change to the character before: combining
# marks (Mn, Me: U+0338 turns `=` into `≠`, variation selectors) by category, and by this list the
# letters and symbols fonts draw blank (Hangul fillers, the Braille blank, the null notehead).
# Shown raw, they pad a reason or an argv word so that what the owner reads is not what runs.
_MARKS = frozenset(("Mn", "Me"))
_BLANK = frozenset((0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x1D159))
_QUOTE_IF = frozenset(' ="\',[]#')


def escape(text: object, double_backslashes: bool = True) -> str:
    r"""Printable text with every control shown as an escape: C0, DEL, C1 (ESC, CSI, \r, \n, BEL...)
    and bytes that were not UTF-8 (kept as surrogates by surrogateescape) as \xNN, other
    unprintable or invisible characters (bidi overrides, zero-width, combining marks, the printable
    characters drawn blank: _MARKS, _BLANK) as \uNNNN; a backslash
    doubles, so nothing else can pose as an escape (double_backslashes=False: text whose parts
    were escaped already, which only needs to be kept free of controls)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    text = str(text)
    if _SAFE_ASCII.issuperset(text):
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _SAFE_ASCII:
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\" if double_backslashes else ch)
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, via surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif ch.isprintable() and code not in _BLANK and not _is_mark(ch):
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def _is_mark(ch: str) -> bool:
    import unicodedata  # only for text beyond ASCII: a `get` never gets here

    return unicodedata.category(ch) in _MARKS


def field(value: object) -> str:
    """One value among `key=value` fields: escaped, and quoted when it is empty or holds a space,
    `=`, a quote, `,`, `[`, `]` or `#`, so it can never read as a second field. A list shows
    as [a,b,...], each item a field."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(field(item) for item in value) + "]"
    if value is None or isinstance(value, (bool, int, float)):
        return str(value).lower() if isinstance(value, bool) or value is None else str(value)
    text = escape(value)
    if text and _QUOTE_IF.isdisjoint(text):
        return text
    return '"' + text.replace('"', '\\"') + '"'
