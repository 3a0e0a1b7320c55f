"""The installed system, end to end: real users, real file permissions, the real sudo reading the
sudoers file install.sh wrote. The agent acts through `runuser -u AGENT -- PREFIX/bin/clawgate`."""

import json
import os
import stat

import pytest

from installtree import wrong_code
from rootenv import RootEnv, run

pytestmark = pytest.mark.root

OPEN_VALUE = b"open-value\x00\n\xff"
SECRET_VALUE = b"restricted-value"


@pytest.fixture(scope="module")
def env():
    with RootEnv(service=True) as env:
        env.enroll_seed()
        env.set_secret("shared/open", OPEN_VALUE, tier="open")
        env.set_secret("db-password", SECRET_VALUE)  # no tier: restricted
        yield env


# -- the flow the agent sees -------------------------------------------------------------------

def test_agent_reads_an_open_secret(env):
    result = env.agent("get", "shared/open")
    assert result.returncode == 0, result.stderr
    assert result.stdout == OPEN_VALUE


def test_restricted_secret_needs_approval(env):
    env.agent("revoke", "db-password")
    result = env.agent("get", "db-password")
    assert result.returncode == 3
    assert result.stdout == b""
    assert b"approval required (restricted, grants last 15m)" in result.stderr
    assert SECRET_VALUE not in result.stderr


def test_approve_get_reuse_revoke(env):
    code = env.code()
    approved = env.agent("approve", "db-password", code)
    assert approved.returncode == 0, approved.stderr
    got = env.agent("get", "db-password")
    assert (got.returncode, got.stdout) == (0, SECRET_VALUE)

    reused = env.agent("approve", "db-password", code)
    assert reused.returncode == 1
    wrong = env.agent("approve", "db-password", wrong_code([code, env.spent_code()]))
    assert wrong.returncode == 1
    assert reused.stderr == wrong.stderr  # a reused code reads exactly like a wrong one

    revoked = env.agent("revoke", "db-password")
    assert revoked.returncode == 0
    assert env.agent("get", "db-password").returncode == 3


@pytest.mark.parametrize("name", ["../x", "../../etc/shadow", "/etc/passwd", "a/../b", "a//b", ".hidden", "x\n", "@seed"])
def test_bad_names_are_usage_errors(env, name):
    result = env.agent("get", name)
    assert result.returncode == 2, (name, result.stderr)


def test_broker_never_serves_the_seed_or_grants(env):
    for name in ("totp-seed", "totp.json", "grants", "audit.log"):
        assert env.agent("get", name).returncode == 4, name


def test_agent_may_not_use_owner_verbs(env):
    for argv in (["secrets", "list"], ["enroll", "--rotate"], ["audit", "show"], ["unlock"], ["doctor"]):
        result = env.agent(*argv)
        assert result.returncode == 1, (argv, result.stderr)


# -- what the agent cannot touch, tried for real as the agent ---------------------------------

PROBE = r"""
import errno, json, os, sys
out = {}
def record(key, fn):
    try:
        fn()
        out[key] = "ok"
    except OSError as err:
        out[key] = errno.errorcode.get(err.errno, str(err.errno))
def create_in(directory):
    def attempt():
        path = os.path.join(directory, ".agent-probe")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(path)
    return attempt
def append_to(path):
    return lambda: os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
def read(path):
    return lambda: os.close(os.open(path, os.O_RDONLY))
spec = json.loads(sys.argv[1])
for key, (how, path) in spec.items():
    record(key, {"create": create_in, "append": append_to, "read": read, "list": lambda p: lambda: os.listdir(p)}[how](path))
print(json.dumps(out))
"""


def agent_probe(env, spec):
    result = env.run_as(env.agent_name, "/usr/bin/python3", "-I", "-c", PROBE, json.dumps(spec))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_agent_gets_eacces_on_everything_it_must_not_touch(env):
    spec = {
        "write grants dir": ("create", str(env.state / "grants")),
        "write a grant": ("append", str(env.state / "grants" / "db-password")),
        "write state dir": ("create", str(env.state)),
        "write totp state": ("append", str(env.state / "totp.json")),
        "write config": ("append", str(env.config_path)),
        "write config dir": ("create", str(env.config_path.parent)),
        "write code dir": ("create", str(env.libexec)),
        "write code": ("append", str(env.libexec / "broker")),
        "write library": ("create", str(env.libexec / "lib" / "clawgate")),
        "write front door": ("append", str(env.door)),
        "write sudoers": ("append", str(env.sudoers)),
        "write sudoers dir": ("create", "/etc/sudoers.d"),
        "read sudoers": ("read", str(env.sudoers)),
        "list store": ("list", str(env.state / "secrets")),
        "read store": ("read", str(env.state / "secrets" / "db-password")),
        "read seed": ("read", str(env.state / "totp-seed")),
        "list state": ("list", str(env.state)),
        "read audit log": ("read", str(env.state / "audit.log")),
    }
    found = agent_probe(env, spec)
    assert found == {key: "EACCES" for key in spec}


def test_agent_has_no_other_sudo(env):
    seed = str(env.state / "totp-seed")
    for argv in (["sudo", "-n", "-u", env.owner_name, "/bin/cat", seed], ["sudo", "-n", "true"],
                 ["sudo", "-n", "-u", env.owner_name, str(env.libexec / "secrets"), "list"],
                 ["sudo", "-n", "-u", env.owner_name, str(env.libexec / "enroll"), "--rotate"]):
        result = env.run_as(env.agent_name, *argv)
        assert result.returncode != 0, argv
    listed = run(["sudo", "-n", "-l", "-U", env.agent_name]).stdout.decode()
    assert "ALL" not in listed.split("may run the following commands", 1)[1].replace("(ALL", "")


def test_agent_is_a_plain_user(env):
    groups = run(["id", "-Gn", env.agent_name]).stdout.decode().split()
    assert not set(groups) & {"root", "sudo", "admin", "wheel", "adm"}
    status = run(["passwd", "-S", env.agent_name]).stdout.decode().split()
    assert status[1] == "L"  # locked: no password to log in with


# -- what install.sh wrote ---------------------------------------------------------------------

def mode_of(path):
    st = os.lstat(path)
    return st.st_uid, stat.S_IMODE(st.st_mode)


def test_installed_owners_and_modes(env):
    owner_uid = int(run(["id", "-u", env.owner_name]).stdout)
    assert mode_of(env.config_path) == (0, 0o644)
    assert mode_of(env.door) == (0, 0o755)
    assert mode_of(env.libexec) == (0, 0o755)
    assert mode_of(env.libexec / "broker") == (0, 0o755)
    assert mode_of(env.libexec / "lib" / "clawgate" / "cli.py") == (0, 0o644)
    assert mode_of(env.state) == (owner_uid, 0o700)
    assert mode_of(env.sudoers) == (0, 0o440)
    for top, dirs, files in os.walk(env.libexec):
        for name in dirs + files:
            uid, mode = mode_of(os.path.join(top, name))
            assert uid == 0 and not mode & 0o022, os.path.join(top, name)


def test_shebangs_are_absolute_and_isolated(env):
    for program in ("broker", "approve", "revoke", "secrets", "enroll", "doctor"):
        first = (env.libexec / program).read_text().split("\n", 1)[0]
        assert first == "#!/usr/bin/python3 -IS", program


def test_sudoers_is_exactly_the_design(env):
    text = env.sudoers.read_text()
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    lib, alias = env.libexec, "CLAWGATE_" + env.agent_name.encode().hex().upper()
    assert rules == [
        f"Cmnd_Alias {alias}_VALUES = {lib}/broker, {lib}/approve, {lib}/revoke",
        f"Cmnd_Alias {alias}_ROOT = {lib}/elevate",
        f"Cmnd_Alias {alias}_OWNER = {lib}/secrets, {lib}/enroll, {lib}/notify",
        f"Defaults!{alias}_VALUES, {alias}_OWNER !log_input, !log_output",
        f"Defaults!{alias}_VALUES, {alias}_ROOT !requiretty",
        f"{env.agent_name} ALL=({env.owner_name}) NOPASSWD: NOLOG_INPUT: NOLOG_OUTPUT: {alias}_VALUES",
        f"{env.agent_name} ALL=(root) NOPASSWD: {alias}_ROOT",
    ]
    assert run(["visudo", "-cf", str(env.sudoers)]).returncode == 0
    assert not list(env.sudoers.parent.glob(f".clawgate-{env.agent_name}*"))  # no temp file left


def test_service_unit_runs_as_the_agent_without_no_new_privileges(env):
    unit = (env.service_dir / "openclaw-gateway.service").read_text()
    settings = [line.split("=", 1)[0] for line in unit.splitlines() if line and not line.startswith("#") and "=" in line]
    assert f"User={env.agent_name}" in unit.splitlines()
    assert "ExecStart=/bin/sleep infinity" in unit.splitlines()
    implying = {"NoNewPrivileges", "DynamicUser", "LockPersonality", "MemoryDenyWriteExecute", "PrivateDevices",
                "ProtectClock", "ProtectHostname", "ProtectKernelLogs", "ProtectKernelModules",
                "ProtectKernelTunables", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
                "RestrictSUIDSGID", "SystemCallArchitectures", "SystemCallFilter", "SystemCallLog"}
    assert not implying & set(settings)
    assert mode_of(env.service_dir / "openclaw-gateway.service") == (0, 0o644)


# -- idempotence --------------------------------------------------------------------

def test_second_install_changes_nothing(env):
    before = snapshot(env)
    again = env.install()
    assert again.returncode == 0, again.stderr
    assert b"nothing to do" in again.stdout, again.stdout.decode()
    assert snapshot(env) == before
    dry = env.install("--dry-run")
    assert b"0 changes would be made" in dry.stdout


def snapshot(env):
    found = {}
    for top in (env.prefix, env.service_dir):
        for path, dirs, files in os.walk(top):
            for name in dirs + files:
                full = os.path.join(path, name)
                st = os.lstat(full)
                found[full] = (st.st_uid, st.st_gid, st.st_mode, st.st_mtime_ns, st.st_ino)
    st = os.lstat(env.sudoers)
    found[str(env.sudoers)] = (st.st_uid, st.st_mode, st.st_mtime_ns, st.st_ino)
    return found
