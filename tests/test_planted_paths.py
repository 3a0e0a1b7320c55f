"""Invariant 12, attacked as the agent on a real install: the owner and root never act through a
path the agent can change. The agent plants links in its own home (a migrated ~/.openclaw lives
there), races install.sh --migrate-from, and keeps processes running under --purge.
"""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from rootenv import RootEnv, make_user, run

pytestmark = pytest.mark.root

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nowner's key\n"
DOCUMENTED = "{door} secrets import --shred ~/.openclaw/credentials/*"  # README, "Importing plaintext credentials"


def chown(path: Path, user: str) -> None:
    subprocess.run(["chown", "-R", f"{user}:{user}", str(path)], check=True)


def owner_home(env: RootEnv) -> Path:
    """The owner's home: an OpenClaw tree to migrate and an ~/.ssh the agent would like."""
    home = env.root / "owner-home"
    (home / ".openclaw" / "workspace").mkdir(parents=True)
    (home / ".openclaw" / "credentials").mkdir()
    (home / ".openclaw" / "credentials" / "telegram").write_bytes(b"tg-token")
    (home / ".openclaw" / "openclaw.json").write_text("{}")
    (home / ".openclaw" / "workspace" / "hooks").mkdir()
    (home / ".openclaw" / "workspace" / "hooks" / "on-start.sh").write_text("#!/bin/sh\n")
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "id_ed25519").write_bytes(KEY)
    chown(home, env.owner_name)
    home.chmod(0o755)
    (home / ".ssh").chmod(0o700)
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    return home


def ssh_untouched(env: RootEnv, home: Path) -> bool:
    ssh, key = os.lstat(home / ".ssh"), os.lstat(home / ".ssh" / "id_ed25519")
    owner_uid = int(run(["id", "-u", env.owner_name]).stdout)
    return ((stat.S_IMODE(ssh.st_mode), ssh.st_uid, stat.S_IMODE(key.st_mode), key.st_uid)
            == (0o700, owner_uid, 0o600, owner_uid)) and (home / ".ssh" / "id_ed25519").read_bytes() == KEY


def documented_import(env: RootEnv, home: Path, command: str = DOCUMENTED) -> subprocess.CompletedProcess:
    """The README's import step, typed by the owner in a shell (the shell expands the glob)."""
    script = f"HOME={home}; export HOME; " + command.format(door=env.door)  # runuser sets HOME from passwd
    return env.run_as(env.owner_name, "/bin/sh", "-c", script)


def stored(env: RootEnv) -> str:
    result = env.owner("secrets", "list")
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


@pytest.fixture
def migrated():
    env = RootEnv(install=False)
    try:
        home = owner_home(env)
        result = env.install("--migrate-from", str(home / ".openclaw"))
        assert result.returncode == 0, result.stderr
        yield env, home
    finally:
        env.close()


# -- import ------------------------------------------------------------------------------------

def test_documented_import_works_on_a_real_migration(migrated):
    env, home = migrated
    result = documented_import(env, home)
    assert result.returncode == 0, result.stderr
    assert b"telegram: imported (restricted), original shredded" in result.stdout
    assert not (env.agent_home / ".openclaw" / "credentials" / "telegram").exists()
    assert "telegram" in stored(env)


@pytest.mark.parametrize("shred", [True, False])
def test_agent_link_from_credentials_to_owner_ssh_is_refused(migrated, shred):
    env, home = migrated
    moved = env.agent_home / ".openclaw"
    planted = env.run_as(env.agent_name, "/bin/sh", "-c",
                         f"mv {moved}/credentials {moved}/was && ln -s {home}/.ssh {moved}/credentials")
    assert planted.returncode == 0, planted.stderr
    result = documented_import(env, home, DOCUMENTED if shred else DOCUMENTED.replace(" --shred", ""))
    assert result.returncode == 1, result.stdout + result.stderr
    assert b"symbolic link another user could change" in result.stderr
    assert ssh_untouched(env, home)
    assert "id_ed25519" not in stored(env)


def test_agent_link_higher_up_the_path_is_refused(migrated):
    """The agent swaps its whole ~/.openclaw for a link to an owner directory holding `credentials`."""
    env, home = migrated
    (home / "vault" / "credentials").mkdir(parents=True)
    (home / "vault" / "credentials" / "bank").write_bytes(b"owner's")
    chown(home / "vault", env.owner_name)
    moved = env.agent_home / ".openclaw"
    planted = env.run_as(env.agent_name, "/bin/sh", "-c", f"mv {moved} {moved}.was && ln -s {home}/vault {moved}")
    assert planted.returncode == 0, planted.stderr
    result = documented_import(env, home)
    assert result.returncode == 1 and b"symbolic link" in result.stderr, result.stderr
    assert (home / "vault" / "credentials" / "bank").read_bytes() == b"owner's"


def test_shred_refuses_a_directory_the_agent_owns(migrated):
    """A copy of credentials the agent made for itself: importable, never shredded by the owner."""
    env, home = migrated
    own = env.agent_home / ".openclaw" / "mine"
    made = env.run_as(env.agent_name, "/bin/sh", "-c", f"mkdir -m 755 {own} && echo v > {own}/slack && chmod 644 {own}/slack")
    assert made.returncode == 0, made.stderr
    result = documented_import(env, home, f"{{door}} secrets import --shred {own}/slack")
    assert result.returncode == 1 and b"not yours alone" in result.stderr, result.stderr
    assert (own / "slack").exists() and "slack" not in stored(env)


# -- install.sh --migrate-from against an agent already running code ---------------------------

RACER = r"""
import os, sys, time
home, bait = sys.argv[1], sys.argv[2]
target = os.path.join(home, ".openclaw")
deadline = time.time() + 90
print("ready", flush=True)
while time.time() < deadline and not os.path.exists(os.path.join(home, "stop")):
    try:
        if os.path.isdir(target) and not os.path.islink(target):
            os.rename(target, os.path.join(home, "grabbed"))
            os.symlink(bait, target)
            print("swapped", flush=True)
    except OSError:
        pass
"""


def test_migration_race_leaves_the_owner_dirs_untouched():
    """The agent swaps ~/.openclaw in its home for a link to the owner's ~/.ssh the instant it appears."""
    env = RootEnv(install=False)
    racer = None
    try:
        home = owner_home(env)
        make_user(env.agent_name)  # the agent exists and runs code before the install
        env.agent_home.mkdir()
        chown(env.agent_home, env.agent_name)
        racer = subprocess.Popen(["runuser", "-u", env.agent_name, "--", "/usr/bin/python3", "-c", RACER,
                                  str(env.agent_home), str(home / ".ssh")], stdout=subprocess.PIPE)
        assert racer.stdout.readline() == b"ready\n"
        result = env.install("--migrate-from", str(home / ".openclaw"))
        (env.agent_home / "stop").touch()
        swapped = racer.communicate(timeout=60)[0]
        assert b"swapped" in swapped  # the race really happened
        assert result.returncode == 0, result.stderr
        assert ssh_untouched(env, home)
        # What the agent grabbed is its own tree; the credentials inside stay the owner's.
        creds = env.agent_home / "grabbed" / "credentials"
        assert os.lstat(creds).st_uid == int(run(["id", "-u", env.owner_name]).stdout)
        assert stat.S_IMODE(os.lstat(creds).st_mode) == 0o700
    finally:
        if racer and racer.poll() is None:
            racer.kill()
        env.close()


# -- hard links across a change of hands (invariants 10, 12) ------------------------------------

def test_uninstall_gives_back_a_file_the_agent_hard_linked_as_a_fresh_copy_the_owners_alone(migrated):
    """The agent links openclaw.json and a hook to names in its home, then the owner uninstalls:
    each file back in the owner's ~/.openclaw is the owner's, with one link; the agent's link
    still names its own old inode, and writing through it changes nothing of the owner's."""
    env, home = migrated
    moved = env.agent_home / ".openclaw"
    linked = env.run_as(env.agent_name, "/bin/sh", "-c", f"ln {moved}/openclaw.json {env.agent_home}/keep.json && "
                        f"ln {moved}/workspace/hooks/on-start.sh {env.agent_home}/keep.sh")
    assert linked.returncode == 0, linked.stderr
    result = env.uninstall(purge=False)
    assert result.returncode == 0, result.stdout + result.stderr
    owner_uid = int(run(["id", "-u", env.owner_name]).stdout)
    for name in ("openclaw.json", "workspace/hooks/on-start.sh"):
        back = home / ".openclaw" / name
        assert not back.is_symlink() and (back.stat().st_uid, back.stat().st_nlink) == (owner_uid, 1), name
        assert name.encode() in result.stdout and b"fresh copy" in result.stdout
    assert (home / ".openclaw" / "openclaw.json").read_text() == "{}"
    rewrite = env.run_as(env.agent_name, "/bin/sh", "-c", f"echo '{{\"agent\": 1}}' > {env.agent_home}/keep.json")
    assert rewrite.returncode == 0, rewrite.stderr  # its own file still
    assert (home / ".openclaw" / "openclaw.json").read_text() == "{}"
    assert os.lstat(env.agent_home / "keep.sh").st_uid != owner_uid


def test_migration_of_a_file_with_other_hard_links_is_refused_before_any_change():
    """Chowned to the agent, a file the owner also keeps under another name would be the agent's
    there too: install.sh names it and changes nothing."""
    env = RootEnv(install=False)
    try:
        home = owner_home(env)
        os.link(home / ".openclaw" / "openclaw.json", home / "openclaw-backup.json")
        result = env.install("--migrate-from", str(home / ".openclaw"))
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"openclaw.json (2 links)" in result.stderr and b"nothing was changed" in result.stderr
        assert not env.sudoers.exists() and not env.prefix.exists()
        assert (home / ".openclaw").is_dir() and not (home / ".openclaw").is_symlink()
        assert os.stat(home / "openclaw-backup.json").st_uid == int(run(["id", "-u", env.owner_name]).stdout)
    finally:
        env.close()


# -- --uninstall --purge while the agent runs --------------------------------------------------

def test_purge_with_an_agent_process_running_changes_nothing():
    with RootEnv() as env:
        sleeper = subprocess.Popen(["runuser", "-u", env.agent_name, "--", "/bin/sh", "-c", "echo up; exec sleep 300"],
                                   stdout=subprocess.PIPE)
        try:
            assert sleeper.stdout.readline() == b"up\n"
            result = env.uninstall(purge=True)
            assert result.returncode == 1, result.stdout + result.stderr
            assert f"pkill -u {env.agent_name}".encode() in result.stderr
            assert env.sudoers.exists() and env.state.exists() and env.libexec.exists() and env.door.exists()
            assert run(["id", "-u", env.agent_name]).returncode == 0
        finally:
            sleeper.kill()
            sleeper.wait()
