"""Driving macOS security(1): which commands, how their output reads, how secrets stay out of argv.

What this relies on, read in Apple's SecurityTool source (apple-open-source/macos,
Security/SecurityTool/macOS/: security.c, readline.c, keychain_find.c, keychain_add.c,
keychain_utilities.c, keychain_unlock.c, keychain_set_settings.c) and security(1):

- `find-generic-password -g` prints the item's attributes on stdout and `password: ` plus
  print_buffer() on stderr: `"text"` when every byte is printable ASCII other than `\\`,
  `0xHEX ` when none is, `0xHEX  "escaped"` when both kinds occur. The hex, when present, is
  the exact data; otherwise the text between the first and the last quote is. We read that.
- `-w` prints the bytes as they are when all are isprint(), else lowercase hex: `deadbeef`
  and the four bytes DE AD BE EF print alike. Never used here.
- A missing item: `security: SecKeychainSearchCopyNext: The specified item could not be found
  in the keychain.`, exit 44 (errSecItemNotFound -25300 as an 8-bit status). A search that
  fails for another reason (no such keychain) also ends as "not found", so a 44 is trusted
  only once the keychain was unlocked in this process's run.
- `-g` on a locked keychain, with no user interaction possible, prints nothing and exits 36
  (errSecInteractionNotAllowed -25308); attributes stay readable while locked.
- `security -i` reads one command a line from stdin. readline() keeps at most 4095 bytes and
  runs the rest of a longer line as the next command. split_line() splits on whitespace;
  '...' or "..." quote, and a backslash takes the next character literally, in or out of
  quotes. A failing command prints `NAME: returned STATUS` on stderr and the next line runs
  anyway; the exit status is the last command's.
- `add-generic-password -X HEX` takes the data as hex; `-U` updates an existing item's data and
  attributes in one SecKeychainItemModifyContent call, and without -X/-w leaves its data as it
  was; without -U and without -X/-w the new item's data is empty.
- `unlock-keychain -p PW` and `create-keychain -p PW` take the password as an argument, which
  is why they, like every command carrying a value, only ever reach security through -i.
- `set-keychain-settings` with neither -l nor -t/-u: no lock on sleep, no timeout.
"""

import os
import re
import subprocess
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import unsafe

NOT_FOUND = 44  # errSecItemNotFound (-25300) & 0xff
LINE_MAX = 4000  # bytes per -i line: readline() in security.c stops at 4095
TIMEOUT = 60  # seconds: a keychain dialog nobody answers must not hang a broker forever
_RETURNED = re.compile(rb"^[a-z-]+: returned -?[0-9]+$", re.M)


class Result(NamedTuple):
    code: int
    out: bytes
    err: bytes

    @property
    def failed_line(self) -> bool:
        """True when a command of a -i session failed (it printed `NAME: returned STATUS`)."""
        return self.code != 0 or _RETURNED.search(self.err) is not None

    def reason(self) -> str:
        """security's own error line, safe to show: it names APIs and paths, never data."""
        for text in reversed(self.err.decode("utf-8", "replace").splitlines()):
            if text.startswith("security: unknown command"):
                return "security rejected a command"  # it quotes the line, which may hold data
            if text.startswith("security: "):
                return text[len("security: "):][:200]
        return f"exit status {self.code}"


def quote(arg: str) -> str:
    """One argument for a `security -i` line (split_line() in security.c)."""
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in arg):
        raise unsafe("a keychain path, service or password holds a control character")
    return "'" + arg.replace("\\", "\\\\").replace("'", "\\'") + "'"


def line(command: Sequence[str]) -> bytes:
    text = " ".join(quote(arg) for arg in command).encode("utf-8") + b"\n"
    if len(text) > LINE_MAX:
        raise unsafe("a security -i command would exceed its line limit")
    return text


class Tool:
    """The security binary named in the config."""

    def __init__(self, path: str) -> None:
        if not os.path.isabs(path):
            raise unsafe(f"[keychain] security = {path!r}: must be an absolute path")
        self.path = path

    def run(self, *args: str) -> Result:
        """A command whose arguments are all public: names, services, paths. Never a value."""
        return self._spawn([self.path, *args], b"")

    def session(self, commands: Sequence[Sequence[str]]) -> Result:
        """Commands fed to `security -i` on stdin: the only way a value or password reaches it."""
        return self._spawn([self.path, "-i"], b"".join(line(command) for command in commands))

    def _spawn(self, argv: List[str], stdin: bytes) -> Result:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT,
                                  env=dict(os.environ, LC_ALL="C"), check=False)
        except subprocess.TimeoutExpired:
            raise unsafe(f"{self.path} did not answer within {TIMEOUT}s (a keychain dialog waiting?)") from None
        except OSError as err:
            raise unsafe(f"{self.path}: {err.strerror}") from None
        return Result(done.returncode, done.stdout, done.stderr)


# -- reading what security prints ---------------------------------------------------------

def printed_bytes(text: bytes) -> Optional[bytes]:
    """Invert print_buffer(): `"text"`, `0xHEX `, `0xHEX  "escaped"`, nothing, or `<NULL>`."""
    if text == b"<NULL>":
        return None
    if text.startswith(b"0x"):
        digits = text[2:].split(b" ", 1)[0]
        try:
            return bytes.fromhex(digits.decode("ascii"))
        except ValueError:
            raise unsafe("security printed a value clawgate cannot read") from None
    if len(text) >= 2 and text[:1] == b'"' and text[-1:] == b'"':
        # No escapes here: a byte that would need one sends print_buffer to the hex form.
        return text[1:-1]
    if text == b"":
        return b""
    raise unsafe("security printed a value clawgate cannot read")


def password_from(err: bytes) -> Optional[bytes]:
    """The data from `find-generic-password -g`'s stderr (the last `password: ` line)."""
    found = None
    for raw in err.split(b"\n"):
        if raw.startswith(b"password: "):
            found = printed_bytes(raw[len(b"password: "):])
    return found


def passwords_from(err: bytes) -> List[bytes]:
    """Every `password: ` line of a -i session, in order (stderr is unbuffered)."""
    return [printed_bytes(raw[len(b"password: "):]) or b""
            for raw in err.split(b"\n") if raw.startswith(b"password: ")]


def attributes(out: bytes) -> List[Dict[str, Optional[bytes]]]:
    """Items as printed by print_keychain_item_attributes(): `keychain:` opens each one."""
    items: List[Dict[str, Optional[bytes]]] = []
    for raw in out.split(b"\n"):
        if raw.startswith(b"keychain: "):
            items.append({})
        elif raw.startswith(b"class: ") and items:
            items[-1]["class"] = printed_bytes(raw[len(b"class: "):])
        elif raw.startswith(b'    "') and items:
            tag, sep, rest = raw[5:].partition(b'"')
            kind, sep2, value = rest.partition(b">=")
            if sep and sep2 and len(tag) == 4 and kind.startswith(b"<"):
                items[-1][tag.decode("latin-1")] = printed_bytes(value)
    return items


def item_pairs(out: bytes) -> List[Tuple[bytes, bytes]]:
    """(service, account) of every generic password in a dump-keychain listing."""
    pairs = []
    for item in attributes(out):
        service, account = item.get("svce"), item.get("acct")
        if item.get("class") == b"genp" and service is not None and account is not None:
            pairs.append((service, account))
    return pairs
