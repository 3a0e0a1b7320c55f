"""doctor: every invariant checked on the live system, one line each, exit 1 naming what is wrong.

The parsing and the mode arithmetic are tested without root; the rest against a real install,
each test loosening one thing and checking doctor names it (then restoring it)."""

import os
import stat
import subprocess

import pytest

from clawgate import sudolist
from installtree import REPO, load_program
from rootenv import RootEnv


doctor = load_program("doctor")

WRAPPED = """Matching Defaults entries for oc on vm:
    env_reset, mail_badpass,
    secure_path=/usr/local/sbin\\:/usr/local/bin\\:/usr/sbin\\:/usr/bin\\:/sbin\\:/bin, use_pty

User oc may run the following commands on vm:
    (alice) NOPASSWD: /p/libexec/clawgate/broker,
        /p/libexec/clawgate/approve,
        /p/libexec/clawgate/revoke
    (root) NOPASSWD: /p/libexec/clawgate/elevate
"""


def test_parse_sudo_list_follows_wrapped_lines():
    assert sudolist.parse_sudo_list(WRAPPED) == {
        ("alice", "/p/libexec/clawgate/broker"), ("alice", "/p/libexec/clawgate/approve"),
        ("alice", "/p/libexec/clawgate/revoke"), ("root", "/p/libexec/clawgate/elevate")}


def test_parse_sudo_list_sees_a_blanket_rule():
    text = WRAPPED + "    (ALL : ALL) ALL\n    (alice) SETENV: NOPASSWD: /bin/sh\n"
    rules = sudolist.parse_sudo_list(text)
    assert ("ALL", "ALL") in rules and ("alice", "/bin/sh") in rules


def test_parse_sudo_list_of_a_user_with_no_rights():
    assert sudolist.parse_sudo_list("User oc is not allowed to run sudo on vm.\n") == set()


class FakeStat:
    def __init__(self, uid, gid, mode):
        self.st_uid, self.st_gid, self.st_mode = uid, gid, mode


def test_computed_access_follows_owner_group_other_and_search_bits(monkeypatch):
    tree = {"/": FakeStat(0, 0, 0o755), "/s": FakeStat(10, 10, 0o755), "/s/f": FakeStat(10, 20, 0o640)}
    monkeypatch.setattr(doctor.os, "stat", lambda path: tree[path])
    assert doctor.computed_access("/s/f", 10, {10}, 4)          # owner reads
    assert doctor.computed_access("/s/f", 30, {20}, 4)          # group reads
    assert not doctor.computed_access("/s/f", 30, {20}, 2)      # group does not write
    assert not doctor.computed_access("/s/f", 30, {40}, 4)      # others nothing
    tree["/s"] = FakeStat(10, 10, 0o700)                        # a closed directory hides its files
    tree["/s/f"] = FakeStat(10, 20, 0o666)
    assert not doctor.computed_access("/s/f", 30, {40}, 2)
    assert doctor.computed_access("/s/f", 10, {10}, 2)


# -- against a real install ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env():
    with RootEnv(service=True) as env:
        env.enroll_seed()
        env.set_secret("db-password", b"value")
        yield env


@pytest.mark.root
def test_doctor_passes_as_root_and_as_owner(env):
    as_root = env.doctor()
    assert as_root.returncode == 0, as_root.stdout.decode()
    lines = as_root.stdout.decode().splitlines()
    assert not [line for line in lines if line.startswith(("FAIL", "skip"))]
    for check in ("config", "code", "sudoers", "agent groups", "agent sudo rights", "agent reach", "seed", "service"):
        assert any(line.startswith(f"ok    {check}:") for line in lines), check
    assert lines[-1].startswith("clawgate: doctor: ") and lines[-1].endswith(" passed")  # nothing skipped
    as_owner = env.doctor(as_owner=True)
    assert as_owner.returncode == 0, as_owner.stdout.decode()
    assert b"skip  sudoers" in as_owner.stdout


@pytest.mark.root
def test_doctor_as_owner_says_what_it_skipped_and_why_not_all_passed(env):
    out = env.doctor(as_owner=True).stdout.decode()
    lines = out.splitlines()
    skipped = [line for line in lines if line.startswith("skip")]
    passed = [line for line in lines if line.startswith("ok")]
    assert skipped and "all checks passed" not in out
    door = str(env.door)  # named by its path: no default PATH finds this test's prefix
    assert lines[-1] == (f"clawgate: doctor: {len(passed)} passed, {len(skipped)} skipped"
                         f" ({len(skipped)} need root: run sudo {door} doctor)"), out
    as_root = env.doctor().stdout.decode().splitlines()[-1]
    readme = (REPO / "README.md").read_text()
    shown = lines[-1].replace(door, "clawgate")  # as an install in /usr/local says it
    assert f"\n    {as_root}\n    {shown}\n" in readme  # what the README says doctor ends with


def test_doctor_fix_for_each_mode_and_owner_problem_is_one_command():
    assert doctor.mode_fixes(["/s has mode 0750, not 0700", "/p is owned by bob, not root",
                              "/usr/local: writable by group or others (mode 0775)", "/q: owned by bob"]) == \
        "chmod 0700 /s; chown root /p; chmod go-w /usr/local; chown root /q"
    assert doctor.mode_fixes(["/p is owned by bob, not root", "/d differs from what install.sh writes"]) is None


def test_doctor_summary_counts_failures_passes_and_skips_by_reason(capsys):
    report = doctor.Report("rerun: sudo ./install.sh --owner alice")
    report.ok("config", "fine")
    report.check("sudoers", ["/etc/sudoers.d/x differs from what install.sh writes"], "")
    report.skip("agent password", "no passwd -S here", "no passwd -S on this system")
    report.skip("sudo logging", "sudo -l -U needs root")
    out = capsys.readouterr().out
    assert "FAIL  sudoers: /etc/sudoers.d/x differs from what install.sh writes" \
        " (fix: rerun: sudo ./install.sh --owner alice)" in out
    assert report.summary() == ("clawgate: doctor: 1 failed, 1 passed, 2 skipped"
                                " (1 no passwd -S on this system; 1 need root: run sudo clawgate doctor)")


@pytest.mark.root
@pytest.mark.parametrize("target, mode, check", [
    ("state", 0o750, "state"),
    ("config", 0o664, "config"),
    ("code", 0o775, "code"),
    ("sudoers", 0o444, "sudoers"),
    ("grants", 0o733, "agent reach"),
])
def test_doctor_names_a_loosened_mode(env, target, mode, check):
    path = {"state": env.state, "config": env.config_path, "code": env.libexec / "broker",
            "sudoers": env.sudoers, "grants": env.state / "grants"}[target]
    old = stat.S_IMODE(os.lstat(path).st_mode)
    if target == "grants":
        env.state.chmod(0o711)  # the agent can now reach into the state dir
    try:
        path.chmod(mode)
        result = env.doctor()
    finally:
        path.chmod(old)
        env.state.chmod(0o700)
    out = result.stdout.decode()
    assert result.returncode == 1, out
    failing = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any(line.startswith(f"FAIL  {check}:") and str(path) in line for line in failing), out
    assert all("(fix: " in line for line in failing), out
    fix = {"state": f"chmod 0700 {path}", "config": f"chmod 0644 {path}", "code": f"chmod go-w {path}",
           "sudoers": f"chmod 0440 {path}", "grants": "chmod go-rwx"}[target]
    assert any(fix in line for line in failing), out
    assert env.doctor().returncode == 0


@pytest.mark.root
def test_doctor_catches_an_extra_sudo_rule(env):
    extra = env.sudoers.parent / f"zz-test-{env.agent_name}"
    extra.write_text(f"{env.agent_name} ALL=(ALL) NOPASSWD: ALL\n")
    extra.chmod(0o440)
    try:
        result = env.doctor()
    finally:
        extra.unlink()
    assert result.returncode == 1
    assert b"FAIL  agent sudo rights: also allowed: (ALL) ALL" in result.stdout


@pytest.mark.root
def test_doctor_catches_an_edited_sudoers_file(env):
    original = env.sudoers.read_bytes()
    try:
        env.sudoers.write_bytes(original + f"{env.agent_name} ALL=({env.owner_name}) NOPASSWD: /bin/cat\n".encode())
        result = env.doctor()
    finally:
        env.sudoers.write_bytes(original)
        env.sudoers.chmod(0o440)
    assert result.returncode == 1
    assert b"differs from what install.sh writes" in result.stdout


@pytest.mark.root
def test_doctor_catches_the_agent_in_an_admin_group(env):
    subprocess.run(["usermod", "-a", "-G", "sudo", env.agent_name], check=True)
    try:
        result = env.doctor()
    finally:
        subprocess.run(["gpasswd", "-d", env.agent_name, "sudo"], capture_output=True, check=True)
    assert result.returncode == 1
    assert b"FAIL  agent groups" in result.stdout


@pytest.mark.root
def test_doctor_names_a_planted_file_and_an_edited_front_door(env):
    planted = env.libexec / "lib" / "clawgate" / "planted.py"
    planted.write_text("")
    owner_uid = int(subprocess.run(["id", "-u", env.owner_name], capture_output=True).stdout)
    os.chown(planted, owner_uid, -1)
    original = env.door.read_bytes()
    env.door.write_bytes(original.replace(b"SUDO=/usr/bin/sudo", b"SUDO=/tmp/sudo"))
    try:
        result = env.doctor()
    finally:
        planted.unlink()
        env.door.write_bytes(original)
    out = result.stdout.decode()
    assert result.returncode == 1
    assert f"FAIL  code: {planted} is owned by {env.owner_name}, not root" in out
    assert f"FAIL  front door: {env.door} differs from what install.sh writes" in out
    assert env.doctor().returncode == 0


@pytest.mark.root
def test_doctor_fails_without_a_seed_and_without_the_service():
    with RootEnv(service=True) as fresh:
        unit = fresh.service_dir / "openclaw-gateway.service"
        unit.unlink()
        result = fresh.doctor()
        out = result.stdout.decode()
        assert result.returncode == 1
        assert f"FAIL  seed: no TOTP seed enrolled (fix: as {fresh.owner_name}: {fresh.door} enroll)" in out
        assert f"FAIL  service: {unit}: No such file or directory" in out
        assert fresh.install().returncode == 0  # install.sh puts the unit back
        fresh.enroll_seed()
        assert fresh.doctor().returncode == 0


@pytest.mark.root
def test_doctor_as_the_agent_is_refused(env):
    assert env.agent("doctor").returncode == 1


@pytest.mark.root
def test_doctor_catches_another_account_on_the_agents_uid(env):
    """macOS upgrades have handed out uids in the hidden-user range: whoever shares the uid is the agent."""
    uid = subprocess.run(["id", "-u", env.agent_name], capture_output=True, check=True).stdout.decode().strip()
    other = "cgdup" + os.urandom(4).hex()
    subprocess.run(["useradd", "--non-unique", "--uid", uid, "--no-create-home", "--no-user-group", "--gid",
                    "nogroup", "--shell", "/usr/sbin/nologin", other], check=True)
    try:
        result = env.doctor()
    finally:
        subprocess.run(["userdel", other], capture_output=True)
    assert result.returncode == 1
    assert f"uid {uid} of {env.agent_name} also belongs to {other}".encode() in result.stdout


@pytest.mark.root
@pytest.mark.parametrize("plant", [["/usr/bin/mkfifo"], ["/bin/ln", "-s", "/dev/zero"]])
def test_doctor_as_root_survives_a_fifo_or_a_link_the_agent_plants_as_its_openclaw_config(env, plant):
    """Read as the agent: a FIFO would block the read forever, a link to /dev/zero grow it to gigabytes."""
    config = env.agent_home / ".openclaw" / "openclaw.json"
    saved = config.read_bytes() if config.is_file() and not config.is_symlink() else None
    env.run_as(env.agent_name, "/bin/mkdir", "-p", str(config.parent))
    env.run_as(env.agent_name, "/bin/rm", "-f", str(config))
    try:
        assert env.run_as(env.agent_name, *plant, str(config)).returncode == 0
        result = env.doctor()  # run() gives up after 120 s: a hang fails here
        assert f"skip  openclaw config: {config}: not a regular file".encode() in result.stdout, result.stdout
    finally:
        env.run_as(env.agent_name, "/bin/rm", "-f", str(config))
        if saved is not None:
            env.run_as(env.agent_name, "/usr/bin/tee", str(config), input=saved)


@pytest.mark.root
def test_a_check_run_as_a_user_that_hangs_is_killed_at_its_timeout():
    import pwd
    import time

    from clawgate import config as config_mod, privdrop
    from clawgate.errors import ClawgateError

    nobody = pwd.getpwnam("nobody")
    who = config_mod.Principal(nobody.pw_name, nobody.pw_uid, nobody.pw_gid, "/")
    with pytest.raises(ClawgateError) as err:
        privdrop.call_as(who, lambda: time.sleep(60), timeout=1)
    assert err.value.code == 6 and "did not finish in 1s" in err.value.message
    assert privdrop.call_as(who, os.getuid, timeout=5) == nobody.pw_uid


@pytest.mark.root
def test_doctor_names_an_agents_config_nested_too_deep_for_what_it_is(env):
    """The agent's openclaw.json nested 200k deep: a RecursionError in the parse became a FAIL
    whose fix (rerun install.sh) fixed nothing. Doctor names the true cause, and nothing else fails."""
    config = env.agent_home / ".openclaw" / "openclaw.json"
    deep = '{"secrets": ' + "[" * 200_000 + "]" * 200_000 + "}"
    planted = env.run_as(env.agent_name, "/bin/sh", "-c", 'mkdir -p -m 700 "${1%/*}" && cat >"$1"', "sh", str(config),
                         input=deep.encode())
    assert planted.returncode == 0, planted.stderr
    try:
        result = env.doctor()
        lines = result.stdout.decode().splitlines()
        line = next(line for line in lines if line.startswith(("ok    openclaw", "FAIL  openclaw", "skip  openclaw config")))
        assert line.startswith("skip  openclaw config") and "nested deeper" in line, lines
        assert not [line for line in lines if line.startswith("FAIL")], lines
    finally:
        env.run_as(env.agent_name, "/bin/rm", "-rf", str(config.parent))
