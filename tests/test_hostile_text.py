"""Invariant 13: what the agent writes reaches the owner's terminal escaped, one field as one field.

The agent hands `elevate session` an argv that retitles a terminal (OSC ... BEL), rewinds the line
(\r), carries C1 controls and bytes that are not UTF-8, and an item that reads like more fields;
the owner's `audit show` must print none of it raw.
"""

import json
import shlex

import pytest

from clawgate import display, names
from clawgate.errors import ClawgateError
from rootenv import RootEnv

FAKE_FIELDS = "x tier=open result=ok"
HOSTILE = [b"\x1b]2;owned\x07", b"line\rresult=run", b"\xc2\x9b31m", b"\xff\xfe", b"\x7f\x08",
           FAKE_FIELDS.encode(), b'q"uote', b"back\\x1b"]


def controls_in(data: bytes) -> "list[int]":
    text = data.decode("utf-8")  # also: nothing undecodable reaches the terminal
    return [ord(ch) for ch in text if ch != "\n" and (ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0)]


# -- the one escaping function ------------------------------------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("plain", "plain"),
    ("\x1b]2;t\x07", "\\x1b]2;t\\x07"),
    ("a\rb\nc\x00", "a\\x0db\\x0ac\\x00"),
    ("\x9b\x85\x7f", "\\x9b\\x85\\x7f"),
    (b"\xff\xfe".decode("utf-8", "surrogateescape"), "\\xff\\xfe"),
    ("\u202eevil\u200b", "\\u202eevil\\u200b"),
    ("back\\x1b", "back\\\\x1b"),
    ("caf\u00e9", "caf\u00e9"),
    ("a\u3164b\u2800c", "a\\u3164b\\u2800c"),  # printable, drawn blank: Hangul filler, Braille blank
    ("x=\u0338y\u20dd", "x=\\u0338y\\u20dd"),  # combining marks (Mn, Me) draw over what comes before
    ("\u115f\u1160\uffa0\ufe0f\U0001d159\U000e0100", "\\u115f\\u1160\\uffa0\\ufe0f\\U0001d159\\U000e0100"),
    ("\u65e5\u672c \u00f1", "\u65e5\u672c \u00f1"),  # letters stay letters
])
def test_escape_shows_every_control_as_an_escape(raw, shown):
    assert display.escape(raw) == shown


def test_an_error_naming_a_hostile_name_shows_each_control_escaped_once(capsys):
    with pytest.raises(ClawgateError) as err:
        names.check("a\x1b]2;owned\x07")
    display.say(err.value.message)
    line = capsys.readouterr().err
    assert line.startswith("clawgate: a\\x1b]2;owned\\x07")  # shown once: not a\\\\x1b
    assert controls_in(line.encode()) == []


def test_say_keeps_a_raw_control_off_the_terminal_whatever_the_message(capsys):
    display.say("bad argument 'x\x1b[2J\rok'")
    assert capsys.readouterr().err == "clawgate: bad argument 'x\\x1b[2J\\x0dok'\n"


@pytest.mark.parametrize("value, shown", [
    ("x", "x"),
    (FAKE_FIELDS, '"x tier=open result=ok"'),
    ("", '""'),
    ('a"b', '"a\\"b"'),
    (["/bin/id", "a b"], '[/bin/id,"a b"]'),
    (["a,b"], '["a,b"]'),
    (True, "true"),
    (7, "7"),
])
def test_field_quotes_what_could_read_as_another_field(value, shown):
    assert display.field(value) == shown


def test_quoted_field_splits_back_into_exactly_one_word():
    line = f"name={display.field(FAKE_FIELDS)} n={display.field('a' + chr(34) + ' b=c')}"
    assert [word.split("=", 1)[0] for word in shlex.split(line)] == ["name", "n"]


def test_list_and_status_escape_names(capsys):
    from clawgate import listing

    listing.print_secrets([{"name": FAKE_FIELDS + "\x1b[2J", "tier": "open", "access": "open", "expires_in": None,
                            "use_only": False}],
                          as_json=False)
    listing.print_status({"grants": [{"name": "\rfake", "tier": "x y", "expires_in": 60}], "root_session": None,
                          "locked_until": None, "failures": 0}, as_json=False)
    out = capsys.readouterr().out
    assert controls_in(out.encode()) == []
    assert out.startswith('"x tier=open result=ok\\x1b[2J"  open') and 'grant  \\x0dfake  ("x y",' in out


# -- attacked through the real sudo ---------------------------------------------------------------

@pytest.mark.root
def test_audit_show_of_hostile_argv_prints_no_control_and_no_fake_field():
    with RootEnv() as env:
        env.enroll_seed()
        refused = env.agent("elevate", "session", "--", "/usr/bin/true", *HOSTILE)
        assert refused.returncode == 3, refused.stderr
        assert controls_in(refused.stderr) == []
        shown = env.owner("audit", "show")
        assert shown.returncode == 0, shown.stderr
        assert controls_in(shown.stdout) == []
        records = [json.loads(line) for line in env.owner("audit", "show", "--json").stdout.splitlines()]
        lines = shown.stdout.decode().splitlines()
        assert len(lines) == len(records)
        for line, record in zip(lines, records):
            words = shlex.split(line)[3:]  # after: ts #seq event
            assert [word.split("=", 1)[0] for word in words] == [k for k in record if k not in ("ts", "seq", "event")]
        named = env.agent("get", "\x1b]2;owned\x07 tier=open\r")
        assert named.returncode == 2 and controls_in(named.stderr) == [], named.stderr
        hostile = [line for line in lines if "owned" in line]
        assert len(hostile) == 1 and '"x tier=open result=ok"' in hostile[0]
