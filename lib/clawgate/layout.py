"""Where an installed clawgate lives, derived from the running program's own path.

A privileged program never takes its config path from the environment or its
arguments: PREFIX/libexec/clawgate/PROG reads PREFIX/etc/clawgate/clawgate.conf.
"""

import os

from .records import Record


class Layout(Record):
    __slots__ = ("prefix", "libexec", "config")
    prefix: str
    libexec: str
    config: str

    def program(self, name: str) -> str:
        return os.path.join(self.libexec, name)


def _from_prefix(prefix: str) -> Layout:
    return Layout(
        prefix=prefix,
        libexec=os.path.join(prefix, "libexec", "clawgate"),
        config=os.path.join(prefix, "etc", "clawgate", "clawgate.conf"),
    )


def of_program(script: str) -> Layout:
    """For PREFIX/libexec/clawgate/PROG."""
    libexec = os.path.dirname(os.path.realpath(script))
    return _from_prefix(os.path.dirname(os.path.dirname(libexec)))
