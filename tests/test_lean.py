"""lib/clawgate/lean.py against the stdlib pieces it stands in for on the hot path.

Record must behave as typing.NamedTuple, loads as json.loads, dumps as json.dumps, and
read_ini as configparser, or refuse: a config that configparser would read one way must
never be read another way by clawgate.
"""

import configparser
import json
import math
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from clawgate import config as config_mod
from clawgate.errors import UNSAFE, ClawgateError
from clawgate.lean import Record, dumps, loads, read_ini


# -- Record --------------------------------------------------------------------------------------

class Lean(Record):
    name: str
    uid: int
    home: str = "/"
    shell: str = "/bin/sh"

    def greeting(self) -> str:
        return f"hi {self.name}"


class Typed(NamedTuple):
    name: str
    uid: int
    home: str = "/"
    shell: str = "/bin/sh"


CALLS = [
    (("alice", 1), {}),
    (("alice",), {"uid": 1}),
    ((), {"name": "alice", "uid": 1, "shell": "/bin/bash"}),
    (("alice", 1, "/home/a", "/bin/zsh"), {}),
]
BAD_CALLS = [
    ((), {}),                                   # missing
    (("alice",), {}),                           # missing uid
    (("alice", 1, "/", "/bin/sh", "extra"), {}),  # too many
    (("alice", 1), {"name": "bob"}),            # repeated
    (("alice", 1), {"colour": "red"}),          # unknown
]


@pytest.mark.parametrize("args,kwargs", CALLS)
def test_record_builds_like_a_namedtuple(args, kwargs):
    lean, typed = Lean(*args, **kwargs), Typed(*args, **kwargs)
    assert tuple(lean) == tuple(typed) and lean == typed
    assert lean._asdict() == typed._asdict()
    assert lean._fields == typed._fields == ("name", "uid", "home", "shell")
    assert lean._field_defaults == typed._field_defaults
    assert repr(lean) == repr(typed).replace("Typed(", "Lean(")
    assert hash(lean) == hash(typed)
    assert (lean.name, lean.uid, lean.home, lean.shell) == tuple(typed)
    name, uid, home, shell = lean
    assert lean[1] == uid and lean[-1] == shell and lean[:2] == (name, uid)
    assert lean.greeting() == f"hi {name}"


@pytest.mark.parametrize("args,kwargs", BAD_CALLS)
def test_record_refuses_what_a_namedtuple_refuses(args, kwargs):
    with pytest.raises(TypeError):
        Typed(*args, **kwargs)
    with pytest.raises(TypeError):
        Lean(*args, **kwargs)


def test_record_replace_make_and_pickle():
    lean = Lean("alice", 1)
    assert lean._replace(uid=2) == Lean("alice", 2) and lean == Lean("alice", 1)
    assert type(lean._replace(uid=2)) is Lean
    with pytest.raises(ValueError):
        lean._replace(colour="red")
    assert Lean._make(["bob", 3, "/h", "/s"]) == ("bob", 3, "/h", "/s")
    with pytest.raises(TypeError):
        Lean._make(["bob"])
    assert pickle.loads(pickle.dumps(lean)) == lean


def test_record_is_immutable():
    lean = Lean("alice", 1)
    with pytest.raises(AttributeError):
        lean.name = "mallory"
    with pytest.raises(AttributeError):
        lean.colour = "red"  # no __dict__, as a namedtuple
    assert not hasattr(lean, "__dict__")


def test_record_refuses_a_field_without_default_after_one_with():
    with pytest.raises(TypeError):
        class Bad(Record):  # noqa: F841
            a: int = 1
            b: int


def test_the_cores_records_keep_their_namedtuple_interface():
    from clawgate import audit, cli, grants, layout

    grant = grants.Grant("k", "controlled", 10.0, 20.0, "agent")
    assert grant._asdict() == {"name": "k", "tier": "controlled", "granted_at": 10.0, "expires_at": 20.0,
                               "caller": "agent"}
    assert grant._replace(expires_at=15.0).left(10.0) == 5.0
    caller = cli.Caller(5, "agent", "agent")
    assert caller.is_agent and caller == (5, "agent", "agent")
    assert layout.Layout("/p", "/p/libexec/clawgate", "/p/etc").program("broker") == "/p/libexec/clawgate/broker"
    assert audit.Problem(3, "why") == (3, "why")
    principal = config_mod.Principal("a", 1, 1, "/")
    assert principal._replace(uid=2).uid == 2


# -- loads ---------------------------------------------------------------------------------------

JSON_TEXTS = [
    '{"name": "k", "tier": "controlled", "granted_at": 1700000000.25, "expires_at": 1700003600.25, "caller": "a"}',
    '{"protocolVersion":1,"provider":"clawgate","ids":["a","b/c"]}',
    '  {"a": [1, 2.5, -3e10, true, false, null, "x\\u00e9\\n\\"q\\""]}\n\t ',
    '"just a string"', "42", "-0", "1e400", "NaN", "-Infinity", "[]", "{}", "[[[[]]]]",
    '{"a": 1, "a": 2}', '"\\ud83d\\ude00"', '"\\ud800"', "1" * 5000,
    # malformed: every one must be refused by both
    "", " ", "{", '{"a": 1,}', "[1,]", "{'a': 1}", '{"a" 1}', "01", "1.", ".5", "+1", "tru", "nul",
    '{"a": 1} x', '{"a": 1}{"b": 2}', '"\x01"', '"unterminated', "\ufeff{}", "[1, 2", '{"a":}', "\x00",
    "[" * 100 + "]" * 100,
]


def _same(a, b) -> bool:
    return repr(a) == repr(b) and type(a) is type(b) or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _outcome(fn, text):
    try:
        return "ok", fn(text)
    except RecursionError:
        return "recursion", None
    except ValueError:  # json.JSONDecodeError and the int-digits limit included
        return "refused", None


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_loads_agrees_with_json_on_text_and_bytes(text):
    for data in (text, text.encode("utf-8")):
        expected, got = _outcome(json.loads, data), _outcome(loads, data)
        if isinstance(data, bytes) and data.startswith(b"\xef\xbb\xbf"):
            assert got[0] == "refused"  # json would decode a UTF-8 BOM; clawgate never writes one
            continue
        assert got[0] == expected[0], (data, expected, got)
        assert _same(got[1], expected[1])


def test_loads_refuses_bytes_that_are_not_utf8_and_deep_nesting_like_json():
    with pytest.raises(ValueError):
        loads(b'{"a": "\xff"}')
    with pytest.raises(RecursionError):
        json.loads("[" * 100000)
    with pytest.raises(RecursionError):
        loads("[" * 100000)
    with pytest.raises(TypeError):
        loads(42)


def test_loads_agrees_with_json_on_random_mutations_of_a_grant():
    rng = random.Random(7)
    base = JSON_TEXTS[0]
    alphabet = '{}[]":,.-+eE0123456789 \\untrufalsx\n\t'
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(chars))
            action = rng.randrange(3)
            if action == 0:
                del chars[at]
            elif action == 1:
                chars.insert(at, rng.choice(alphabet))
            else:
                chars[at] = rng.choice(alphabet)
        text = "".join(chars)
        expected, got = _outcome(json.loads, text), _outcome(loads, text)
        assert got[0] == expected[0] and _same(got[1], expected[1]), text


FRESH = r"""
import sys
sys.path.insert(0, sys.argv[1])
from clawgate.lean import dumps, loads
assert loads('{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "\u00e9"]}
assert dumps({"a": ["\u00e9", None]}) == '{"a": ["\\u00e9", null]}'
assert "json" not in sys.modules, "valid JSON must not need the json module"
for text in sys.argv[2:]:
    try:
        loads(text)
    except ValueError:
        continue
    raise SystemExit(f"accepted {text!r}")
"""


def test_in_a_fresh_interpreter_malformed_json_is_a_valueerror_and_valid_json_needs_no_json_module():
    # The C scanner reports errors through json.decoder, which it expects to be imported
    # already: without json loaded (as in the broker), a naive use fails with SystemError.
    lib = str(Path(__file__).resolve().parent.parent / "lib")
    malformed = ['{"a":1', '{"a": [1, }', '[1,', '{"a" 1}', '{"a": 1} x', "", "\ufeff{}", '"\x01"', "nul"]
    result = subprocess.run([sys.executable, "-I", "-S", "-c", FRESH, lib, *malformed], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


# -- dumps ---------------------------------------------------------------------------------------

JSON_VALUES = [
    {"protocolVersion": 1, "values": {"a": "x", "b/c": "é\n\"\\\x00\u2028😀"}, "errors": {"d": {"message": "m"}}},
    [{"name": "k", "tier": "open", "access": "open", "expires_in": None}],
    {"grants": [], "root_session": 90, "locked_until": None, "failures": 0},
    "plain", "\ud800", 0, -1, 10 ** 30, 1.5, 1e300, float("inf"), float("nan"), True, False, None, [], {},
    (1, 2), {1: "int key", 2.5: "float key", True: "bool key", None: "none key"}, [[[]]],
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
def test_dumps_is_json_dumps(value):
    assert dumps(value) == json.dumps(value)


@pytest.mark.parametrize("value", [{"a": b"bytes"}, {"a": object()}, {(1, 2): "tuple key"}, {1j}])
def test_dumps_refuses_what_json_refuses(value):
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        dumps(value)


def test_dumps_refuses_a_cycle():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        dumps(loop)


# -- read_ini ------------------------------------------------------------------------------------

INSTALLED = """# clawgate configuration, written by install.sh (root 0644). Rerun install.sh to change it.
# Edits to [ttl] and [keychain] are kept across runs; a cap may be shortened, never lengthened.
[clawgate]
owner = alice
agent_user = openclaw
state_dir = /var/lib/clawgate
store = file

[ttl]
controlled = 4h
restricted = 15m
root = 30m

[service]
manager = systemd
path = /etc/systemd/system/openclaw-gateway.service
"""

INI_TEXTS = [
    INSTALLED,
    INSTALLED.replace("\n", "\r\n"),
    "[a]\nk=v\n", "[a]\nk: v\n", "[a]\nK = V\n", "[a]\nk = v = w\n", "[a]\nk = v: w\n", "[a]\nk: v = w\n",
    "[a]\nk =\n", "[a]\nk = \n", "[a]\nk = a # not a comment\n", "[a]\n; comment\n# comment\nk = v\n",
    "[a]\n   # indented comment\nk = v\n", "\n\n[a]\n\n\nk = v\n\n", "[a]\n[b]\nk = v\n", "[a b]\nk = v\n",
    "[ a ]\nk = v\n", "[a]\nk = %(x)s\n", "[a]\nk = v\n[a]\nj = w\n", "[a]\nk = 1\nk = 2\n", "[a]\nk = 1\nK = 2\n",
    "k = v\n", "[a]\njunk\n", "[a]\n= v\n", "[a]\n : v\n", "[a]\nk = v\n  continued\n", "[a]\nk = v\n\n  continued\n",
    "  [a]\nk = v\n", "[a]\n  k = v\n", "[DEFAULT]\nk = v\n[a]\nj = w\n", "[a] trailing\nk = v\n", "[a]]\nk = v\n",
    "[]\nk = v\n", "[a\nk = v\n", "[a]\nk\t=\tv\t\n", "[a]\nk = v\x0c\n", "[a]\nk = é\n", "\ufeff[a]\nk = v\n",
    "[a]\n[=x\n", "[a]\nk = v\r\nj = w\r\n", "[a]\nk = v\rj = w\r", "", "# only a comment\n",
]


def _configparser(text: str):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _normalised(text: str) -> str:
    # config.load opens the file in universal-newline mode, as configparser's read_file would.
    return text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.parametrize("text", INI_TEXTS, ids=range(len(INI_TEXTS)))
def test_read_ini_reads_as_configparser_does_or_refuses(text):
    text = _normalised(text)
    try:
        ours = read_ini(text)
    except ValueError:
        return  # refusing is always allowed: stricter than configparser, never different
    assert ours == _configparser(text)


def test_read_ini_refuses_what_configparser_refuses():
    for text in INI_TEXTS:
        text = _normalised(text)
        try:
            _configparser(text)
        except configparser.Error:
            with pytest.raises(ValueError):
                read_ini(text)


def test_read_ini_refuses_what_a_person_might_misread():
    for text in ["[a]\nk = v\n  continued\n", "[DEFAULT]\nk = v\n", "[a] trailing\n", "[a]\n  k = v\n",
                 "[a]]\nk = v\n"]:
        with pytest.raises(ValueError):
            read_ini(text)


def test_read_ini_accepts_what_install_sh_writes():
    assert read_ini(INSTALLED) == _configparser(INSTALLED)
    assert read_ini(INSTALLED)["clawgate"]["owner"] == "alice"


def test_read_ini_agrees_with_configparser_on_random_files():
    rng = random.Random(11)
    fragments = ["[clawgate]", "[ttl]", "[DEFAULT]", "[x y]", "owner = alice", "Owner: bob", "root = 30m",
                 "k = v = w", "k:", "= v", "# c", "; c", "  indented = 1", "\t[ttl]", "", "   ", "junk",
                 "[a]]", "[b] t", "key=value", "KEY = dup", "owner = dup", "x: y: z", "é = ü"]
    for _ in range(4000):
        text = "\n".join(rng.choice(fragments) for _ in range(rng.randint(0, 7))) + "\n"
        try:
            expected = _configparser(text)
        except configparser.Error:
            expected = None
        try:
            ours = read_ini(text)
        except ValueError:
            continue  # refused: allowed whatever configparser thinks
        assert expected is not None and ours == expected, text


def test_a_config_read_ini_refuses_is_exit_6(tmp_path):
    path = tmp_path / "clawgate.conf"
    path.write_text("[clawgate]\nowner = root\n  continued\n")
    path.chmod(0o644)
    with pytest.raises(ClawgateError) as refused:
        config_mod.load(str(path))
    assert refused.value.code == UNSAFE
    assert "not a valid config (line 3: indented" in refused.value.message
