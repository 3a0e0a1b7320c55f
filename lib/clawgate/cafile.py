"""A CA certificate the owner names on the command line (`notify set --ca`, `route add --ca`).

The file may sit where the agent can write, so it is reached by safepath's rule (no link the agent
could change is followed), opened without blocking (a planted FIFO does not hang the owner), read
to a bound, and kept only if it is a PEM certificate the TLS library loads. The caller stores the
text: nothing reads the path again.
"""

from . import names, safepath
from .errors import usage

MAX_CA = 256 * 1024


def read(path: str, owner_uid: int, what: str) -> str:
    """The PEM text, or exit 2 in one line that starts with `what` (the option, say)."""
    import ssl

    shown = names.shown(path)
    try:
        pem = safepath.read_file(path, owner_uid, MAX_CA).decode("ascii")
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError("no BEGIN CERTIFICATE line")
        ssl.create_default_context(cadata=pem)
    except safepath.Refused as err:
        raise usage(f"{what}: {err}") from None
    except (ValueError, ssl.SSLError) as err:  # UnicodeDecodeError included
        raise usage(f"{what}: {shown}: not a PEM certificate ({err})") from None
    except OSError as err:
        raise usage(f"{what}: {shown}: {err.strerror}") from None
    return pem
