"""Two hosts on one OpenBao (invariant 17), through the real install.sh, real users and sudo.

Two installs on this machine (two prefixes on disk, two owners, two agent users) stand for two
hosts sharing one OpenBao prefix: a secret and its tier set on one are served on the other; a
code accepted on one is refused on the other; 20 approvals racing across both with one code give
one grant; wrong codes from both count toward one lockout; the agent reads neither the AppRole
secret id nor the token; nothing of a value lands on either host's disk.
"""

import concurrent.futures
import os
import shutil

import pytest

from baoserver import DevServer, readable_ca
from installtree import python_for_install, wrong_code
from rootenv import RootEnv
from clawgate import lockout, totp

pytestmark = pytest.mark.root
VALUE = b"fleet-secret-\x01\xfe-91aa"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    server = DevServer(tmp_path_factory.mktemp("bao"))
    envs = []
    ca = readable_ca(server)
    shared = ca.parent
    try:
        prefix = f"clawgate/fleet-{os.getpid()}"
        owner = server.owner(prefix)
        for _ in range(2):
            secret_id = server.api("POST", f"auth/approle/role/{owner.role}/secret-id")["data"]["secret_id"]
            envs.append(RootEnv(install_args=["--store", "openbao", "--openbao-address", server.address,
                                              "--openbao-ca", str(ca), "--openbao-role-id", owner.role_id,
                                              "--openbao-prefix", prefix],
                                install_input=f"{secret_id}\n".encode()))
        a, b = envs
        short_seed(a)  # (the real enroll on OpenBao: test_openbao_fleet.py)
        b.seed = a.seed  # one authenticator entry for the fleet
        yield server, a, b
    finally:
        for env in envs:
            env.close()
        shutil.rmtree(shared, ignore_errors=True)
        server.stop()


PERIOD = 5  # seconds: a fresh code every 5 s, not every 30, so the tests do not wait for the clock


def short_seed(env: RootEnv) -> None:
    """Save a seed with a short period through the installed library, as the owner."""
    env.seed = totp.Params(totp.new_secret(), period=PERIOD)
    program = ("import sys; sys.path.insert(0, sys.argv[1]); from clawgate import config, seed, totp; "
               "seed.save(config.load(sys.argv[2]), totp.Params(totp.from_base32(sys.stdin.read().strip()), "
               f"period={PERIOD}))")
    saved = env.run_as(env.owner_name, python_for_install(), "-I", "-c", program, str(env.libexec / "lib"),
                       str(env.config_path), input=totp.to_base32(env.seed.secret).encode())
    assert saved.returncode == 0, saved.stderr


def sync(a: RootEnv, b: RootEnv) -> None:
    """Both hand out codes from the same clock: neither hands out one the other spent."""
    a.last_step = b.last_step = max(a.last_step, b.last_step)


def grants_of(env: RootEnv) -> "list[str]":
    return sorted(p.name for p in (env.state / "grants").iterdir())


def test_a_secret_and_its_tier_set_on_one_host_serve_on_the_other(fleet):
    _, a, b = fleet
    a.set_secret("shared/db", VALUE, tier="open")
    got = b.agent("get", "shared/db")
    assert (got.returncode, got.stdout) == (0, VALUE), got.stderr
    assert a.owner("secrets", "tier", "shared/db", "controlled").returncode == 0
    assert b.agent("get", "shared/db").returncode == 3


def test_a_code_accepted_on_one_host_is_refused_on_the_other(fleet):
    _, a, b = fleet
    a.set_secret("once", b"v", tier="controlled")
    sync(a, b)
    code = a.code()
    sync(a, b)
    assert a.agent("approve", "once", code).returncode == 0
    again = b.agent("approve", "once", code)
    assert again.returncode == 1 and b"code denied" in again.stderr
    assert "once" in grants_of(a) and "once" not in grants_of(b)
    assert b.owner("unlock").returncode == 0


def test_twenty_racing_approvals_across_both_hosts_give_one_grant(fleet):
    _, a, b = fleet
    a.set_secret("raced", b"v", tier="controlled")
    sync(a, b)
    code = a.code()
    sync(a, b)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: (a, b)[i % 2].agent("approve", "raced", code), range(20)))
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and set(codes[1:]) <= {1, 5}, [r.stderr for r in results]
    assert ("raced" in grants_of(a)) + ("raced" in grants_of(b)) == 1
    assert a.owner("unlock").returncode == 0


def test_wrong_codes_from_both_hosts_count_toward_one_lockout(fleet):
    _, a, b = fleet
    a.set_secret("guarded", b"v", tier="controlled")
    wrong = wrong_code([])
    for i in range(lockout.FREE_FAILURES + 1):
        assert (a, b)[i % 2].agent("approve", "guarded", wrong).returncode == 1
    sync(a, b)
    right = a.code()
    sync(a, b)
    for env in (a, b):
        got = env.agent("approve", "guarded", right)
        assert got.returncode == 5 and b"locked out" in got.stderr, got.stderr
    assert b.owner("unlock").returncode == 0
    assert a.agent("approve", "guarded", right).returncode == 0


def test_the_agent_reads_neither_the_secret_id_nor_the_token(fleet):
    _, a, b = fleet
    a.set_secret("warm", b"v", tier="open")
    assert a.agent("get", "warm").returncode == 0  # a token is cached now
    for env in (a, b):
        for name in ("openbao-secret-id", "openbao-token"):
            path = env.state / name
            assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
            assert path.stat().st_uid == env.state.stat().st_uid
            got = env.run_as(env.agent_name, "/bin/cat", str(path))
            assert got.returncode != 0 and got.stdout == b""
            via_sudo = env.run_as(env.agent_name, "/usr/bin/sudo", "-n", "-u", env.owner_name, "/bin/cat", str(path))
            assert via_sudo.returncode != 0 and via_sudo.stdout == b""
        secret = (env.state / "openbao-secret-id").read_bytes().strip()
        for args in (("get", "openbao-secret-id"), ("list",), ("status",)):
            got = env.agent(*args)
            assert secret not in got.stdout + got.stderr


def test_no_value_on_either_hosts_disk(fleet):
    _, a, b = fleet
    a.set_secret("shared/db2", VALUE, tier="open")
    assert b.agent("get", "shared/db2").stdout == VALUE
    import base64

    for env in (a, b):
        for path in env.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert VALUE not in data and base64.b64encode(VALUE) not in data, path


def test_doctor_as_root_checks_openbao_as_the_owner(fleet):
    _, a, _ = fleet
    out = a.doctor().stdout.decode()
    lines = [line for line in out.splitlines() if "openbao" in line]
    for what in ("openbao reachable", "openbao unsealed", "openbao token", "openbao policy"):
        assert any(line.startswith(f"ok    {what}:") for line in lines), out
    assert "agent reach" in out and not any(line.startswith("FAIL  agent reach") for line in out.splitlines()), out
