"""What a person sees on a terminal (pexpect): enroll's URI, QR code and confirmation, the hidden
prompt of `secrets set`, and `approve`/`totp-validate` asking for the code on a TTY."""

import os
import re
import shutil
import time

import pytest

from coretools import wrong_code_at
from clawgate import seed, totp
from ttytools import enter_twice, finish, spawn

CONFIRM = "enter the current code from your authenticator to confirm: "
QRENCODE = next((p for p in (shutil.which("qrencode", path=d) for d in ("/usr/bin", "/usr/local/bin",
                                                                           "/opt/homebrew/bin")) if p), None)


def _enroll_until_prompt(tree):
    child = spawn(tree, "enroll")
    child.expect("Add this to your authenticator app")
    child.expect(r"(otpauth://totp/\S+)\r?\n")
    uri = child.match.group(1)
    child.expect_exact(CONFIRM)
    return child, uri


def test_enroll_shows_uri_and_qr_rejects_a_wrong_code_and_saves_on_the_right_one(bare_tree):
    child, uri = _enroll_until_prompt(bare_tree)
    shown = child.logfile_read.getvalue()
    params = totp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/clawgate%3A") and "issuer=clawgate" in uri
    assert len(params.secret) == 20 and (params.algorithm, params.digits, params.period) == ("SHA1", 6, 30)
    if QRENCODE:
        assert re.search("[\u2580\u2584\u2588]{8}", shown), "no QR code drawn"
    else:
        assert "install qrencode to see a QR code" in shown
    assert not (bare_tree.state / "totp-seed").exists()  # nothing saved before the code is confirmed

    child.sendline(wrong_code_at(params, time.time()))
    child.expect_exact("that code does not match; try again")
    child.expect_exact(CONFIRM)  # asked again
    assert not (bare_tree.state / "totp-seed").exists()
    child.sendline(totp.code_at(params, time.time()))
    child.expect_exact("clawgate: seed enrolled")
    assert finish(child) == 0
    assert seed.load(bare_tree.config()) == params


def test_enroll_gives_up_after_three_wrong_codes_and_saves_nothing(bare_tree):
    child, uri = _enroll_until_prompt(bare_tree)
    params = totp.parse_uri(uri)
    for attempt in range(3):
        if attempt:
            child.expect_exact(CONFIRM)
        child.sendline(wrong_code_at(params, time.time()))
    child.expect_exact("clawgate: enrolment not confirmed; nothing was changed")
    assert finish(child) == 1
    assert not (bare_tree.state / "totp-seed").exists()


def test_enroll_rotate_replaces_the_seed_and_revokes_every_grant(tree):
    tree.set_secret("k", b"v")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0
    old = tree.seed
    child = spawn(tree, "enroll", "--rotate")
    child.expect(r"(otpauth://totp/\S+)\r?\n")
    params = totp.parse_uri(child.match.group(1))
    child.expect_exact(CONFIRM)
    child.sendline(totp.code_at(params, time.time()))
    child.expect_exact("clawgate: seed rotated; 1 grants revoked")
    assert finish(child) == 0
    assert params.secret != old.secret and seed.load(tree.config()) == params
    assert tree.as_agent("broker", "get", "k").returncode == 3


@pytest.mark.parametrize("value", ["hunter2-" + os.urandom(6).hex(), "pässwörd 密码 " + os.urandom(4).hex()])
def test_secrets_set_prompts_twice_without_echo(tree, value):
    child = spawn(tree, "secrets", "set", "typed", "--tier", "open")
    enter_twice(child, "typed", value)
    child.expect_exact("clawgate: typed: stored (open)")
    assert finish(child) == 0
    assert value not in child.logfile_read.getvalue()  # never shown on the terminal
    assert tree.as_agent("broker", "get", "typed").stdout == value.encode()


def test_secrets_set_refuses_two_different_entries(tree):
    child = spawn(tree, "secrets", "set", "typed")
    enter_twice(child, "typed", "first-entry", "second-entry")
    child.expect_exact("clawgate: typed: the two entries differ; nothing was stored")
    assert finish(child) == 2
    shown = child.logfile_read.getvalue()
    assert "first-entry" not in shown and "second-entry" not in shown
    assert not (tree.state / "secrets" / "typed").exists()


@pytest.mark.parametrize("as_agent", [True, False], ids=["agent", "owner"])
def test_approve_without_a_code_on_a_tty_asks_for_it(tree, as_agent):
    tree.set_secret("k", b"v")
    child = spawn(tree, "approve", "k", as_agent=as_agent)
    child.expect_exact("code for k: ")
    child.sendline(tree.code())
    child.expect(r"clawgate: k: granted for 15m \(until \d\d:\d\d:\d\d UTC\)")
    assert finish(child) == 0
    assert tree.as_agent("broker", "get", "k").stdout == b"v"


def test_approve_prompt_with_a_wrong_code_is_denied(tree):
    tree.set_secret("k", b"v")
    child = spawn(tree, "approve", "k", as_agent=True)
    child.expect_exact("code for k: ")
    child.sendline(wrong_code_at(tree.seed, time.time()))
    child.expect_exact("clawgate: code denied")
    assert finish(child) == 1


def test_totp_validate_asks_for_the_code_on_a_tty(tree):
    child = spawn(tree, "totp-validate", as_agent=True)
    child.expect_exact("code from your authenticator: ")
    child.sendline(tree.code())
    child.expect_exact("clawgate: code accepted")
    assert finish(child) == 0
