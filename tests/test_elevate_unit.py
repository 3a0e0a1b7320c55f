"""elevate's pieces on their own: argument shape, the command lookup, the root environment, the drop.

The end-to-end proofs (real sudo, real users, a real install) are in test_elevate_root.py;
these pin down each defence directly so a regression names the piece that broke.
"""

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from installtree import load_program

from clawgate import config as config_mod
from clawgate import privdrop
from clawgate.errors import UNSAFE, USAGE, ClawgateError, denied


elevate = load_program("elevate")

POLLUTED = {
    "LD_PRELOAD": "/tmp/evil.so", "LD_LIBRARY_PATH": "/tmp", "LD_AUDIT": "/tmp/a.so",
    "PYTHONPATH": "/tmp", "PYTHONSTARTUP": "/tmp/x.py", "PYTHONINSPECT": "1", "BASH_ENV": "/tmp/x.sh",
    "ENV": "/tmp/x.sh", "IFS": "/", "SHELLOPTS": "xtrace", "PS4": "$(id)", "PERL5LIB": "/tmp",
    "PERL5OPT": "-Mevil", "RUBYOPT": "-revil", "NODE_OPTIONS": "--require /tmp/x.js", "GCONV_PATH": "/tmp",
    "PATH": "/tmp:/home/openclaw/bin", "HOME": "/home/openclaw", "USER": "openclaw", "LOGNAME": "openclaw",
    "SUDO_UID": "1000", "LC_EVIL": "x", "LANGUAGE": "../../tmp", "TZ": "/tmp/zone", "TMPDIR": "/tmp/x",
    "EDITOR": "/tmp/x", "PAGER": "/tmp/x", "BASH_FUNC_id%%": "() { echo pwned; }",
}


# -- argument shape: usage errors exit 2 before anything else happens -----------------------------

@pytest.mark.parametrize("argv", [
    [], ["session"], ["123456"], ["session", "--"], ["123456", "--"], ["session", "/usr/bin/id"],
    ["session", "/usr/bin/id", "--"], ["--", "/usr/bin/id"], ["", "--", "/usr/bin/id"],
    ["session", "--", ""], ["session", "-x", "--", "/usr/bin/id"],
])
def test_malformed_arguments_are_usage_errors(argv):
    with pytest.raises(ClawgateError) as caught:
        elevate.parse(argv)
    assert caught.value.code == USAGE
    assert "\n" not in caught.value.message


def test_code_and_session_forms():
    assert elevate.parse(["123456", "--", "id", "-u"]) == elevate.Request("123456", ["id", "-u"])
    assert elevate.parse(["session", "--", "id"]) == elevate.Request(None, ["id"])
    # everything after the first `--` is the command's, a second `--` included
    assert elevate.parse(["session", "--", "echo", "--", "session"]).argv == ["echo", "--", "session"]


# -- the command lookup: the caller's PATH and cwd never choose what runs as root ----------------

def test_bare_name_is_found_on_the_fixed_path_only(tmp_path, monkeypatch):
    planted = tmp_path / "id"
    planted.write_text("#!/bin/sh\necho pwned\n")
    planted.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    found = elevate.resolve("id")
    assert found != str(planted)
    assert os.path.dirname(found) in elevate.ROOT_PATH.split(":")


def test_relative_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("./id", "bin/id", "../usr/bin/id"):
        with pytest.raises(ClawgateError) as caught:
            elevate.resolve(name)
        assert caught.value.code == USAGE


def test_unknown_bare_name_is_a_usage_error():
    with pytest.raises(ClawgateError) as caught:
        elevate.resolve("no-such-command-clawgate")
    assert caught.value.code == USAGE


def test_absolute_path_is_kept_untouched_for_after_the_gate():
    # not even stat'ed before the gate: its existence must not leak to a caller without a code
    assert elevate.resolve("/root/.no/such/thing") == "/root/.no/such/thing"


# -- the root environment: built from an allowlist, never filtered ------------------------------

def test_polluted_environment_does_not_reach_root():
    env = elevate.root_environment({**POLLUTED, "TERM": "xterm-256color", "LANG": "C.UTF-8"})
    assert env == {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": pwd.getpwuid(0).pw_dir, "USER": "root",
        "LOGNAME": "root", "TERM": "xterm-256color", "LANG": "C.UTF-8",
    }


@pytest.mark.parametrize("value", ["/tmp/evil", "../../tmp/x", "en_US.UTF-8/../../x", "a b", "x\ny", "",
                                   "$(id)", "x" * 65, "é"])
def test_terminal_and_locale_values_that_could_name_a_path_are_dropped(value):
    env = elevate.root_environment({"TERM": value, "LANG": value, "LC_ALL": value, "LC_CTYPE": value})
    assert not {"TERM", "LANG", "LC_ALL", "LC_CTYPE"} & set(env)


def test_plain_locale_names_are_kept():
    kept = {"LANG": "de_DE@euro", "LC_ALL": "en_US.UTF-8", "LC_MESSAGES": "C", "TERM": "screen.xterm-256color"}
    assert kept.items() <= elevate.root_environment(kept).items()


# -- who may run it: only root, only through sudo ----------------------------------------------

def test_refuses_to_run_unless_root(tree):
    if os.geteuid() == 0:
        pytest.skip("as root, the not-root refusal cannot be reached")
    result = tree.as_agent("elevate", "session", "--", "/usr/bin/id")
    assert result.returncode == 1
    assert b"must run as root" in result.stderr


@pytest.mark.root
def test_root_without_sudo_has_no_caller_and_is_refused(tree):
    result = tree.run("elevate", "session", "--", "/usr/bin/id")  # no SUDO_UID: not sudo's doing
    assert result.returncode == 1
    assert result.stderr.count(b"\n") == 1 and b"through sudo" in result.stderr


# -- privdrop: the owner's side runs as the owner, for good -------------------------------------

NOBODY = pwd.getpwnam("nobody")
NOBODY_PRINCIPAL = config_mod.Principal(NOBODY.pw_name, NOBODY.pw_uid, NOBODY.pw_gid, "/")


@pytest.mark.root
def test_child_runs_as_the_principal_and_cannot_regain_root():
    def probe():
        try:
            os.setuid(0)
            regained = True
        except PermissionError:
            regained = False
        return {"res": list(os.getresuid()), "gid": list(os.getresgid()), "groups": os.getgroups(),
                "regained": regained, "env": dict(os.environ), "cwd": os.getcwd()}

    saved = os.getgroups()
    os.setgroups([0, 4])  # as sudo leaves them: root's groups must not survive the drop
    try:
        seen = privdrop.call_as(NOBODY_PRINCIPAL, probe)
    finally:
        os.setgroups(saved)
    assert seen["res"] == [NOBODY.pw_uid] * 3
    assert seen["gid"] == [NOBODY.pw_gid] * 3
    assert not {0, 4} & set(seen["groups"])
    assert seen["regained"] is False
    assert seen["env"]["USER"] == "nobody" and "SUDO_UID" not in seen["env"]
    assert seen["cwd"] == "/"
    assert os.geteuid() == 0  # the parent stays root


@pytest.mark.root
def test_files_written_by_the_child_belong_to_the_principal():
    place = Path(tempfile.mkdtemp(dir="/var/lib"))  # pytest's tmp_path is closed to nobody
    try:
        os.chown(place, NOBODY.pw_uid, NOBODY.pw_gid)
        target = place / "made"
        privdrop.call_as(NOBODY_PRINCIPAL, lambda: target.write_text("x") and None)
        assert (target.stat().st_uid, target.stat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    finally:
        shutil.rmtree(place)


@pytest.mark.root
def test_child_refusal_comes_back_with_its_code():
    def refuse():
        raise denied("nope")

    with pytest.raises(ClawgateError) as caught:
        privdrop.call_as(NOBODY_PRINCIPAL, refuse)
    assert (caught.value.code, caught.value.message) == (1, "nope")


@pytest.mark.root
@pytest.mark.parametrize("how", ["exit", "signal", "crash"])
def test_a_child_that_dies_without_an_answer_is_a_refusal(how):
    def die():
        if how == "exit":
            os._exit(0)
        if how == "signal":
            os.kill(os.getpid(), 9)
        raise RuntimeError("secret-value-must-not-show")

    with pytest.raises(ClawgateError) as caught:
        privdrop.call_as(NOBODY_PRINCIPAL, die)
    assert caught.value.code == UNSAFE
    assert "secret-value" not in caught.value.message


@pytest.mark.root
def test_drop_refuses_when_root_can_be_regained(monkeypatch):
    # simulate a drop that silently failed (e.g. a platform where setuid kept the saved uid)
    monkeypatch.setattr(privdrop, "_can_become_root", lambda: True)

    with pytest.raises(ClawgateError) as caught:
        privdrop.call_as(NOBODY_PRINCIPAL, lambda: "ran")
    assert caught.value.code == UNSAFE
