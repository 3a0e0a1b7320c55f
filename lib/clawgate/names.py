"""Secret names: validated before use, never joined raw into a path."""

from .errors import usage

MAX_LEN = 128
ROOT = "@root"
_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_REST = _FIRST | frozenset("._-")


def is_valid(name: str) -> bool:
    """^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$, at most 128 characters.

    Checked by hand rather than with `re`: `$` would accept a trailing newline,
    and the hot path should not pay for importing re.
    """
    if not isinstance(name, str) or not 0 < len(name) <= MAX_LEN:
        return False
    for part in name.split("/"):
        if not part or part[0] not in _FIRST:
            return False
        if not _REST.issuperset(part):
            return False
    return True


def check(name: str) -> str:
    if not is_valid(name):
        raise usage(f"{shown(name)}: invalid secret name")
    return name


def check_grantable(name: str) -> str:
    """A name a grant may be for: a secret name or @root."""
    return name if name == ROOT else check(name)


def shown(name: str) -> str:
    """A name as it may appear in a one-line message: printable, bounded."""
    from .display import escape  # only a message needs it: a `get` that succeeds shows no name

    text = escape(str(name)[:MAX_LEN])
    return text + ("..." if len(str(name)) > MAX_LEN else "") if text else "''"


def to_filename(name: str) -> str:
    """Map a valid name to one flat file name; '%' never occurs in a name, so this is injective."""
    return name.replace("/", "%")


def from_filename(filename: str) -> str:
    return filename.replace("%", "/")
