"""The front door tells who is calling without forking id(1): /proc and /etc/passwd on Linux,
id(1) elsewhere. Either way each caller must be routed exactly as `id -un` would route it.

Real users (the system's daemon, nobody and bin accounts) run a rendered front door whose
LIBEXEC holds a stub `broker` that only echoes; so nothing here reaches clawgate's programs.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from installtree import REPO, front_door

pytestmark = pytest.mark.root

OWNER, AGENT, OTHER = "daemon", "nobody", "bin"


@pytest.fixture(scope="module")
def doors():
    root = Path(tempfile.mkdtemp(prefix="clawgate-door-", dir="/opt"))
    root.chmod(0o755)  # the three users must be able to read the doors
    libexec = root / "libexec"
    libexec.mkdir()
    stub = libexec / "broker"
    stub.write_text('#!/bin/sh\necho "stub broker as $(id -un): $*"\n')
    stub.chmod(0o755)
    door = root / "clawgate"
    door.write_text(front_door(OWNER, AGENT, libexec))
    # The door as installed: the agent's home and the owner's state tell who calls, with one stat.
    homes = {}
    for user, name in ((AGENT, "agent-home"), (OWNER, "state")):
        homes[user] = root / name
        homes[user].mkdir(mode=0o700)
        os.chown(homes[user], pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    marks = root / "clawgate-marks"
    marks.write_text(front_door(OWNER, AGENT, libexec, str(homes[AGENT]), str(homes[OWNER])))
    # The same door on a system without /proc: it must fall back to id(1).
    no_proc = root / "clawgate-no-proc"
    no_proc.write_text(door.read_text().replace("/proc/self/status", "/nonexistent/self/status"))
    assert no_proc.read_text() != door.read_text()
    for path in (door, no_proc, marks):
        path.chmod(0o755)
    yield {"proc": door, "id": no_proc, "marks": marks}
    shutil.rmtree(root)


def as_user(user, *argv):
    return subprocess.run(["runuser", "-u", user, "--", *map(str, argv)], capture_output=True, cwd="/",
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}, timeout=30)


@pytest.mark.parametrize("how", ["proc", "id", "marks"])
def test_the_owner_runs_the_program_directly(doors, how):
    result = as_user(OWNER, doors[how], "get", "x")
    assert (result.returncode, result.stdout) == (0, f"stub broker as {OWNER}: get x\n".encode()), result.stderr


@pytest.mark.parametrize("how", ["proc", "id", "marks"])
def test_the_agent_is_refused_owner_only_verbs_by_name(doors, how):
    result = as_user(AGENT, doors[how], "audit")
    assert result.returncode == 1
    assert result.stderr == f"clawgate: audit: only the owner ({OWNER}) may do this\n".encode()


@pytest.mark.parametrize("how", ["proc", "id", "marks"])
def test_the_agent_goes_through_sudo(doors, how):
    result = as_user(AGENT, doors[how], "get", "x")
    assert b"stub broker" not in result.stdout  # sudo has no rule for it here: refused there
    assert result.returncode != 0 and b"may not use clawgate" not in result.stderr


@pytest.mark.parametrize("how", ["proc", "id", "marks"])
def test_anyone_else_may_not_use_clawgate(doors, how):
    result = as_user(OTHER, doors[how], "get", "x")
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr == f"clawgate: {OTHER} may not use clawgate (owner: {OWNER}, agent: {AGENT})\n".encode()


@pytest.mark.parametrize("how", ["proc", "id", "marks"])
def test_root_reaches_the_owners_program_through_sudo(doors, how):
    result = subprocess.run([str(doors[how]), "get", "x"], capture_output=True, cwd="/",
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=30)
    assert (result.returncode, result.stdout) == (0, f"stub broker as {OWNER}: get x\n".encode()), result.stderr


def test_the_proc_reading_names_every_user_as_id_does(doors):
    script = REPO / "bin" / "clawgate"
    text = script.read_text()
    function = text[text.index("caller_from_proc() {"):text.index("\n}\n", text.index("caller_from_proc() {")) + 3]
    probe = f'{function}\nme=""\ncaller_from_proc || me=NONE\nprintf "%s %s" "$me" "$(id -un)"\n'
    for user in ("root", OWNER, AGENT, OTHER):
        result = as_user(user, "/bin/sh", "-c", probe)
        found, expected = result.stdout.decode().split()
        assert found == expected == (user if user != "root" else "root")
    assert os.path.exists("/proc/self/status")  # so the probe above did go through /proc
