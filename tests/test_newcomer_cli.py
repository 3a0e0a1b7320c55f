"""What a newcomer meets at the command line (issue 13): Ctrl-D at a prompt, empty values,
overwrite and removal asking first, malformed codes, the hint each caller gets, help for every
verb from one table, --version, typos, enrolment output, `get` on a terminal, revoke's answers
and compound durations. Prompts and terminal cases through pexpect; the front door of the staged
tree (the owner's path) here, the agent's path through the real install in the root test."""

import os
import re
import subprocess
import time

import pytest

from coretools import context, one_line_error, status, wrong_code_at
from clawgate import __version__, access, durations, grants, helptext, requests, seed, totp
from clawgate.errors import ClawgateError
from installtree import REPO
from ttytools import enter_twice, finish, spawn

pexpect = pytest.importorskip("pexpect")

VERBS = ["get", "list", "status", "resolve", "openclaw-config", "approve", "revoke", "request", "pending",
         "deny", "notify", "elevate", "run", "enroll", "secrets", "audit", "unlock", "doctor", "help"]
INTERNAL = ("totp-validate", "broker", "libexec", "argparse", "positional arguments")


def door(tree, *args, input=b"", as_agent=False):
    return subprocess.run([str(tree.prefix / "bin" / "clawgate"), *args], input=input, capture_output=True,
                          env=tree.env(as_agent))


# -- 2. Ctrl-D at a prompt is "no input", exit 2 -----------------------------------------------------
@pytest.mark.parametrize("at", ["value", "confirmation"])
def test_ctrl_d_at_the_hidden_value_prompt_is_no_input_exit_2(tree, at):
    child = spawn(tree, "secrets", "set", "typed")
    child.expect_exact("value for typed: ")
    child.waitnoecho(timeout=10)
    if at == "confirmation":
        child.sendline("first")
        child.expect_exact("again, to confirm: ")
        child.waitnoecho(timeout=10)
    child.sendeof()
    child.expect_exact("no input")
    assert finish(child) == 2
    assert "internal error" not in child.logfile_read.getvalue()
    assert not (tree.state / "secrets" / "typed").exists()


def test_ctrl_d_at_the_code_prompt_is_no_input_and_spends_nothing(tree):
    tree.set_secret("k", b"v")
    child = spawn(tree, "approve", "k", as_agent=True)
    child.expect_exact("code for k: ")
    child.sendeof()
    child.expect_exact("clawgate: code for k: no input")
    assert finish(child) == 2
    assert status(tree)["failures"] == 0


def test_ctrl_d_at_enroll_imports_hidden_prompt_is_no_input(bare_tree):
    child = spawn(bare_tree, "enroll", "--import")
    child.expect_exact("base32 seed or otpauth:// URI: ")
    child.sendeof()
    child.expect_exact("no input")
    assert finish(child) == 2
    assert "internal error" not in child.logfile_read.getvalue()
    assert not (bare_tree.state / "totp-seed").exists()


# -- 3. an empty value is refused unless asked for ---------------------------------------------------
@pytest.mark.parametrize("stdin", [b"", b"\n"], ids=["dev-null", "bare-newline"])
def test_an_empty_value_is_refused_and_nothing_stored(tree, stdin):
    err = one_line_error(tree.run("secrets", "set", "new/y", input=stdin), 2)
    assert "the value is empty; nothing was stored" in err and "--allow-empty" in err
    one_line_error(tree.as_agent("broker", "get", "new/y"), 4)


def test_allow_empty_stores_an_empty_value(tree):
    assert tree.run("secrets", "set", "e", "--allow-empty", "--tier", "open", input=b"\n").returncode == 0
    got = tree.as_agent("broker", "get", "e")
    assert got.returncode == 0 and got.stdout == b""


# -- 4. replacing or removing asks on a terminal; scripts say --force ---------------------------------
@pytest.mark.parametrize("answer, kept", [("n", True), ("", True), ("y", False)])
def test_set_over_an_existing_secret_asks_first(tree, answer, kept):
    tree.set_secret("k", b"old", tier="open")
    child = spawn(tree, "secrets", "set", "k")
    child.expect_exact("k already exists. Overwrite it? [y/N] ")
    child.sendline(answer)
    if kept:
        child.expect_exact("clawgate: not confirmed; nothing was changed")
        assert finish(child) == 1  # the owner's no is a refusal, as pass answers it
    else:
        enter_twice(child, "k", "new")
        child.expect_exact("clawgate: k: stored (open)")
        assert finish(child) == 0
    assert tree.as_agent("broker", "get", "k").stdout == (b"old" if kept else b"new")


@pytest.mark.parametrize("answer, kept", [("n", True), ("y", False)])
def test_rm_asks_first_on_a_terminal(tree, answer, kept):
    tree.set_secret("k", b"v", tier="open")
    child = spawn(tree, "secrets", "rm", "k")
    child.expect_exact("Remove k? [y/N] ")
    child.sendline(answer)
    child.expect_exact("clawgate: not confirmed; nothing was changed" if kept else "clawgate: k: removed")
    assert finish(child) == (1 if kept else 0)
    assert tree.as_agent("broker", "get", "k").returncode == (0 if kept else 4)


def test_without_a_terminal_replacing_or_removing_needs_force(tree):
    tree.set_secret("k", b"old", tier="open")
    err = one_line_error(tree.run("secrets", "set", "k", input=b"new"), 2)
    assert "k: already exists; nothing was changed" in err and "--force" in err
    err = one_line_error(tree.run("secrets", "rm", "k"), 2)
    assert "nothing was changed" in err and "--force" in err
    assert tree.as_agent("broker", "get", "k").stdout == b"old"
    assert tree.run("secrets", "set", "k", "--force", input=b"new").returncode == 0
    assert tree.as_agent("broker", "get", "k").stdout == b"new"
    assert tree.run("secrets", "rm", "k", "--force").returncode == 0
    one_line_error(tree.as_agent("broker", "get", "k"), 4)


# -- 5. a code of the wrong shape is exit 2 and costs no guess ----------------------------------------
@pytest.mark.parametrize("typed, shape", [
    ("123456", ("123456", "")), ("48291647", ("482916", "47")), ("482916 47", ("482916", "47")),
    ("482916-47", ("482916", "47")), ("12345", None), ("abcdef", None), ("1234567", None),
    ("123456789", None), ("482916--47", None), ("482916 4", None), ("", None), ("\uff11" * 6, None),
    ("123456 ", None), (" 123456", None),
])
def test_the_shape_of_a_code_six_digits_optionally_then_two_match_digits(typed, shape):
    assert totp.split_code(typed, 6) == shape


def test_the_root_and_request_hints_fit_the_caller(tree):
    owner, agent = context(tree, "owner"), context(tree, "agent")
    root_for_owner = access.approval_required(owner, "@root", "root").message
    assert "clawgate approve @root (it asks for the code)" in root_for_owner and "elevate session" in root_for_owner
    assert "CODE" not in root_for_owner
    assert "clawgate elevate CODE -- CMD" in access.approval_required(agent, "@root", "root").message
    assert "ask again" in requests.no_such(agent, "r1").message
    assert "ask again" not in requests.no_such(owner, "r1").message
    tree.set_secret("k", b"v")
    assert "your authenticator" in one_line_error(tree.owner_approve("k", "12345"), 2)


def test_the_shape_follows_the_enrolled_digits():
    assert totp.split_code("12345678", 8) == ("12345678", "")
    assert totp.split_code("12345678 90", 8) == ("12345678", "90")
    assert totp.split_code("123456", 8) is None


@pytest.mark.parametrize("typed", ["12345", "abcdef", "1234567", "123456789", "12 34 56"])
def test_a_malformed_code_is_exit_2_and_not_counted_as_a_wrong_guess(tree, typed):
    tree.set_secret("k", b"v")
    for _ in range(10):  # twice the free guesses: none is spent
        err = one_line_error(tree.as_agent("approve", "k", typed), 2)
        assert "not a code" in err and "not counted" in err and "the owner's authenticator" in err
    assert status(tree)["failures"] == 0 and status(tree)["locked_until"] is None
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0  # the next real code still works


def test_a_well_shaped_wrong_code_is_still_counted(tree):
    tree.set_secret("k", b"v")
    one_line_error(tree.as_agent("approve", "k", wrong_code_at(tree.seed, time.time())), 1)
    one_line_error(tree.as_agent("approve", "k", "00000000"), 1)  # code + match digits: a guess
    assert status(tree)["failures"] == 2


def test_a_malformed_code_at_the_prompt_is_exit_2(tree):
    tree.set_secret("k", b"v")
    one_line_error(tree.owner_approve("k", "12345"), 2)
    one_line_error(tree.run("totp-validate", input=b"abcdef\n", as_agent=True), 2)
    assert status(tree)["failures"] == 0


# -- 6. each caller is told what works for them --------------------------------------------------------
def test_the_approval_hint_fits_the_caller(tree):
    tree.set_secret("k", b"v")
    agent = one_line_error(tree.as_agent("broker", "get", "k"), 3)
    assert agent.endswith("ask the owner for a code, then: clawgate approve k CODE\n")
    owner = one_line_error(tree.run("broker", "get", "k"), 3)
    assert "clawgate approve k (it asks for the code)" in owner and "CODE" not in owner
    # and what the owner is told works: the code at the prompt (here on stdin), not in argv
    assert tree.owner_approve("k", tree.code()).returncode == 0
    assert tree.run("broker", "get", "k").stdout == b"v"


# -- 7. help for every verb, one text, the user's words ------------------------------------------------
@pytest.mark.parametrize("verb", VERBS)
def test_verb_help_and_help_verb_print_the_same_text(tree, verb):
    flag = door(tree, verb, "--help")
    short = door(tree, verb, "-h")
    topic = door(tree, "help", verb)
    assert flag.returncode == short.returncode == topic.returncode == 0, flag.stderr
    assert flag.stdout == short.stdout == topic.stdout and flag.stderr == topic.stderr == b""
    text = flag.stdout.decode()
    assert text.startswith(f"usage: clawgate {verb}")
    assert not any(word in text for word in INTERNAL), text


def test_help_is_served_to_the_agent_too(tree):
    assert door(tree, "get", "--help", as_agent=True).stdout == door(tree, "help", "get").stdout


@pytest.mark.parametrize("sub", ["set", "rm", "tier", "list", "import", "import-keychain", "migrate"])
def test_secrets_subcommand_help_is_the_same_three_ways(tree, sub):
    program = tree.run("secrets", sub, "--help")
    through_door = door(tree, "secrets", sub, "--help")
    topic = door(tree, "help", "secrets", sub)
    assert program.returncode == through_door.returncode == topic.returncode == 0
    assert program.stdout == through_door.stdout == topic.stdout
    assert program.stdout.startswith(f"usage: clawgate secrets {sub}".encode())


def test_secrets_set_help_names_the_tiers_the_default_and_the_flags(tree):
    text = door(tree, "secrets", "set", "--help").stdout.decode()
    for word in ("open", "controlled", "restricted", "--raw", "--allow-empty", "--force", "--tier"):
        assert word in text
    assert "a secret with no tier is restricted" in text


def test_program_help_comes_from_the_same_table(tree):
    for prog in ("approve", "enroll"):
        assert tree.run(prog, "--help").stdout.decode() == helptext.HELP[prog] + "\n"


@pytest.mark.parametrize("args, topic", [(["audit", "show", "--help"], "audit"), (["audit", "verify", "-h"], "audit"),
                                         (["notify", "set", "--help"], "notify"), (["notify", "test", "--help"], "notify"),
                                         (["secrets", "set", "k", "--help"], "secrets set"), (["get", "k", "--help"], "get"),
                                         (["approve", "k", "--ttl", "1h", "-h"], "approve")])
def test_help_anywhere_among_a_verbs_arguments_is_that_verbs_help(tree, args, topic):
    shown = door(tree, *args)
    assert shown.returncode == 0 and shown.stdout.decode() == helptext.HELP[topic] + "\n", shown.stderr


def test_help_after_double_dash_belongs_to_the_command(tree):
    ran = door(tree, "run", "--", "/usr/bin/printf", "%s", "--help")
    assert ran.returncode == 0 and ran.stdout == b"--help"


def test_help_for_a_mistyped_verb_is_the_typo_hint(tree):
    assert "did you mean: get?" in one_line_error(door(tree, "gte", "--help"), 2)


def test_a_wrong_call_is_told_its_own_usage(tree):
    assert one_line_error(tree.as_agent("broker", "get"), 2) == "clawgate: usage: clawgate get NAME\n"
    assert one_line_error(tree.as_agent("broker", "get", "a", "b"), 2) == "clawgate: usage: clawgate get NAME\n"
    assert one_line_error(tree.as_agent("broker", "resolve", "x"), 2) == "clawgate: usage: clawgate resolve\n"
    assert "takes no arguments" in one_line_error(door(tree, "--version", "extra"), 2)


def test_the_verb_list_names_every_verb_including_requests(tree):
    text = door(tree, "--help").stdout.decode()
    for verb in VERBS:
        assert re.search(rf"(^|\s){re.escape(verb)}(\s|$)", text), verb
    bare = door(tree)
    assert bare.returncode == 2 and bare.stderr.decode().strip() == text.strip()


# -- 8. --version, typos, bad flags --------------------------------------------------------------------
def test_version_is_the_packages_version_everywhere(tree):
    assert door(tree, "--version").stdout.decode() == f"clawgate {__version__}\n"
    installer = subprocess.run(["bash", str(REPO / "install.sh"), "--version"], capture_output=True)
    assert installer.returncode == 0 and installer.stdout.decode() == f"clawgate {__version__}\n"


@pytest.mark.parametrize("typed, near", [("gte", "get"), ("lsit", "list"), ("aprove", "approve"),
                                         ("revok", "revoke"), ("secret", "secrets")])
def test_a_typo_says_what_was_typed_and_the_nearest_verb(tree, typed, near):
    err = one_line_error(door(tree, typed), 2)
    assert f"unknown verb '{typed}'; did you mean: {near}?" in err


def test_an_unknown_verb_far_from_any_is_just_unknown(tree):
    err = one_line_error(door(tree, "zzzzzz\x1b[31m"), 2)
    assert "unknown verb 'zzzzzz\\x1b[31m'" in err and "\x1b" not in err and "did you mean" not in err


@pytest.mark.parametrize("args, named", [(["list", "--jsn"], "unknown option --jsn"),
                                         (["status", "extra"], "unexpected argument extra")])
def test_a_bad_flag_is_named(tree, args, named):
    assert named in one_line_error(tree.as_agent("broker", *args), 2)


# -- 12. enrolment ---------------------------------------------------------------------------------------
def test_enroll_shows_the_secret_in_groups_of_four_matching_the_uri(bare_tree):
    child = spawn(bare_tree, "enroll")
    child.expect(r"secret: ((?:[A-Z2-7]{4} )+[A-Z2-7]{1,4})\r?\n")
    typed = child.match.group(1)
    child.expect(r"(otpauth://totp/\S+)\r?\n")
    params = totp.parse_uri(child.match.group(1))
    assert totp.from_base32(typed) == params.secret
    assert all(len(group) == 4 for group in typed.split())
    child.expect_exact("to confirm: ")
    child.sendline(totp.code_at(params, time.time()))
    assert finish(child) == 0


def test_enroll_into_a_pipe_has_no_terminal_escapes(bare_tree):
    """stdin a terminal (the owner types the code), stdout a pipe: the QR code comes as plain text."""
    out = bare_tree.root / "enroll.out"
    child = pexpect.spawn("/bin/sh", ["-c", '"$0" > "$1"', str(bare_tree.libexec / "enroll"), str(out)],
                          env=bare_tree.env(False), timeout=20, encoding="utf-8")
    child.expect_exact("to confirm: ")
    params = totp.parse_uri(re.search(r"otpauth://totp/\S+", out.read_text()).group(0))
    child.sendline(totp.code_at(params, time.time()))
    assert finish(child) == 0
    text = out.read_text()
    assert "\x1b" not in text and "secret: " in text


def _refuses_without_a_terminal(target, *args):
    before = seed.load(target.config())
    result = target.run("enroll", *args, input=b"123456\n")
    err = one_line_error(result, 2)
    assert "--import" in err and "terminal" in err
    assert b"otpauth" not in result.stdout and b"secret" not in result.stdout  # no seed shown, none wasted
    assert seed.load(target.config()) == before


def test_enroll_rotate_without_a_terminal_refuses_before_making_a_seed(tree):
    _refuses_without_a_terminal(tree, "--rotate")


def test_enroll_without_a_terminal_refuses_before_making_a_seed(bare_tree):
    _refuses_without_a_terminal(bare_tree)


# -- 13. get on a terminal, empty list, revoke, durations --------------------------------------------------
def test_get_on_a_terminal_ends_the_line_and_a_pipe_gets_the_exact_bytes(tree):
    tree.set_secret("pub", b"ghp_abc123", tier="open")
    child = spawn(tree, "broker", "get", "pub", as_agent=True)
    child.expect_exact("ghp_abc123\r\n")
    assert finish(child) == 0
    assert tree.as_agent("broker", "get", "pub").stdout == b"ghp_abc123"


def test_an_empty_list_says_how_to_add_the_first_secret(tree):
    result = tree.as_agent("broker", "list")
    assert result.returncode == 0 and result.stdout == b""
    assert "clawgate secrets set NAME" in result.stderr.decode()
    assert tree.as_agent("broker", "list", "--json").stdout == b"[]\n"


def test_revoking_a_name_that_is_no_secret_is_exit_4_and_changes_nothing(tree):
    tree.set_secret("k", b"v")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    assert "nosuch: no such secret" in one_line_error(tree.as_agent("revoke", "k", "nosuch"), 4)
    assert tree.as_agent("broker", "get", "k").stdout == b"v"  # checked before any change


def test_revoke_says_whether_there_was_a_grant_and_whether_it_had_expired(tree):
    tree.set_secret("k", b"v")
    assert tree.as_agent("revoke", "k").stdout == b"clawgate: k: no grant to revoke\n"
    now = time.time()
    grants.write(tree.config(), grants.Grant("k", "restricted", now - 3600, now - 2700, "agent"))
    assert tree.as_agent("revoke", "k").stdout == b"clawgate: k: the grant had already expired; removed it\n"
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    assert tree.as_agent("revoke", "k").stdout == b"clawgate: k: revoked\n"


@pytest.mark.parametrize("text, seconds", [("1h30m", 5400), ("2m30s", 150), ("1h0m5s", 3605), ("90s", 90),
                                           ("4h", 14400)])
def test_compound_durations(text, seconds):
    assert durations.parse(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "1h30", "30m1h", "1h1h", "1.5h", "h", "-5m", "0m", "1d", "1h 30m"])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(ClawgateError) as caught:
        durations.parse(text)
    assert caught.value.code == 2


def test_approve_accepts_a_compound_ttl_and_still_caps_it(tree):
    tree.set_secret("c", b"v", tier="controlled")
    out = tree.as_agent("approve", "c", tree.code(), "--ttl", "1h30m")
    assert out.returncode == 0 and b"granted for 1h30m" in out.stdout
    out = tree.as_agent("approve", "c", tree.code(), "--ttl", "4h30m")
    assert b"cut to the controlled cap of 4h" in out.stdout


# -- through the real install: the agent's front door -------------------------------------------------------
@pytest.mark.root
def test_the_agents_front_door_gives_help_version_and_typo_hints_without_sudo():
    from rootenv import RootEnv

    with RootEnv() as env:
        for args in (["get", "--help"], ["help", "get"]):
            result = env.agent(*args)
            assert result.returncode == 0 and result.stdout.decode() == helptext.HELP["get"] + "\n"
        assert env.agent("unlock", "--help").stdout.decode() == helptext.HELP["unlock"] + "\n"
        assert env.owner("--version").stdout.decode() == f"clawgate {__version__}\n"
        assert "did you mean: get?" in one_line_error(env.agent("gte"), 2)
        env.enroll_seed()
        env.set_secret("k", b"v")
        assert "then: clawgate approve k CODE" in one_line_error(env.agent("get", "k"), 3)
        assert "clawgate approve k (it asks for the code)" in one_line_error(env.owner("get", "k"), 3)
        assert "not counted" in one_line_error(env.agent("approve", "k", "12345"), 2)
        assert "nosuch: no such secret" in one_line_error(env.agent("revoke", "nosuch"), 4)
        assert env.agent("approve", "k", env.code(), "--ttl", "10m30s").stdout.endswith(b"\n")
        assert env.agent("get", "k").stdout == b"v"
    assert os.geteuid() == 0
