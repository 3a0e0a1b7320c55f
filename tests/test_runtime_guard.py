"""Invariant 11 on a staged tree: what a caller hands a program (descriptors, limits, a held
lock) and what a crash leaves behind (a torn log tail) cannot block or corrupt the owner's side.
The same attacks through the real sudo are in test_hostile_runtime_root.py."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from coretools import audit_records, one_line_error, wrong_code_at
from clawgate import audit, guard


def _log(tree):
    return tree.state / "audit.log"


# -- a torn tail: cut back at the next append, recorded, explained by verify ----------------------

def test_a_torn_tail_is_cut_back_by_the_next_append_and_the_repair_is_recorded(tree):
    tree.set_secret("pub", b"p", tier="open")
    log = _log(tree)
    whole = log.read_bytes()
    torn = whole.splitlines(keepends=True)[-1][:37]  # a write cut short: part of a line, no newline
    with open(log, "ab") as handle:
        handle.write(torn)
    pending = tree.run("audit", "verify")
    assert pending.returncode == 0 and b"torn by a crash" in pending.stdout, pending.stdout

    result = tree.as_agent("broker", "get", "pub")  # any audited action, the agent's included
    assert result.returncode == 0 and result.stdout == b"p", result.stderr
    assert log.read_bytes().startswith(whole)
    repair, get = audit_records(tree)[-2:]
    assert repair["event"] == "repair" and repair["cut_bytes"] == len(torn) and repair["offset"] == len(whole)
    assert get["event"] == "get" and get["result"] == "ok"
    verified = tree.run("audit", "verify")
    assert verified.returncode == 0, verified.stdout
    assert b"repair: 37 torn bytes" in verified.stdout and b"audit log intact" in verified.stdout


def test_a_torn_tail_longer_than_the_tail_block_is_cut_back_too(tree):
    with open(_log(tree), "ab") as handle:
        handle.write(b'{"seq":2,"ts":"' + b"x" * 20_000)
    assert tree.run("secrets", "set", "k", input=b"v").returncode == 0
    assert [r["event"] for r in audit_records(tree)][-2:] == ["repair", "set"]
    assert tree.run("audit", "verify").returncode == 0


def test_an_edited_whole_last_line_is_not_taken_for_a_tear(tree):
    with open(_log(tree), "ab") as handle:
        handle.write(b'{"seq":99,"garbage"}\n')  # newline and all: an edit, not a crash
    assert "last line is damaged" in one_line_error(tree.as_agent("broker", "get", "x"), 6)
    assert tree.run("audit", "verify").returncode == 1


# -- every logged field bounded -------------------------------------------------------------------

def test_a_huge_field_is_logged_as_its_first_4_kib_its_length_and_its_sha256(tree):
    import hashlib

    argv = ["/usr/bin/true"] + ["A" * 1000] * 1900  # 1.9 MB
    before = _log(tree).stat().st_size
    audit.append(str(_log(tree)), tree.config().owner.uid, "elevate", [("argv", argv)], time.time())
    assert _log(tree).stat().st_size - before < 8 * 1024
    record = audit_records(tree)[-1]
    encoded = json.dumps(argv, separators=(",", ":")).encode()
    assert record["argv_length"] == len(encoded)
    assert record["argv_sha256"] == hashlib.sha256(encoded).hexdigest()
    assert len(record["argv"]) == audit.MAX_FIELD and encoded.decode().startswith(record["argv"])
    assert tree.run("audit", "verify").returncode == 0


# -- descriptors the caller closed ----------------------------------------------------------------

@pytest.mark.parametrize("closed", [[1], [2], [1, 2], [0, 1, 2]])
def test_closed_standard_descriptors_get_no_traceback_and_no_state_file_as_stdout(tree, closed):
    """With fd 1 closed, the audit log would be the first file opened: fd 1, and the value printed into it."""
    tree.set_secret("pub", b"THE-VALUE", tier="open")
    script = (f"import os, sys\nfor fd in {closed}: os.close(fd)\n"
              f"os.execv({str(tree.libexec / 'broker')!r}, ['broker', 'get', 'pub'])\n")
    err_r, err_w = os.pipe()
    proc = subprocess.run([sys.executable, "-c", script], env=tree.env(True), stdout=subprocess.PIPE,
                          stderr=err_w)
    os.close(err_w)
    with os.fdopen(err_r, "rb") as handle:
        stderr = handle.read()
    assert proc.returncode == 0, stderr
    assert b"Traceback" not in stderr and b"Exception" not in stderr
    for path in tree.state.rglob("*"):
        if path.is_file() and path.name != "pub":
            assert b"THE-VALUE" not in path.read_bytes(), path
    assert tree.run("audit", "verify").returncode == 0


def test_closed_stdout_and_stderr_on_a_refusal_no_traceback(tree):
    script = (f"import os\nos.close(1)\nos.close(2)\n"
              f"os.execv({str(tree.libexec / 'broker')!r}, ['broker', 'get', 'nothing'])\n")
    proc = subprocess.run([sys.executable, "-c", script], env=tree.env(True), capture_output=True)
    assert proc.returncode == 4 and proc.stdout == b"" and proc.stderr == b""


# -- a lock held by a stopped process: a bounded wait and a clear line ------------------------------

HOLD = """import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def _stopped_holder(path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"held\n"
    return holder


@pytest.mark.parametrize("lock", ["audit.log", "totp.lock"])
def test_a_lock_held_by_a_stopped_process_gives_exit_5_naming_it(tree, lock):
    tree.set_secret("k", b"v")
    holder = _stopped_holder(tree.state / lock)
    try:
        result = tree.as_agent("approve", "k", wrong_code_at(tree.seed, time.time()), timeout=30)
    finally:
        holder.kill()
        holder.wait()
    err = one_line_error(result, 5)
    assert f"held by pid {holder.pid}" in err and "more than" in err, err
    assert tree.run("audit", "verify").returncode == 0


def test_a_lock_wait_takes_the_lock_once_the_holder_lets_go(tree):
    tree.set_secret("pub", b"p", tier="open")
    holder = _stopped_holder(_log(tree))
    getter = subprocess.Popen([str(tree.libexec / "broker"), "get", "pub"], env=tree.env(True),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.3)
    holder.kill()
    holder.wait()
    out, err = getter.communicate(timeout=30)
    assert getter.returncode == 0 and out == b"p", err


def test_fsio_lock_never_waits_unbounded(tree, tmp_path):
    holder = _stopped_holder(tmp_path / "x.lock")
    code = (f"import sys; sys.path.insert(0, {str(tree.libexec / 'lib')!r})\n"
            "from clawgate import fsio\nfsio.LOCK_WAIT = 0.2\n"
            "try:\n    fsio.locked(sys.argv[1]).__enter__()\n"
            "except Exception as err:\n    print(err.code, err.message)\n")
    try:
        result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.lock")], capture_output=True,
                                timeout=30)
    finally:
        holder.kill()
        holder.wait()
    assert result.stdout.startswith(f"5 x.lock is held by pid {holder.pid}".encode()), result.stdout


# -- relayed job control and fatal signals -----------------------------------------------------------

def test_a_relayed_stop_cannot_stop_an_owner_side_program(tree):
    """sudo relays the agent's TSTP: the program ignores job control for its whole run."""
    tree.set_secret("pub", b"p", tier="open")
    holder = _stopped_holder(_log(tree))  # keep the getter inside its lock wait while we signal it
    getter = subprocess.Popen([str(tree.libexec / "broker"), "get", "pub"], env=tree.env(True),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        for sig in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            getter.send_signal(sig)
        time.sleep(0.2)
        with open(f"/proc/{getter.pid}/stat") as handle:
            assert handle.read().rsplit(")", 1)[1].split()[0] != "T"
    finally:
        holder.kill()
        holder.wait()
    out, err = getter.communicate(timeout=30)
    assert getter.returncode == 0 and out == b"p", err


def test_a_fatal_signal_inside_the_critical_section_acts_after_the_write(tree):
    """SIGTERM while the audit append waits on its lock: the append completes, then the signal acts."""
    tree.set_secret("pub", b"p", tier="open")
    before = len(audit_records(tree))
    holder = _stopped_holder(_log(tree))
    getter = subprocess.Popen([str(tree.libexec / "broker"), "get", "pub"], env=tree.env(True),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        getter.send_signal(signal.SIGTERM)
        time.sleep(0.1)
    finally:
        holder.kill()
        holder.wait()
    out, _ = getter.communicate(timeout=30)
    assert getter.returncode == -signal.SIGTERM and out == b""  # killed after the record, before the value
    assert [r["event"] for r in audit_records(tree)[before:]] == ["get"]
    assert tree.run("audit", "verify").returncode == 0


# -- limits ---------------------------------------------------------------------------------------

def test_a_soft_file_size_limit_is_lifted_to_the_hard_one(tree):
    import resource

    tree.set_secret("pub", b"p", tier="open")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (10, resource.RLIM_INFINITY))

    proc = subprocess.run([str(tree.libexec / "broker"), "get", "pub"], capture_output=True,
                          env=tree.env(True), preexec_fn=limit)
    assert proc.returncode == 0 and proc.stdout == b"p", proc.stderr


def test_too_few_open_files_is_refused_before_anything_is_done(tree):
    import resource

    size = _log(tree).stat().st_size

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (8, 8))

    proc = subprocess.run([str(tree.libexec / "broker"), "get", "pub"], capture_output=True,
                          env=tree.env(True), preexec_fn=limit)
    lifts = [sys.executable, "-c", "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))"]
    if subprocess.run(lifts, preexec_fn=limit, capture_output=True).returncode == 0:
        assert proc.returncode == 4, proc.stderr  # root with CAP_SYS_RESOURCE lifts it: also fine
        return
    assert "open-files limit" in one_line_error(proc, 6)
    assert _log(tree).stat().st_size == size



def test_a_soft_open_files_limit_below_the_floor_is_lifted(tree):
    import resource

    tree.set_secret("pub", b"p", tier="open")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (12, hard))

    proc = subprocess.run([str(tree.libexec / "broker"), "get", "pub"], capture_output=True,
                          env=tree.env(True), preexec_fn=limit)
    assert proc.returncode == 0 and proc.stdout == b"p", proc.stderr


@pytest.mark.parametrize("lower", [["nice", "-n", "5"], ["chrt", "-i", "0"]])
def test_a_lowered_priority_is_refused_before_anything_is_done(tree, lower):
    """Starved by the caller's own busy processes, an owner-side program would hold totp.lock for as
    long as the caller liked; only root can raise a priority back (and does: elevate)."""
    tree.set_secret("pub", b"p", tier="open")
    size = _log(tree).stat().st_size
    proc = subprocess.run([*lower, str(tree.libexec / "broker"), "get", "pub"], capture_output=True, env=tree.env(True))
    if os.geteuid() == 0:
        assert proc.returncode == 0 and proc.stdout == b"p", proc.stderr  # root raises it back
        return
    assert "lowered priority" in one_line_error(proc, 6)
    assert _log(tree).stat().st_size == size


LIMITS_HEAD = "Limit                     Soft Limit           Hard Limit           Units     \n"
SANE = {"Max cpu time": "unlimited", "Max file size": "unlimited", "Max data size": "unlimited",
        "Max core file size": "0", "Max open files": "1024", "Max address space": "unlimited",
        "Max processes": "unlimited"}


def _limits_file(tmp_path, **soft):
    values = dict(SANE, **{label.replace("_", " "): value for label, value in soft.items()})
    path = tmp_path / "limits"
    path.write_text(LIMITS_HEAD + "".join(f"{label:<26}{value:<21}{'unlimited':<21}units     \n"
                                          for label, value in values.items()))
    return str(path)


@pytest.mark.parametrize("soft, sane", [
    ({}, True), ({"Max_open_files": "unlimited"}, True), ({"Max_open_files": "64"}, True),
    ({"Max_file_size": "10"}, False), ({"Max_file_size": "0"}, False), ({"Max_open_files": "63"}, False),
    ({"Max_open_files": "8"}, False), ({"Max_cpu_time": "5"}, False), ({"Max_address_space": "400000000"}, False),
    ({"Max_data_size": "400000000"}, False), ({"Max_core_file_size": "unlimited"}, False),
    ({"Max_core_file_size": "4096"}, False), ({"Max_processes": "2"}, False),
    ({"Max_processes": "100000"}, False)])  # a process limit below its hard one is lifted to it
def test_proc_limits_skip_the_lifting_only_when_every_limit_is_already_sane(tmp_path, soft, sane):
    assert guard._limits_already_sane(_limits_file(tmp_path, **soft)) is sane


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the program's limits in /proc")
def test_an_owner_side_program_runs_with_core_files_off(tree):
    """A core file would hold what the owner's side had read; the caller's core limit is not ours."""
    import resource

    tree.set_secret("k", b"v", tier="controlled")

    def core_on():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    proc = subprocess.Popen([str(tree.libexec / "approve"), "k"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=tree.env(True), preexec_fn=core_on)
    try:
        deadline = time.time() + 10  # until it waits for the code on stdin
        while time.time() < deadline and "pipe" not in open(f"/proc/{proc.pid}/wchan").read():
            time.sleep(0.02)
        core = next(line for line in open(f"/proc/{proc.pid}/limits") if line.startswith("Max core file size"))
        assert core.split()[4] == "0", core
    finally:
        proc.communicate(b"\n", timeout=30)


def test_without_a_readable_proc_limits_file_the_limits_are_checked_through_resource(tmp_path):
    (tmp_path / "garbled").write_text("Max file size  lots\n")
    assert guard._limits_already_sane(str(tmp_path / "none")) is False
    assert guard._limits_already_sane(str(tmp_path / "garbled")) is False

# -- the gate counts a guess before it checks it ------------------------------------------------------

@pytest.mark.parametrize("right", [False, True])
def test_the_gate_writes_the_count_before_it_checks_the_code_and_takes_it_back_on_success(tree, monkeypatch, right):
    """What totp.json says at the instant the code is compared: the guess already counted."""
    from coretools import context
    from clawgate import gate, totp

    tree.set_secret("k", b"v")
    ctx = context(tree, "agent")
    seen = []
    real_match = totp.match_step

    def spying_match(*args, **kw):
        seen.append(json.loads((tree.state / "totp.json").read_bytes())["failures"])
        return real_match(*args, **kw)

    monkeypatch.setattr(totp, "match_step", spying_match)
    now = time.time()
    code = tree.code() if right else wrong_code_at(tree.seed, now)
    try:
        gate.check(ctx, code, purpose="k", now=now)
    except Exception as err:  # noqa: BLE001 - the denial is the point when the code is wrong
        assert not right and err.code == 1
    assert seen[0] == 1  # counted, durably, before the comparison
    after = json.loads((tree.state / "totp.json").read_bytes())["failures"]
    assert after == (0 if right else 1)
    denials = [r for r in audit_records(tree) if r["event"] == "code" and r["result"] == "denied"]
    assert len(denials) == after


def test_the_code_is_spent_before_the_grant_is_written_so_a_kill_between_leaves_no_reusable_code(tree, monkeypatch):
    """A SIGKILL between two of the gate's writes cannot be deferred: whatever stops the gate after
    the first write must leave the code spent, never a grant whose code would work again."""
    from coretools import context, grant_path
    from clawgate import gate, grants

    tree.set_secret("k", b"v")
    ctx = context(tree, "agent")

    def killed(*args, **kw):
        raise SystemExit(137)  # stands for the kill: nothing after this write runs

    monkeypatch.setattr(grants, "write", killed)
    code, now = tree.code(), time.time()
    grant = grants.Grant("k", "restricted", now, now + 60, "agent")
    with pytest.raises(SystemExit):
        gate.check(ctx, code, purpose="k", now=now, grant=grant)
    monkeypatch.undo()
    assert not os.path.exists(grant_path(tree, "k"))
    with pytest.raises(Exception) as reused:  # the same code again: spent
        gate.check(ctx, code, purpose="k", now=now, grant=grant)
    assert reused.value.code == 1


# -- each action and its record: both or neither -------------------------------------------------

def _refusing_log(tree):
    """The audit log refuses every append (the owner's file, but mode 0644): as a full disk would."""
    (tree.state / "audit.log").chmod(0o644)


def test_approve_whose_record_cannot_be_written_leaves_no_grant(tree):
    from coretools import grant_path

    tree.set_secret("k", b"v")
    _refusing_log(tree)
    result = tree.as_agent("approve", "k", tree.code())
    (tree.state / "audit.log").chmod(0o600)
    assert result.returncode == 6 and b"Traceback" not in result.stderr, result.stderr
    assert not os.path.exists(grant_path(tree, "k"))
    assert tree.as_agent("broker", "get", "k").returncode == 3


def test_secrets_set_whose_record_cannot_be_written_stores_nothing(tree):
    tree.set_secret("old", b"before", tier="controlled")
    _refusing_log(tree)
    new = tree.run("secrets", "set", "new", "--tier", "open", input=b"v")
    changed = tree.run("secrets", "set", "old", "--tier", "open", "--force", input=b"after")
    (tree.state / "audit.log").chmod(0o600)
    assert new.returncode == 6 and changed.returncode == 6
    assert tree.run("broker", "get", "new").returncode == 4
    assert (tree.state / "secrets" / "old").read_bytes() == b"before"
    assert (tree.state / "tiers" / "old").read_bytes() == b"controlled\n"
    assert not (tree.state / "tiers" / "new").exists()


def test_unlock_whose_record_cannot_be_written_clears_nothing(tree):
    tree.set_secret("k", b"v")
    tree.as_agent("approve", "k", wrong_code_at(tree.seed, time.time()))
    _refusing_log(tree)
    result = tree.run("totp-validate", "--unlock")
    (tree.state / "audit.log").chmod(0o600)
    assert result.returncode == 6 and b"cleared" not in result.stdout
    assert json.loads((tree.state / "totp.json").read_bytes())["failures"] == 1
