"""elevate end to end, as root: the real install.sh, fresh users, the real sudo.

The agent acts through `runuser -u AGENT -- PREFIX/bin/clawgate elevate ...`, so every
request crosses the sudoers line install.sh wrote, exactly as OpenClaw's tools would.
Where sudo itself already stands in the way (env_reset), the installed elevate is also
run directly as root with SUDO_UID set, so each test fails if elevate's own defence goes.
"""

import json
import os
import pwd
import subprocess
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from installtree import wrong_code
from rootenv import TEST_PATH, RootEnv, SUDOERS_DIR, delete_user, make_user, random_user, run

pytestmark = pytest.mark.root

ALLOWED_ENV = {"PATH", "HOME", "USER", "LOGNAME", "TERM", "LANG", "LC_ALL", "LC_CTYPE", "LC_COLLATE",
               "LC_MESSAGES", "LC_MONETARY", "LC_NUMERIC", "LC_TIME", "LC_ADDRESS", "LC_IDENTIFICATION",
               "LC_MEASUREMENT", "LC_NAME", "LC_PAPER", "LC_TELEPHONE"}
POLLUTION = {"LD_PRELOAD": "/nonexistent/clawgate-evil.so", "LD_LIBRARY_PATH": "/nonexistent",
             "PYTHONPATH": "/nonexistent", "PYTHONSTARTUP": "/nonexistent/x.py", "BASH_ENV": "/nonexistent/x.sh",
             "ENV": "/nonexistent/x.sh", "IFS": "/", "SHELLOPTS": "xtrace", "PERL5OPT": "-Mevil",
             "LC_EVIL": "x", "LANG": "/nonexistent/locale", "TERM": "../../nonexistent"}


@pytest.fixture(scope="module")
def env():
    with RootEnv() as root_env:
        root_env.enroll_seed()
        yield root_env


@pytest.fixture
def fresh():
    """An install of its own, for tests that lock the agent out or race its codes."""
    with RootEnv() as root_env:
        root_env.enroll_seed()
        yield root_env


def elevate(install, *args: str, **kw) -> subprocess.CompletedProcess:
    return install.agent("elevate", *args, **kw)


def elevate_directly(env, *args: str, uid: int, extra_env=None) -> subprocess.CompletedProcess:
    """The installed elevate run by root itself, as sudo would run it for uid (minus sudo's env_reset)."""
    return run([str(env.libexec / "elevate"), *args], env={"SUDO_UID": str(uid), **(extra_env or {})})


def uid_of(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def ensure_session(env) -> None:
    if elevate(env, "session", "--", "/usr/bin/true").returncode == 3:
        opened = elevate(env, env.code(), "--", "/usr/bin/true")
        assert opened.returncode == 0, opened.stderr


def close_session(env) -> None:
    assert env.agent("revoke", "@root").returncode == 0


def audit_records(env):
    lines = (env.state / "audit.log").read_bytes().splitlines()
    return [json.loads(line) for line in lines]


def elevate_records(env, result=None):
    return [r for r in audit_records(env) if r["event"] == "elevate" and result in (None, r["result"])]


def environment_seen(result) -> dict:
    lines = result.stdout.decode().splitlines()
    assert all("=" in line for line in lines), lines  # a planted `env` would print something else
    return dict(line.split("=", 1) for line in lines)


def one_line(result) -> str:
    text = result.stderr.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert text.startswith("clawgate: ") and "Traceback" not in text
    return text


# -- a code opens the session; the session runs commands; revoke and expiry close it ---------

def test_code_runs_the_command_as_root_and_opens_the_session(env):
    code = env.code()
    # a usage error comes before the gate: the code is not spent by it
    typo = elevate(env, code, "--", "no-such-command-clawgate")
    assert typo.returncode == 2
    one_line(typo)

    result = elevate(env, code, "--", "/usr/bin/id", "-u")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"0\n"
    assert b"root session open for 30m" in result.stderr

    status = env.agent("status")
    assert status.returncode == 0
    assert b"root session  open, 29m" in status.stdout or b"root session  open, 30m" in status.stdout

    within = elevate(env, "session", "--", "/usr/bin/id", "-u")
    assert (within.returncode, within.stdout, within.stderr) == (0, b"0\n", b"")


def test_state_stays_the_owners_after_root_ran(env):
    ensure_session(env)
    owner = uid_of(env.owner_name)
    for directory, dirs, files in os.walk(env.state):
        for name in dirs + files:
            path = Path(directory) / name
            assert path.lstat().st_uid == owner, f"{path} is not the owner's"


def test_session_runs_commands_without_a_code(env):
    ensure_session(env)
    result = elevate(env, "session", "--", "id", "-un")  # a bare name: found on the fixed PATH
    assert (result.returncode, result.stdout) == (0, b"root\n"), result.stderr
    assert result.stderr == b""


def test_the_commands_own_status_comes_back(env):
    ensure_session(env)
    assert elevate(env, "session", "--", "/bin/sh", "-c", "exit 7").returncode == 7
    missing = elevate(env, "session", "--", "/nonexistent/clawgate-cmd")
    assert missing.returncode == 127
    one_line(missing)


def test_revoke_closes_the_session_at_once(fresh):
    opened = elevate(fresh, fresh.code(), "--", "/usr/bin/true")
    assert opened.returncode == 0, opened.stderr
    assert elevate(fresh, "session", "--", "/usr/bin/true").returncode == 0
    close_session(fresh)
    result = elevate(fresh, "session", "--", "/usr/bin/id", "-u")
    assert result.returncode == 3
    assert result.stdout == b""
    text = one_line(result)
    assert "clawgate approve @root CODE" in text and "clawgate elevate CODE -- CMD" in text
    assert b"root session  closed" in fresh.agent("status").stdout
    denial = elevate_records(fresh, "denied")[-1]
    assert (denial["cause"], denial["argv"], denial["caller"]) == ("no open session", ["/usr/bin/id", "-u"],
                                                                  fresh.agent_name)


def test_approve_opens_a_session_without_running_anything_and_revoke_all_closes_it(fresh):
    approved = fresh.agent("approve", "@root", fresh.code())
    assert approved.returncode == 0, approved.stderr
    assert b"root session open" in approved.stdout
    assert elevate_records(fresh) == []  # nothing ran
    result = elevate(fresh, "session", "--", "/usr/bin/id", "-u")
    assert (result.returncode, result.stdout) == (0, b"0\n"), result.stderr
    assert fresh.agent("revoke", "--all").returncode == 0
    assert elevate(fresh, "session", "--", "/usr/bin/true").returncode == 3


def test_session_expires_on_time():
    with RootEnv(ttl={"root": "3s"}) as short:
        short.enroll_seed()
        opened = elevate(short, short.code(), "--", "/usr/bin/id", "-u")
        assert (opened.returncode, opened.stdout) == (0, b"0\n"), opened.stderr
        assert b"open for 3s" in opened.stderr
        time.sleep(3.5)
        result = elevate(short, "session", "--", "/usr/bin/id", "-u")
        assert result.returncode == 3
        assert result.stdout == b""
        assert b"sessions last 3s" in result.stderr


# -- argv, never a shell -----------------------------------------------------------------------

def test_arguments_reach_the_command_literally(env):
    ensure_session(env)
    canary = env.root / "pwned"
    args = ["$(id)", "`id`", "a; id", "x && id", "y || id", "| id", "*", "/etc/pass*", "?", "[a-z]*",
            "line1\nline2", "$HOME", "${IFS}", "'quoted'", '"dq"', "\\", "", " spaced  out ", "> /x",
            f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"\ntouch {canary}\n",
            f"&& touch {canary}", "-n", "--", "\x01\x7f"]
    result = elevate(env, "session", "--", "/usr/bin/printf", "%s\\0", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(b"\0")[:-1] == [a.encode() for a in args]
    assert not canary.exists()
    # and the audit log has the argv exactly as it ran
    assert elevate_records(env, "run")[-1]["argv"] == ["/usr/bin/printf", "%s\\0", *args]


def test_a_non_utf8_argument_arrives_byte_for_byte(env):
    ensure_session(env)
    result = run(["runuser", "-u", env.agent_name, "--", str(env.door), "elevate", "session", "--",
                  "/usr/bin/printf", "%s", b"\xff\xfe\x80"])
    assert (result.returncode, result.stdout) == (0, b"\xff\xfe\x80"), result.stderr


# -- the code: wrong, reused, locked out ------------------------------------------------------

def test_wrong_and_reused_codes_are_denied_alike(fresh):
    env = fresh
    code = env.code()
    assert elevate(env, code, "--", "/usr/bin/true").returncode == 0
    close_session(env)
    reused = elevate(env, code, "--", "/usr/bin/id", "-u")
    wrong = elevate(env, wrong_code([code, env.spent_code()]), "--", "/usr/bin/id", "-u")
    for result in (reused, wrong):
        assert result.returncode == 1
        assert result.stdout == b""
        assert one_line(result) == "clawgate: code denied\n"
    denials = elevate_records(env, "denied")[-2:]
    assert [d["cause"] for d in denials] == ["code denied", "code denied"]
    assert denials[-1]["argv"] == ["/usr/bin/id", "-u"] and denials[-1]["caller"] == env.agent_name
    assert elevate(env, "session", "--", "/usr/bin/true").returncode == 3  # neither opened anything


def test_two_racing_uses_of_one_code_run_one_command(fresh):
    code = fresh.code()
    argv = ["runuser", "-u", fresh.agent_name, "--", str(fresh.door), "elevate", code, "--", "/usr/bin/echo", "ran"]
    racers = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                               env={"PATH": TEST_PATH}) for _ in range(4)]
    outcomes = sorted((p.wait(60), p.stdout.read()) for p in racers)
    for p in racers:
        p.stdout.close()
        p.stderr.close()
    assert outcomes == [(0, b"ran\n"), (1, b""), (1, b""), (1, b"")]


def test_lockout_applies_to_elevate_as_to_approve(fresh):
    canary = fresh.root / "ran-while-locked"
    codes = []
    # wrong codes through approve and elevate count together, as one gate
    for attempt in range(12):
        bad = wrong_code(codes)
        codes.append(bad)
        via = ("approve", "@root", bad) if attempt % 2 else ("elevate", bad, "--", "/usr/bin/touch", str(canary))
        result = fresh.agent(*via)
        if result.returncode == 5:
            break
        assert result.returncode == 1, result.stderr
    else:
        pytest.fail("no lockout after 12 wrong codes")
    assert b"locked out until" in result.stderr

    good = fresh.code()
    locked = elevate(fresh, good, "--", "/usr/bin/touch", str(canary))
    assert locked.returncode == 5  # even a valid code
    assert b"locked out until" in locked.stderr
    assert not canary.exists()
    assert elevate_records(fresh, "denied")[-1]["cause"] == "locked out"
    assert elevate(fresh, "session", "--", "/usr/bin/true").returncode == 3

    assert fresh.owner("unlock").returncode == 0
    after = elevate(fresh, good, "--", "/usr/bin/touch", str(canary))  # the lockout did not spend it
    assert after.returncode == 0, after.stderr
    assert canary.exists()


# -- nothing the agent sets reaches root -----------------------------------------------------

def test_agents_environment_does_not_reach_root_through_sudo(env):
    ensure_session(env)
    result = elevate(env, "session", "--", "/usr/bin/env", env=POLLUTION)
    assert result.returncode == 0, result.stderr
    seen = environment_seen(result)
    assert set(seen) <= ALLOWED_ENV
    assert seen["PATH"] == "/usr/sbin:/usr/bin:/sbin:/bin" and seen["HOME"] == "/root"


def test_elevate_builds_the_environment_itself_whatever_sudo_lets_through(env):
    # sudo's env_reset already strips these; run elevate as sudo would, but with them set,
    # so this fails if elevate's own allowlist goes.
    ensure_session(env)
    planted = env.root / "bin"
    planted.mkdir(exist_ok=True)
    fake = planted / "env"
    fake.write_text("#!/bin/sh\necho planted\n")
    fake.chmod(0o755)
    polluted = {**POLLUTION, "PATH": f"{planted}:/usr/bin:/bin", "HOME": str(env.agent_home),
                "USER": env.agent_name, "TERM": "xterm-256color", "LC_ALL": "C.UTF-8"}
    result = elevate_directly(env, "session", "--", "env", uid=uid_of(env.agent_name), extra_env=polluted)
    assert result.returncode == 0, result.stderr
    seen = environment_seen(result)
    assert seen == {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "USER": "root", "LOGNAME": "root",
                    "TERM": "xterm-256color", "LC_ALL": "C.UTF-8"}


# -- who may elevate -------------------------------------------------------------------------

def test_another_user_cannot_elevate_even_with_a_wider_sudoers_entry(fresh):
    env = fresh
    stranger = random_user()
    rule = SUDOERS_DIR / f"cgtest-{stranger}"
    make_user(stranger)
    try:
        rule.write_text(f"{stranger} ALL=(root) NOPASSWD: {env.libexec / 'elevate'}\n")
        rule.chmod(0o440)
        assert run(["visudo", "-cf", str(rule)]).returncode == 0
        as_stranger = ["runuser", "-u", stranger, "--", "/usr/bin/sudo", "-n", str(env.libexec / "elevate")]
        code = env.code()
        tried = run([*as_stranger, code, "--", "/usr/bin/id", "-u"])
        # the stranger never reached the gate: the code it tried is still good for the agent
        opened = elevate(env, code, "--", "/usr/bin/true")
        assert opened.returncode == 0, opened.stderr
        in_session = run([*as_stranger, "session", "--", "/usr/bin/id", "-u"])
    finally:
        rule.unlink(missing_ok=True)
        delete_user(stranger)
    for result in (tried, in_session):
        assert result.returncode == 1, result.stderr
        assert result.stdout == b""
        assert "may not use clawgate" in one_line(result)
    denials = [r for r in elevate_records(env, "denied") if r["caller"] == stranger]
    assert [(r["role"], r["cause"]) for r in denials] == [("other", "caller not allowed")] * 2


def test_root_itself_without_sudo_is_refused(env):
    result = run([str(env.libexec / "elevate"), "session", "--", "/usr/bin/id"])
    assert result.returncode == 1
    one_line(result)


def test_the_owner_may_elevate_and_is_recorded_as_the_owner(env):
    ensure_session(env)
    result = elevate_directly(env, "session", "--", "/usr/bin/id", "-u", uid=uid_of(env.owner_name))
    assert (result.returncode, result.stdout) == (0, b"0\n"), result.stderr
    record = elevate_records(env, "run")[-1]
    assert (record["caller"], record["role"]) == (env.owner_name, "owner")


def test_the_agent_cannot_run_anything_else_as_root(env):
    result = env.run_as(env.agent_name, "/usr/bin/sudo", "-n", "/usr/bin/id", "-u")
    assert result.returncode != 0 and result.stdout == b""
    result = env.run_as(env.agent_name, "/usr/bin/sudo", "-n", "-u", env.owner_name, "/usr/bin/id", "-u")
    assert result.returncode != 0 and result.stdout == b""


def test_installed_sudoers_has_no_all_command_rule(env):
    text = env.sudoers.read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    aliases = dict(line.split(None, 1)[1].split(" = ", 1) for line in lines if line.startswith("Cmnd_Alias "))
    rules = [line for line in lines if not line.startswith(("Cmnd_Alias ", "Defaults"))]
    assert rules, text
    libexec = env.libexec
    allowed = {str(libexec / name) for name in ("broker", "approve", "revoke", "elevate")}
    for rule in rules:
        user, rest = rule.split(None, 1)
        assert user == env.agent_name, rule
        runas, commands = rest.split("NOPASSWD:", 1)
        assert runas.strip() in (f"ALL=({env.owner_name})", "ALL=(root)"), rule
        named = [command.split()[-1] for command in commands.split(",")]  # after the tags (NOLOG_INPUT:)
        listed = [path.strip() for name in named for path in aliases.get(name, name).split(",")]
        assert "ALL" not in listed and set(listed) <= allowed, rule
    root_rules = [rule for rule in rules if "(root)" in rule]
    assert [aliases[rule.split()[-1]] for rule in root_rules] == [str(libexec / "elevate")]


# -- the audit log -------------------------------------------------------------------------------

def test_every_root_command_is_audited_with_its_caller_and_session(env):
    ensure_session(env)
    assert elevate(env, "session", "--", "/usr/bin/echo", "audited", "x y").returncode == 0
    record = elevate_records(env, "run")[-1]
    assert record["argv"] == ["/usr/bin/echo", "audited", "x y"]
    assert record["command"] == "/usr/bin/echo"
    assert (record["caller"], record["role"], record["mode"]) == (env.agent_name, "agent", "session")
    assert record["session_by"] == env.agent_name
    assert record["session_opened"] < record["session_expires"]
    verified = env.owner("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- usage -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(), ("session",), ("session", "/usr/bin/id"), ("session", "--"),
                                  ("123456", "/usr/bin/id"), ("--", "/usr/bin/id"), ("session", "--", "./id")])
def test_usage_errors_exit_2_on_one_line(env, args):
    result = elevate(env, *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    one_line(result)


# -- the command starts in /, with root's limits, whatever the agent's cwd and ulimits -------------

def as_agent_in(env, cwd: str, *argv: str, limits=()) -> subprocess.CompletedProcess:
    """The front door run by the agent from `cwd`, under prlimit options `limits` (the agent's own)."""
    line = " ".join(["cd", cwd, "&&", "exec", "/usr/bin/prlimit", *limits, str(env.door), *argv])
    return env.run_as(env.agent_name, "/bin/sh", "-c", line)


def test_root_command_runs_in_slash_not_in_the_agents_working_directory(env):
    agent = pwd.getpwnam(env.agent_name)
    planted = Path(tempfile.mkdtemp(prefix="rvevil-", dir="/tmp"))
    marker = env.root / "planted-ran-as-root"
    try:
        (planted / "json").mkdir()
        (planted / "json" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('root')\n")
        for path in (planted, planted / "json", planted / "json" / "__init__.py"):
            os.chown(path, agent.pw_uid, agent.pw_gid)
        ensure_session(env)
        result = as_agent_in(env, str(planted), "elevate", "session", "--", "/usr/bin/python3", "-m", "json.tool",
                             "/etc/hostname")
        assert not marker.exists(), "the agent's module ran as root"
        where = as_agent_in(env, str(planted), "elevate", "session", "--", "/usr/bin/pwd")
        assert where.stdout == b"/\n", where.stderr
        assert result.returncode != 0 or b"{" not in result.stdout  # /etc/hostname is no JSON; either way, stdlib ran
    finally:
        shutil.rmtree(planted, ignore_errors=True)


def limits_seen(result) -> dict:
    assert result.returncode == 0, result.stderr
    seen = {}
    for line in result.stdout.decode().splitlines()[1:]:
        seen[line[:26].strip()] = line[26:].split()[:2]
    return seen


def test_root_command_gets_roots_standard_limits_not_the_agents_soft_ones(env):
    ensure_session(env)
    standard = limits_seen(subprocess.CompletedProcess([], 0, Path("/proc/1/limits").read_bytes(), b""))
    result = as_agent_in(env, "/", "elevate", "session", "--", "/usr/bin/cat", "/proc/self/limits",
                         limits=("--as=400000000:", "--data=400000000:", "--nofile=100:", "--stack=2000000:",
                                 "--fsize=100000:", "--cpu=100:", "--nproc=200:", "--core=100000:"))
    seen = limits_seen(result)
    for label in ("Max address space", "Max data size", "Max file size", "Max cpu time", "Max stack size"):
        assert seen[label][0] == standard[label][0], (label, seen[label])
    assert int(seen["Max open files"][0]) >= 1024 and int(seen["Max processes"][0]) >= 1024, seen
    assert seen["Max core file size"][0] == "0"


def root_may_lift_a_hard_limit() -> bool:
    """False where root lacks CAP_SYS_RESOURCE (a container): a lowered hard limit then stays."""
    lift = "import resource; resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)"
    return run(["/usr/bin/prlimit", "--cpu=100:100", "/usr/bin/python3", "-c", lift]).returncode == 0


def test_a_hard_limit_the_agent_set_is_lifted_or_refused_before_the_code_is_spent(fresh):
    lifts = root_may_lift_a_hard_limit()
    for limit, label in (("--as=400000000:400000000", "Max address space"), ("--fsize=100000:100000", "Max file size"),
                         ("--cpu=100:100", "Max cpu time")):
        code = fresh.code()
        result = as_agent_in(fresh, "/", "elevate", code, "--", "/usr/bin/cat", "/proc/self/limits", limits=(limit,))
        if lifts:  # root restored it: the command runs under root's limit, not the agent's
            assert limits_seen(result)[label][:2] == ["unlimited", "unlimited"], (limit, result.stdout)
            assert fresh.agent("revoke", "@root").returncode == 0
            continue
        assert result.returncode == 6, (limit, result.stderr)
        assert b"limit" in result.stderr and b"refusing" in result.stderr, result.stderr
        assert not elevate_records(fresh)
        assert fresh.agent("approve", "@root", code).returncode == 0  # the code was not spent
