"""Invariant 11 through the real sudo: the agent signals ITS OWN sudo (it is the real uid of the
sudo process, and sudo relays TSTP, TERM, HUP, USR1, INT... to the owner-side program), sets
limits on it, closes its descriptors, feeds it huge argv. The owner's side never hangs, never
tears its log, never leaves a guess uncounted. The driver runs as the agent user, with a
seeded RNG, exactly as a hostile agent would."""

import json
import os
import signal
import subprocess
import time

import pytest

from installtree import python_for_install, wrong_code
from rootenv import relay_while_sudo_is_made_to_kill_it, RootEnv, run

pytestmark = pytest.mark.root

HANG = 20  # seconds: purely a hang detector; a healthy call takes well under one

DRIVER = r'''
import json, os, random, signal, subprocess, sys, time
sudo, owner, libexec, sig, seed, rounds, code = sys.argv[1:]
sig, rounds, rng = int(sig), int(rounds), random.Random(int(seed))
request = json.dumps({"protocolVersion": 1, "provider": "clawgate",
                      "ids": ["open/a", "open/b", "locked/r"] + [f"nope/{i}" for i in range(509)]}).encode()
outcome = {"hung": 0, "codes": {}}
for i in range(rounds):
    approve = i % 4 == 3  # every fourth round
    argv = [sudo, "-n", "-u", owner, libexec + ("/approve" if approve else "/broker")]
    argv += ["locked/r", code] if approve else ["resolve"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not approve:
        try:
            proc.stdin.write(request)
        except BrokenPipeError:
            pass
    proc.stdin.close()
    time.sleep(rng.uniform(0.0, 0.12))
    try:
        proc.send_signal(sig)  # to our own sudo, which relays it
        if sig == signal.SIGTSTP:
            time.sleep(rng.uniform(0.0, 0.02))
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):  # gone, or sudo stopped itself behind its command
        pass
    try:
        status = proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        # Stopped before its first line ran (a stop sent while the interpreter starts): leave it
        # stopped, as a hostile agent would. Killing sudo leaves the owner-side program stopped.
        outcome["hung"] += 1
        proc.kill()
        status = proc.wait()
    outcome["codes"][str(status)] = outcome["codes"].get(str(status), 0) + 1
print(json.dumps(outcome))
'''

PHASES = [signal.SIGTSTP, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGINT]


@pytest.fixture(scope="module")
def env():
    with RootEnv() as root_env:
        root_env.enroll_seed()
        root_env.set_secret("open/a", b"value-a", tier="open")
        root_env.set_secret("open/b", b"value-b", tier="open")
        root_env.set_secret("locked/r", b"value-r", tier="restricted")
        driver = root_env.root / "driver.py"
        driver.write_text(DRIVER)
        driver.chmod(0o644)
        yield root_env


def records(env):
    return [json.loads(line) for line in (env.state / "audit.log").read_bytes().splitlines()]


def failures(env) -> int:
    return json.loads((env.state / "totp.json").read_bytes())["failures"]


def audited_denials_since_unlock(env) -> int:
    found = records(env)
    last_unlock = max((i for i, r in enumerate(found) if r["event"] == "unlock"), default=-1)
    return sum(1 for r in found[last_unlock + 1:]
               if r["event"] == "code" and r["result"] == "denied" and r["role"] == "agent")


def owner_get_completes(env) -> None:
    result = env.owner("get", "open/a", timeout=HANG)
    assert result.returncode == 0 and result.stdout == b"value-a", result.stderr


def verify_green(env) -> subprocess.CompletedProcess:
    result = env.owner("audit", "verify", timeout=HANG)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("sig", PHASES, ids=[s.name for s in PHASES])
def test_relayed_signals_at_random_instants_never_hang_tear_or_lose_a_guess(env, sig):
    """60 rounds per signal (300 in all): resolve with 512 ids, and approve with a wrong code."""
    code = wrong_code([env.code()])
    env.last_step -= 1  # that code was only looked at, not spent
    result = env.run_as(env.agent_name, python_for_install(),
                        str(env.root / "driver.py"), "/usr/bin/sudo", env.owner_name, str(env.libexec),
                        str(int(sig)), str(1000 + int(sig)), "60", code, timeout=600)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    # Only a stop can leave a program waiting, and only one that came before its first line (guard
    # then ignores job control): it holds no lock, so the owner's side goes on regardless.
    assert outcome["hung"] == 0 or sig == signal.SIGTSTP, outcome
    assert outcome["codes"].get("0", 0) > 0, outcome  # some resolves ran to the end
    owner_get_completes(env)  # while any stopped program of the round is still there
    verify_green(env)
    assert not stopped_holding_state(env), "an owner-side program was stopped with state open"
    assert not [r for r in records(env) if r["event"] == "repair"], "a relayed signal tore the log"
    kill_owner_side(env, "broker")
    kill_owner_side(env, "approve")
    assert failures(env) == audited_denials_since_unlock(env) > 0
    unlocked = env.owner("unlock", timeout=HANG)  # the next phase starts with free guesses again
    assert unlocked.returncode == 0, unlocked.stderr


# -- a guess is counted before it is checked ---------------------------------------------------------

HOLD = """import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def owner_side_pids(env, program: str):
    uid = int(run(["id", "-u", env.owner_name]).stdout)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if str(env.libexec / program).encode() in handle.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def stopped_holding_state(env):
    """Owner-side programs stopped with a descriptor open in the state dir (a lock, a log)."""
    found = []
    for pid in owner_side_pids(env, "broker") + owner_side_pids(env, "approve"):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "T":
                    continue
            targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        found += [(pid, target) for target in targets if target.startswith(str(env.state))]
    return found


def kill_owner_side(env, program: str) -> None:
    for pid in owner_side_pids(env, program):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_guess_killed_after_its_count_was_written_stays_counted(env):
    """SIGKILL (root's, not the agent's) right after the count: the guess is counted, the log intact."""
    assert env.owner("unlock", timeout=HANG).returncode == 0
    holder = subprocess.Popen(["python3", "-c", HOLD, str(env.state / "audit.log")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"held\n"  # approve will count, check, then wait for the log
    try:
        approve = subprocess.Popen(["runuser", "-u", env.agent_name, "--", str(env.door), "approve", "locked/r",
                                    wrong_code([env.code()])], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        env.last_step -= 1
        deadline = time.time() + HANG
        while failures(env) == 0:
            assert time.time() < deadline, "the guess was not counted before it was checked"
            time.sleep(0.01)
        kill_owner_side(env, "approve")
        approve.communicate(timeout=HANG)
    finally:
        holder.stdin.close()
        holder.wait()
    assert failures(env) == 1
    verify_green(env)
    assert env.owner("unlock", timeout=HANG).returncode == 0


def test_sigalrm_to_its_own_sudo_cannot_kill_a_grant_between_its_spent_code_and_its_record(env):
    """The agent sends its own sudo SIGALRM: sudo takes it for a timeout and sends its command HUP
    and TERM, then KILL 2 s later, which nothing defers. A gate slower than that (OpenBao, or here
    an audit log whose lock someone holds) was killed after spending the code and writing the
    grant, before the record. The gate's work goes on in a session of its own: all of it lands."""
    assert env.owner("unlock", timeout=HANG).returncode == 0
    env.owner("revoke", "locked/r", timeout=HANG)
    relay_while_sudo_is_made_to_kill_it(env, "locked/r", env.code())
    got = env.agent("get", "locked/r", timeout=HANG)
    assert got.returncode == 0 and got.stdout == b"value-r", got.stderr
    verify_green(env)
    env.owner("revoke", "locked/r", timeout=HANG)


def test_an_ignored_sigchld_passed_through_sudo_cannot_turn_a_grant_into_an_error(env):
    """A disposition the agent sets survives sudo and exec: with SIGCHLD ignored, the kernel reaps
    children itself and every waitpid fails (after beyond_sudo's child granted, the parent said 74)."""
    import pwd

    agent = pwd.getpwnam(env.agent_name)
    assert env.owner("unlock", timeout=HANG).returncode == 0
    env.owner("revoke", "locked/r", timeout=HANG)
    result = subprocess.run(["/usr/bin/sudo", "-n", "-u", env.owner_name, str(env.libexec / "approve"), "locked/r",
                             env.code()], capture_output=True, timeout=HANG, user=agent.pw_uid, group=agent.pw_gid,
                            extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"},
                            preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert result.returncode == 0 and b"granted" in result.stdout, result.stderr
    got = env.agent("get", "locked/r", timeout=HANG)
    assert got.returncode == 0 and got.stdout == b"value-r", got.stderr
    env.owner("revoke", "locked/r", timeout=HANG)


# -- elevate under the agent's limits ---------------------------------------------------------------

def test_elevate_under_a_file_size_limit_counts_and_audits_or_refuses_before_anything(env):
    assert env.owner("unlock", timeout=HANG).returncode == 0
    size = (env.state / "audit.log").stat().st_size
    code = wrong_code([env.code()])
    env.last_step -= 1
    result = env.run_as(env.agent_name, "prlimit", "--fsize=400:400", "/usr/bin/sudo", "-n", "-u", "root",
                        str(env.libexec / "elevate"), code, "--", "/usr/bin/id", timeout=HANG)
    err = result.stderr.decode()
    assert "Traceback" not in err
    if result.returncode == 6:  # root here may not lift a hard limit (no CAP_SYS_RESOURCE): refused first
        assert "file-size limit" in err and failures(env) == 0
        assert (env.state / "audit.log").stat().st_size == size
    else:  # lifted: the guess is counted and its denial audited, like any other
        assert result.returncode == 1, err
        assert failures(env) == audited_denials_since_unlock(env) == 1
    verify_green(env)


def test_elevate_lifts_a_soft_file_size_limit_for_the_command_too(env):
    opened = env.agent("elevate", env.code(), "--", "/usr/bin/true", timeout=HANG)
    assert opened.returncode == 0, opened.stderr
    result = env.run_as(env.agent_name, "prlimit", "--fsize=400:unlimited", "/usr/bin/sudo", "-n", "-u", "root",
                        str(env.libexec / "elevate"), "session", "--", "/bin/sh", "-c", "ulimit -f", timeout=HANG)
    assert result.returncode == 0 and result.stdout == b"unlimited\n", result.stderr
    assert env.agent("revoke", "@root", timeout=HANG).returncode == 0


# -- limits that let the agent pick the moment the kernel kills or fails the owner's side --------------

@pytest.mark.parametrize("limit, words", [("--cpu=2:2", "CPU-time limit"), ("--as=400000000:400000000", "address-space limit"),
                                          ("--data=400000000:400000000", "data-size limit")])
def test_approve_under_a_limit_only_root_could_lift_is_refused_before_the_gate(env, limit, words):
    """A hard CPU-time limit is a SIGKILL the agent can aim (padding argv to land it between two of
    the gate's writes); an address-space or data limit, a failed allocation it can aim. Refused
    before the code is read: the code stays unspent, nothing is granted, counted or written."""
    assert env.owner("unlock", timeout=HANG).returncode == 0
    size = (env.state / "audit.log").stat().st_size
    code = env.code()
    result = env.run_as(env.agent_name, "prlimit", limit, "/usr/bin/sudo", "-n", "-u", env.owner_name,
                        str(env.libexec / "approve"), "locked/r", code, timeout=HANG)
    assert result.returncode == 6 and words in result.stderr.decode(), result.stderr
    assert (env.state / "audit.log").stat().st_size == size and failures(env) == 0
    assert not (env.state / "grants" / "locked%r").exists() and not (env.state / "grants" / "locked").exists()
    relayed = env.agent("approve", "locked/r", code, timeout=HANG)  # the same code, still unspent
    assert relayed.returncode == 0, relayed.stderr
    assert env.agent("revoke", "locked/r", timeout=HANG).returncode == 0


@pytest.mark.parametrize("lower", [["nice", "-n", "10"], ["chrt", "-i", "0"]])
def test_approve_at_a_lowered_priority_is_refused_before_the_gate(env, lower):
    """SCHED_IDLE or a positive nice passes through sudo; with its own busy loops the agent would
    starve approve while it holds totp.lock, locking the owner out of unlock and approve."""
    assert env.owner("unlock", timeout=HANG).returncode == 0
    size = (env.state / "audit.log").stat().st_size
    result = env.run_as(env.agent_name, *lower, "/usr/bin/sudo", "-n", "-u", env.owner_name,
                        str(env.libexec / "approve"), "locked/r", wrong_code([env.code()]), timeout=HANG)
    env.last_step -= 1
    assert result.returncode == 6 and "lowered priority" in result.stderr.decode(), result.stderr
    assert (env.state / "audit.log").stat().st_size == size and failures(env) == 0


def test_a_soft_cpu_time_limit_is_lifted_to_the_hard_one(env):
    result = env.run_as(env.agent_name, "prlimit", "--cpu=1:unlimited", "/usr/bin/sudo", "-n", "-u", env.owner_name,
                        str(env.libexec / "broker"), "get", "open/a", timeout=HANG)
    assert result.returncode == 0 and result.stdout == b"value-a", result.stderr


# -- closed descriptors and huge argv through the real sudo ------------------------------------------

def test_get_with_stdout_closed_prints_no_traceback(env):
    result = run(["runuser", "-u", env.agent_name, "--", "/bin/sh", "-c", f"{env.door} get open/a >&-"])
    assert b"Traceback" not in result.stderr, result.stderr
    owner = run(["runuser", "-u", env.owner_name, "--", "/bin/sh", "-c", f"{env.door} get open/a >&- 2>&-"])
    assert owner.stderr == b"" and owner.returncode in (0, 1)
    verify_green(env)


def test_a_19_mb_argv_to_a_refused_elevate_session_grows_the_log_by_less_than_64_kib(env):
    assert env.agent("revoke", "@root", timeout=HANG).returncode == 0
    size = (env.state / "audit.log").stat().st_size
    argv = ["A" * 999] * 1900  # 1.9 MB
    result = env.agent("elevate", "session", "--", "/usr/bin/true", *argv, timeout=HANG)
    assert result.returncode == 3, result.stderr[:300]
    grown = (env.state / "audit.log").stat().st_size - size
    assert 0 < grown < 64 * 1024, grown
    record = records(env)[-1]
    assert record["event"] == "elevate" and record["result"] == "denied" and record["argv_length"] > 1_900_000
    verify_green(env)


# -- run's redaction through the real sudo -------------------------------------------------------------

def test_run_redacts_a_value_dumped_as_hex_in_either_case(env):
    """`xxd -p` and `od` print a value as hex; it reached the agent's output unredacted."""
    dump = ('printf %s "$K" | od -An -tx1; printf %s "$K" | od -An -tx1 | tr a-f A-F; '
            'printf %s "$K" | od -An -tx1 -v | tr -d " \\n"; echo; printf %s "$K" | od -An -tx1 -v | tr -d " \\n" | tr a-f A-F')
    result = env.agent("run", "--env", "K=open/a", "--", "/bin/sh", "-c", dump, timeout=HANG)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    hexed = b"value-a".hex()
    for form in (hexed, hexed.upper(), b"value-a".hex(" "), b"value-a".hex(" ").upper()):
        assert form not in out, out
    assert out.count("[redacted:open/a]") == 4, out
