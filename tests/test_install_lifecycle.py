"""install.sh before and after: dry runs, refusals, migration, uninstall, and the macOS plan."""

import os
import plistlib
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from installtree import REPO
from rootenv import INSTALL, SUDOERS_DIR, RootEnv, make_user, run, user_exists

root = pytest.mark.root


def system_snapshot(env: RootEnv):
    """What an install of env could add: its users and groups, sudoers files, every file under its root.

    Only env's own names are compared: other test runs on the machine add and remove users too."""
    files = {}
    for top, dirs, names in os.walk(env.root):
        for name in dirs + names:
            path = os.path.join(top, name)
            st = os.lstat(path)
            files[path] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    ours = (env.agent_name, env.owner_name)
    return {
        "passwd": [line for line in Path("/etc/passwd").read_text().splitlines() if line.split(":")[0] in ours],
        "group": [line for line in Path("/etc/group").read_text().splitlines()
                  if line.split(":")[0] in ours or set(line.split(":")[-1].split(",")) & set(ours)],
        "sudoers.d": sorted(name for name in os.listdir("/etc/sudoers.d") if "clawgate" in name and env.agent_name in name),
        "files": files,
    }


@root
def test_uninstall_purge_leaves_no_trace():
    env = RootEnv(service=True, install=False)
    try:
        before = system_snapshot(env)
        assert env.install().returncode == 0
        env.enroll_seed()
        env.set_secret("k", b"v")
        assert user_exists(env.agent_name) and env.sudoers.exists()
        result = env.uninstall(purge=True)
        assert result.returncode == 0, result.stderr
        assert system_snapshot(env) == before
        assert not user_exists(env.agent_name)
    finally:
        env.close()


@root
def test_uninstall_keeps_state_and_user_until_purge():
    with RootEnv() as env:
        env.enroll_seed()
        kept = env.uninstall(purge=False)
        assert kept.returncode == 0, kept.stderr
        assert b"kept:" in kept.stdout and b"install.manifest listing them" in kept.stdout
        assert not env.sudoers.exists() and not env.libexec.exists() and not env.door.exists()
        # no empty directory of the install's is left behind, only the one holding the manifest
        assert sorted(p.name for p in env.prefix.iterdir()) == ["etc"]
        assert [p.name for p in (env.prefix / "etc" / "clawgate").iterdir()] == ["install.manifest"]
        assert (env.state / "totp-seed").exists() and user_exists(env.agent_name)
        purged = env.uninstall(purge=True)
        assert purged.returncode == 0, purged.stderr
        assert not env.state.exists() and not user_exists(env.agent_name) and not env.prefix.exists()
        again = env.uninstall(purge=True)
        assert again.returncode == 0 and b"nothing to do" in again.stdout


@root
def test_purge_needs_confirmation_without_a_terminal():
    with RootEnv() as env:
        result = run(["bash", str(INSTALL), "--uninstall", "--purge", "--prefix", str(env.prefix)])
        assert result.returncode == 2
        assert env.sudoers.exists() and env.state.exists()


@root
def test_dry_run_changes_nothing():
    env = RootEnv(install=False, service=True)
    try:
        before = system_snapshot(env)
        result = env.install("--dry-run")
        assert result.returncode == 0, result.stderr
        out = result.stdout.decode()
        assert f"would: create the system user {env.agent_name}" in out
        assert f"would: install {env.sudoers}" in out
        assert re.search(r"dry run: \d+ changes would be made; nothing was changed", out)
        assert system_snapshot(env) == before
        assert not user_exists(env.agent_name) and not env.sudoers.exists()
    finally:
        env.close()


@root
def test_migrate_from_moves_links_and_uninstall_moves_back():
    env = RootEnv(install=False)
    try:
        home = env.root / "owner-home"
        old = home / ".openclaw"
        (old / "workspace").mkdir(parents=True)
        (old / "credentials").mkdir()
        (old / "credentials" / "telegram").write_text("token")
        (old / "openclaw.json").write_text("{}")
        (old / "openclaw.json").chmod(0o644)  # whatever umask an earlier in-process test left
        subprocess.run(["chown", "-R", f"{env.owner_name}:{env.owner_name}", str(home)], check=True)
        result = env.install("--migrate-from", str(old))
        assert result.returncode == 0, result.stderr
        moved = env.agent_home / ".openclaw"
        assert old.is_symlink() and os.readlink(old) == str(moved)
        agent_uid = int(run(["id", "-u", env.agent_name]).stdout)
        assert (os.lstat(moved).st_uid, stat.S_IMODE(os.lstat(moved).st_mode)) == (agent_uid, 0o711)
        assert stat.S_IMODE(os.lstat(moved / "workspace").st_mode) == 0o755
        assert stat.S_IMODE(os.lstat(moved / "credentials").st_mode) == 0o700
        assert stat.S_IMODE(os.lstat(moved / "credentials" / "telegram").st_mode) == 0o600
        assert b"secrets import --shred" in result.stdout
        again = env.install("--migrate-from", str(old))
        assert b"nothing to do" in again.stdout, again.stdout
        # The agent reads its own files; the plaintext credentials stay the owner's, for `secrets import`.
        assert env.run_as(env.agent_name, "/bin/cat", str(moved / "openclaw.json")).stdout == b"{}"
        assert env.run_as(env.agent_name, "/bin/cat", str(moved / "credentials" / "telegram")).returncode != 0
        assert env.run_as(env.owner_name, "/bin/cat", str(old / "credentials" / "telegram")).stdout == b"token"
        assert env.run_as(env.owner_name, "/bin/cat", str(old / "openclaw.json")).returncode == 0

        assert env.uninstall(purge=True).returncode == 0
        assert old.is_dir() and not old.is_symlink()
        assert (old / "credentials" / "telegram").read_text() == "token"
        owner_uid = int(run(["id", "-u", env.owner_name]).stdout)
        assert os.lstat(old / "credentials" / "telegram").st_uid == owner_uid
    finally:
        env.close()


# -- refusals: nothing changes --------------------------------------------------------------------

@root
@pytest.mark.parametrize("where", ["world-writable", "owner-owned", "under /tmp"])
def test_refuses_a_prefix_the_agent_could_write(where):
    env = RootEnv(install=False)
    try:
        if where == "under /tmp":
            env.prefix = Path("/tmp") / f"clawgate-refused-{env.agent_name}"
        else:
            loose = env.root / "loose"
            loose.mkdir()
            if where == "world-writable":
                loose.chmod(0o1777)
            else:
                subprocess.run(["chown", env.owner_name, str(loose)], check=True)
            env.prefix = loose / "prefix"
        before = system_snapshot(env)
        result = env.install()
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"--prefix: the agent could change it" in result.stderr
        assert system_snapshot(env) == before
        assert not env.prefix.exists() and not user_exists(env.agent_name) and not env.sudoers.exists()
    finally:
        env.close()


@root
def test_refuses_an_interpreter_the_agent_could_write():
    env = RootEnv(install=False)
    try:
        loose = env.root / "py"
        loose.mkdir()
        loose.chmod(0o777)
        python = loose / "python3"
        subprocess.run(["cp", os.path.realpath("/usr/bin/python3"), str(python)], check=True)
        result = env.install("--python", str(python))
        assert result.returncode == 6
        assert b"interpreter" in result.stderr and b"writable by group or others" in result.stderr
        assert not user_exists(env.agent_name) and not env.prefix.exists()
    finally:
        env.close()


@root
@pytest.mark.parametrize("args, message", [
    (["--owner", "root"], b"--owner must be a person"),
    (["--owner", "no-such-user-x"], b"no such user"),
    (["--agent-user", "bad name"], b"not a plain user name"),
    (["--owner", "x;ALL"], b"not a plain user name"),
    (["--agent-user", "root"], b"has uid 0"),
    (["--prefix", "relative/path"], b"must be an absolute path"),
    (["--prefix", "/opt/a b"], b"must be an absolute path"),
    (["--prefix", "/opt/x,ALL"], b"must be an absolute path"),
    (["--state-dir", "/opt/../tmp/x"], b"must be an absolute path"),
    (["--target-os", "darwin"], b"only for --dry-run"),
    (["--target-os", "windows", "--dry-run"], b"darwin or linux"),
    (["--purge"], b"--purge goes with --uninstall"),
    (["--store", "s3"], b"file, keychain or openbao"),
    (["--gateway-command", "no-such-gateway-program"], b"not found"),
    (["--frobnicate"], b"unknown option"),
    (["--state-dir", "--yes"], b"--state-dir needs a value (got the option --yes)"),
])
def test_bad_arguments_change_nothing(args, message):
    env = RootEnv(install=False, service=True)
    try:
        result = env.install(*args)
        assert result.returncode in (2, 6), result.stderr
        assert message in result.stderr and result.stderr.count(b"\n") == 1, result.stderr  # one line, no usage
        assert not env.prefix.exists() and not env.sudoers.exists()
    finally:
        env.close()


@root
def test_owner_defaults_to_sudo_user_and_is_required():
    env = RootEnv(install=False)
    try:
        argv = [a for a in env.install_argv("--dry-run") if a not in ("--owner", env.owner_name)]
        assert run(argv).returncode == 2
        assert run(argv, env={"SUDO_USER": "root"}).returncode == 2
        result = run(argv, env={"SUDO_USER": env.owner_name})
        assert result.returncode == 0, result.stderr
        assert f"owner = {env.owner_name}".encode() in result.stdout
    finally:
        env.close()


@root
def test_readme_first_command_installs(tmp_path):
    """The README's first command, as the person it is written for, planned with --dry-run."""
    first = next(line for line in (REPO / "README.md").read_text().splitlines() if "install.sh" in line)
    # Only the installer's part of the line, --dry-run right after install.sh: whatever the README
    # chains to it (`&& clawgate enroll`), this test must never install for real.
    command = next(part for part in re.split(r"&&|\|\||[;|#]", first) if "install.sh" in part).strip()
    command = command.replace("install.sh", "install.sh --dry-run", 1)
    env = RootEnv(install=False)
    try:
        result = run(["bash", "-c", f"cd {REPO} && {command}"], env={"USER": env.owner_name})
        assert result.returncode == 0, result.stderr
        assert f"owner = {env.owner_name}".encode() in result.stdout
        assert b"nothing was changed" in result.stdout
    finally:
        env.close()


# -- the agent's home: made now, or the agent's already; never a system directory -----------------

def without(argv, flag):
    """argv with FLAG and its value taken out."""
    at = argv.index(flag)
    return argv[:at] + argv[at + 2:]


@root
@pytest.mark.parametrize("home", ["/", "/usr/sbin", "/etc", "/var/lib", "/usr/local/sbin"])
def test_refuses_a_system_directory_as_the_agent_home(home):
    """Planned only (--dry-run): without the check the plan is `set / to AGENT:AGENT 0711`."""
    env = RootEnv(install=False)
    try:
        result = env.install("--dry-run", "--agent-home", home)
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"a system directory" in result.stderr
        assert b"would:" not in result.stdout
    finally:
        env.close()


@root
@pytest.mark.parametrize("inside", ["prefix", "state"])
def test_refuses_an_agent_home_inside_the_prefix_or_the_state(inside):
    env = RootEnv(install=False)
    try:
        home = (env.prefix if inside == "prefix" else env.state) / "agent"
        result = env.install("--dry-run", "--agent-home", str(home))
        assert result.returncode == 2, result.stdout + result.stderr
        assert b"--agent-home must lie outside the prefix and the state" in result.stderr
        assert b"would:" not in result.stdout
    finally:
        env.close()


@root
def test_refuses_an_existing_agent_whose_home_is_a_system_directory():
    env = RootEnv(install=False)
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--home-dir", "/usr/sbin",
                        env.agent_name], check=True)
        result = run(without(env.install_argv("--dry-run"), "--agent-home"))
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"--agent-home /usr/sbin" in result.stderr and b"would:" not in result.stdout
    finally:
        env.close()


@root
@pytest.mark.parametrize("held_by, agent_exists", [("root", True), ("owner", True), ("root", False)])
def test_refuses_an_existing_home_that_is_not_the_agents(held_by, agent_exists):
    """For real: without the check the directory is chowned to the agent."""
    env = RootEnv(install=False)
    try:
        if agent_exists:
            make_user(env.agent_name)
        env.agent_home.mkdir(mode=0o755)
        if held_by == "owner":
            subprocess.run(["chown", f"{env.owner_name}:{env.owner_name}", str(env.agent_home)], check=True)
        before = system_snapshot(env)
        result = env.install()
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"not handing it over" in result.stderr
        assert system_snapshot(env) == before
        assert not env.sudoers.exists() and not env.prefix.exists()
    finally:
        env.close()


@root
def test_accepts_an_existing_home_the_agent_owns():
    env = RootEnv(install=False)
    try:
        make_user(env.agent_name)
        env.agent_home.mkdir(mode=0o700)
        subprocess.run(["chown", f"{env.agent_name}:{env.agent_name}", str(env.agent_home)], check=True)
        result = env.install()
        assert result.returncode == 0, result.stderr
        agent_uid = int(run(["id", "-u", env.agent_name]).stdout)
        st = os.lstat(env.agent_home)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (agent_uid, 0o711)
    finally:
        env.close()


# -- below the prefix: root-only too (PREFIX/libexec holds elevate, which the agent runs as root) ---

@root
@pytest.mark.parametrize("below, how", [
    ("libexec", "owner"), ("libexec", "group-writable"), ("libexec/clawgate", "owner"),
    ("etc", "owner"), ("etc/clawgate", "group-writable"), ("bin", "owner"), ("bin", "other-writable"),
])
def test_refuses_a_directory_below_the_prefix_that_is_not_root_only(below, how):
    env = RootEnv(install=False)
    try:
        loose = env.prefix / below
        for path in [*reversed((loose.relative_to(env.root)).parents), loose.relative_to(env.root)]:
            (env.root / path).mkdir(mode=0o755, exist_ok=True)
        if how == "owner":
            subprocess.run(["chown", env.owner_name, str(loose)], check=True)
        else:
            loose.chmod(0o775 if how == "group-writable" else 0o757)
        before = system_snapshot(env)
        result = env.install()
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"--prefix: the agent could change it: " + str(loose).encode() + b":" in result.stderr
        assert system_snapshot(env) == before
        assert not user_exists(env.agent_name) and not env.sudoers.exists()
    finally:
        env.close()


# -- the agent's name also names its sudoers file, which sudo skips if it has a dot -----------------

@root
def test_refuses_an_agent_name_with_a_dot():
    env = RootEnv(install=False)
    try:
        env.agent_name = env.agent_name[:4] + "." + env.agent_name[4:]
        env.sudoers = SUDOERS_DIR / f"clawgate-{env.agent_name}"
        result = env.install()
        assert result.returncode == 2, result.stdout + result.stderr
        assert b"no dot" in result.stderr
        assert not user_exists(env.agent_name) and not env.sudoers.exists() and not env.prefix.exists()
    finally:
        env.close()


# -- --uninstall acts only on a root-only manifest that lists only what install.sh makes ------------

def manifest_of(env):
    return env.prefix / "etc" / "clawgate" / "install.manifest"


@root
@pytest.mark.parametrize("loosen", ["manifest owned by the owner", "manifest group-writable",
                                    "manifest a symbolic link", "its directory owned by the owner"])
def test_uninstall_refuses_a_manifest_others_could_write(loosen):
    with RootEnv() as env:
        manifest = manifest_of(env)
        saved = manifest.read_bytes()
        if loosen == "manifest owned by the owner":
            os.chown(manifest, int(run(["id", "-u", env.owner_name]).stdout), -1)
        elif loosen == "manifest group-writable":
            manifest.chmod(0o664)
        elif loosen == "manifest a symbolic link":
            real = env.root / "manifest-elsewhere"
            real.write_bytes(saved)
            manifest.unlink()
            manifest.symlink_to(real)
        else:
            os.chown(manifest.parent, int(run(["id", "-u", env.owner_name]).stdout), -1)
        result = env.uninstall(purge=True)
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"the agent could change it" in result.stderr
        assert env.sudoers.exists() and env.libexec.exists() and env.door.exists() and env.state.exists()
        assert user_exists(env.agent_name)
        # put it back, so that the teardown's uninstall runs
        os.chown(manifest.parent, 0, 0)
        manifest.unlink()
        manifest.write_bytes(saved)
        manifest.chmod(0o644)


@pytest.fixture(scope="module")
def installed():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with RootEnv() as env:
        yield env


@root
@pytest.mark.parametrize("forged", [
    "state /usr", "state /var/lib", "home /", "home /etc", "state {prefix}", "home {root}", "state {prefix}/x",
    "user root", "user {owner}", "user nobody", "agent x;y", "sudoers /etc/sudoers", "sudoers /etc/sudoers.d/README",
    "service /etc/passwd", "dir /", "dir /mnt", "migrated /etc {home}/.openclaw", "migrated {root}/x /etc",
    "home /opt/../usr", "exec /bin/sh",
])
def test_uninstall_refuses_a_manifest_listing_what_install_never_makes(installed, forged):
    """Planned only (--dry-run): without the check the plan removes what the line names."""
    env = installed
    manifest = manifest_of(env)
    saved = manifest.read_bytes()
    line = forged.format(prefix=env.prefix, root=env.root, owner=env.owner_name, home=env.agent_home)
    try:
        manifest.write_bytes(saved + line.encode() + b"\n")
        result = env.uninstall(True, "--dry-run")
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"not removing anything" in result.stderr and line.encode() in result.stderr
        assert b"would:" not in result.stdout
    finally:
        manifest.write_bytes(saved)


@root
def test_uninstall_accepts_what_install_wrote(installed):
    """The genuine manifest, also after reinstalls by other owners (one `owner` line each), passes."""
    env = installed
    manifest = manifest_of(env)
    saved = manifest.read_bytes()
    try:
        manifest.write_bytes(saved + b"owner cgformer\n")
        result = env.uninstall(True, "--dry-run")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"would: delete the user {env.agent_name}".encode() in result.stdout
        assert f"would: remove {env.sudoers}".encode() in result.stdout
    finally:
        manifest.write_bytes(saved)


# -- the macOS plan, shown on any machine ----------------------------------------------------------

FAKE_DSCL = """#!/bin/sh
# Stand-in for dscl: users 401, 402 and 404 taken, group 403 taken.
case "$3" in
  /Users) printf 'root 0\\nnobody -2\\n_www 70\\nused1 401\\nused2 402\\nused4 404\\n' ;;
  /Groups) printf 'wheel 0\\nstaff 20\\ngrp3 403\\n' ;;
esac
"""


def blocks(text):
    return dict(re.findall(r"^--- begin (\S+)\n(.*?)^--- end \1$", text, re.S | re.M))


def test_darwin_plan(tmp_path):
    dscl = tmp_path / "dscl"
    dscl.write_text(FAKE_DSCL)
    dscl.chmod(0o755)
    argv = ["bash", str(INSTALL), "--dry-run", "--target-os", "darwin", "--owner", "alice",
            "--gateway-command", "/opt/homebrew/bin/openclaw gateway --port 18789"]
    result = run(argv, env={"CLAWGATE_DSCL": str(dscl)})
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()

    assert "would: create the hidden user openclaw (uid 405, group openclaw, no password, not admin)" in out
    for attribute in ("UniqueID 405", "PrimaryGroupID 405", "IsHidden 1", "Password *", "UserShell /bin/zsh",
                      "NFSHomeDirectory /opt/openclaw"):
        assert f"would: dscl . -create /Users/openclaw {attribute}" in out, attribute
    assert "would: dscl . -create /Groups/openclaw PrimaryGroupID 405" in out
    assert "launchctl bootstrap system /Library/LaunchDaemons/ai.openclaw.gateway.plist" in out

    files = blocks(out)
    plist = plistlib.loads(files["/Library/LaunchDaemons/ai.openclaw.gateway.plist"].encode())
    assert plist["Label"] == "ai.openclaw.gateway"
    assert plist["UserName"] == "openclaw"
    assert plist["ProgramArguments"] == ["/opt/homebrew/bin/openclaw", "gateway", "--port", "18789"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
    assert "would: install /Library/LaunchDaemons/ai.openclaw.gateway.plist (root:wheel 0644)" in out

    sudoers = files["/etc/sudoers.d/clawgate-openclaw"]
    assert "Cmnd_Alias CLAWGATE_6F70656E636C6177_VALUES = /usr/local/libexec/clawgate/broker," in sudoers
    assert "openclaw ALL=(alice) NOPASSWD: NOLOG_INPUT: NOLOG_OUTPUT: CLAWGATE_6F70656E636C6177_VALUES" in sudoers
    checked = tmp_path / "sudoers"
    checked.write_text(sudoers)
    visudo = shutil.which("visudo", path="/usr/sbin:/sbin:/usr/bin")  # a user's PATH has no sbin
    assert visudo, "needs sudo's visudo"
    assert subprocess.run([visudo, "-cf", str(checked)], capture_output=True).returncode == 0

    conf = files["/usr/local/etc/clawgate/clawgate.conf"]
    assert "store = keychain" in conf and "state_dir = /var/db/clawgate" in conf
    assert "would: install /etc/sudoers.d/clawgate-openclaw" in out


def test_darwin_plan_escapes_the_gateway_command(tmp_path):
    argv = ["bash", str(INSTALL), "--dry-run", "--target-os", "darwin", "--owner", "alice",
            "--gateway-command", "/opt/x/gw --name 'a <b> & \"c\"'"]
    result = run(argv, env={"CLAWGATE_DSCL": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    plist = plistlib.loads(blocks(result.stdout.decode())["/Library/LaunchDaemons/ai.openclaw.gateway.plist"].encode())
    assert plist["ProgramArguments"] == ["/opt/x/gw", "--name", 'a <b> & "c"']


@root
def test_a_sudoers_text_that_fails_visudo_never_goes_live(tmp_path):
    """A source tree whose sudoers template is broken: install.sh stops before anything changes."""
    src = Path(tempfile.mkdtemp(prefix="clawgate-src-", dir="/opt"))
    env = RootEnv(install=False)
    try:
        for part in ("install.sh", "bin", "lib", "sudoers", "systemd", "launchd"):
            (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, src / part)
        template = src / "sudoers" / "clawgate.sudoers"
        template.write_text(template.read_text() + "@AGENT@ ALL=(@OWNER@ NOPASSWD: @LIBEXEC@/broker\n")
        argv = env.install_argv()
        argv[1] = str(src / "install.sh")
        result = run(argv)
        assert result.returncode == 6, result.stderr
        assert b"does not pass visudo -cf" in result.stderr
        assert not env.sudoers.exists() and not user_exists(env.agent_name) and not env.prefix.exists()
    finally:
        env.close()
        shutil.rmtree(src, ignore_errors=True)


def _answer_no_at_the_terminal(argv) -> int:
    """install.sh ARGV at a terminal, refused at its one question: its exit status."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(argv[0], argv[1:], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=60)
    child.expect("Press RETURN to continue or any other key to abort")
    child.send("n")
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


@root
def test_without_yes_a_terminal_is_asked_first():
    env = RootEnv(install=False)
    try:
        assert _answer_no_at_the_terminal([a for a in env.install_argv() if a != "--yes"]) == 1
        assert not env.prefix.exists() and not user_exists(env.agent_name)
    finally:
        env.close()


@root
def test_without_yes_a_terminal_is_asked_before_uninstalling():
    with RootEnv() as env:
        assert _answer_no_at_the_terminal(["bash", str(INSTALL), "--uninstall", "--prefix", str(env.prefix)]) == 1
        assert env.sudoers.exists() and env.door.exists() and env.libexec.exists()


@root
def test_two_installs_at_once_leave_one_good_install():
    env = RootEnv(install=False)
    try:
        argv = env.install_argv()
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                                  env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}) for _ in range(3)]
        results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
        assert [code for code, _, _ in results] == [0, 0, 0], results
        assert sum(b"nothing to do" in out for _, out, _ in results) == 2  # the later ones found it done
        assert b"nothing to do" in env.install().stdout
        env.enroll_seed()
        assert env.doctor().returncode == 0
    finally:
        env.close()


@root
def test_reinstall_keeps_shortened_ttls():
    with RootEnv(ttl={"restricted": "5s", "root": "3s"}) as env:
        assert env.install().returncode == 0
        assert b"nothing to do" in env.install().stdout
        text = env.config_path.read_text()
        assert "restricted = 5s" in text and "root = 3s" in text and "controlled = 4h" in text
        env.enroll_seed()
        env.set_secret("k", b"v")
        approved = env.agent("approve", "k", env.code())
        assert b"granted for 5s" in approved.stdout, approved.stdout
