"""lib/clawgate/records.py: the core's read-only records, in plain Python (no CPython internals).

Record keeps the part of typing.NamedTuple's interface the core uses: construction by position or
keyword, refusal of missing, repeated or unknown fields, _asdict, _replace, equality, hash, repr,
and no way to change a field once built. (Adapted from test_lean.py's Record tests.)
"""

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from clawgate import config as config_mod
from clawgate.records import Record


class Slotted(Record):
    __slots__ = ("name", "uid", "home", "shell")
    name: str
    uid: int
    home: str
    shell: str

    def greeting(self) -> str:
        return f"hi {self.name}"


class Typed(NamedTuple):
    name: str
    uid: int
    home: str
    shell: str


CALLS = [
    (("alice", 1, "/", "/bin/sh"), {}),
    (("alice",), {"uid": 1, "home": "/", "shell": "/bin/sh"}),
    ((), {"name": "alice", "uid": 1, "home": "/h", "shell": "/bin/bash"}),
]
BAD_CALLS = [
    ((), {}),                                              # missing
    (("alice",), {"home": "/", "shell": "/"}),             # missing uid
    (("alice", 1, "/", "/bin/sh", "extra"), {}),           # too many
    (("alice", 1, "/", "/"), {"name": "bob"}),             # repeated
    (("alice", 1, "/", "/"), {"colour": "red"}),           # unknown
]


@pytest.mark.parametrize("args,kwargs", CALLS)
def test_record_builds_like_a_namedtuple(args, kwargs):
    record, typed = Slotted(*args, **kwargs), Typed(*args, **kwargs)
    assert record._asdict() == typed._asdict()
    assert repr(record) == repr(typed).replace("Typed(", "Slotted(")
    assert (record.name, record.uid, record.home, record.shell) == tuple(typed)
    assert record == Slotted(*typed) and hash(record) == hash(Slotted(*typed))
    assert record != Slotted(typed.name, typed.uid + 1, typed.home, typed.shell)
    assert record.greeting() == f"hi {typed.name}"


@pytest.mark.parametrize("args,kwargs", BAD_CALLS)
def test_record_refuses_what_a_namedtuple_refuses(args, kwargs):
    with pytest.raises(TypeError):
        Typed(*args, **kwargs)
    with pytest.raises(TypeError):
        Slotted(*args, **kwargs)


def test_record_replace():
    record = Slotted("alice", 1, "/", "/bin/sh")
    assert record._replace(uid=2) == Slotted("alice", 2, "/", "/bin/sh") and record.uid == 1
    assert type(record._replace(uid=2)) is Slotted
    with pytest.raises(ValueError):
        record._replace(colour="red")


def test_record_is_immutable():
    record = Slotted("alice", 1, "/", "/bin/sh")
    with pytest.raises(AttributeError):
        record.name = "mallory"
    with pytest.raises(AttributeError):
        record.colour = "red"
    with pytest.raises(AttributeError):
        del record.name
    assert not hasattr(record, "__dict__")
    assert record.name == "alice"


def test_the_cores_records_keep_their_interface():
    from clawgate import audit, cli, config, grants

    grant = grants.Grant("k", "controlled", 10.0, 20.0, "agent")
    assert grant._asdict() == {"name": "k", "tier": "controlled", "granted_at": 10.0, "expires_at": 20.0,
                               "caller": "agent"}
    assert grant._replace(expires_at=15.0).left(10.0) == 5.0
    caller = cli.Caller(5, "agent", "agent")
    assert caller.is_agent and (caller.uid, caller.name, caller.role) == (5, "agent", "agent")
    assert config.Layout("/p", "/p/libexec/clawgate", "/p/etc").program("broker") == "/p/libexec/clawgate/broker"
    assert audit.Problem(3, "why") == audit.Problem(line=3, reason="why")
    principal = config_mod.Principal("a", 1, 1, "/")
    assert principal._replace(uid=2).uid == 2


def test_the_core_imports_no_private_cpython_module():
    """What a Python upgrade breaks first: _collections, _json, annotation probes."""
    lib = Path(__file__).resolve().parent.parent / "lib"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from clawgate import config, grants, records, cli, audit, tiers\n"
            "print(' '.join(sorted(m for m in sys.modules if m in ('_collections', '_json'))))") % str(lib)
    result = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "_collections" not in loaded
    source = "".join(p.read_text() for p in (lib / "clawgate").glob("*.py"))
    for private in ("_tuplegetter", "make_encoder", "make_scanner", "__annotate__"):
        assert private not in source, private


def test_every_record_in_the_package_lists_each_annotated_field_in_its_slots():
    """A field annotated but missing from __slots__ is a TypeError at the first construction."""
    import importlib
    import pkgutil

    import clawgate
    from clawgate.records import Record

    for info in pkgutil.walk_packages(clawgate.__path__, "clawgate."):
        if info.name.endswith("installcheck"):
            continue
        importlib.import_module(info.name)
    pending, seen = list(Record.__subclasses__()), []
    while pending:
        cls = pending.pop()
        seen.append(cls)
        pending.extend(cls.__subclasses__())
        annotated = [name for name in vars(cls).get("__annotations__", {}) if not name.startswith("_")]
        assert list(cls.__slots__) == annotated, cls
    assert len(seen) >= 8


def test_no_library_module_imports_the_program_runner():
    """cli.py is the program runner; the library acts in context.py's Context (issue 14)."""
    lib = Path(__file__).resolve().parent.parent / "lib" / "clawgate"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import clawgate.access, clawgate.gate, clawgate.listing, clawgate.resolver, clawgate.importer\n"
            "import clawgate.migrate, clawgate.requests, clawgate.notify, clawgate.seed\n"
            "print('clawgate.cli' in sys.modules)") % str(lib.parent)
    result = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
