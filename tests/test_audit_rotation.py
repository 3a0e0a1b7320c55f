"""The audit log for years: rotated by size under the append lock, `keep` rotated files kept, the
chain running on across files. `audit verify` checks every kept file in order, says where the kept
history starts, and names a file removed from the middle, two files reordered, an edit; a rotation
killed at any of its steps loses nothing and leaves a log that verifies."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installtree import REPO, Tree
from clawgate import audit

SIZE, KEEP = 4096, 3
ROTATE = (SIZE, KEEP)


def fill(path: Path, count: int, start: int = 0) -> None:
    uid = os.geteuid()
    for i in range(start, start + count):
        audit.append_many(str(path), uid, [("get", [("name", f"n{i}"), ("pad", "x" * 100)])], time.time(), ROTATE)


def names_in(path: Path) -> "list[str]":
    found = []
    for full in audit.kept_files(str(path)):
        found += [json.loads(line).get("name") for line in Path(full).read_bytes().splitlines()]
    return [name for name in found if name]


def seqs_in(path: Path) -> "list[int]":
    return [json.loads(line)["seq"] for full in audit.kept_files(str(path)) for line in Path(full).read_bytes().splitlines()]


@pytest.fixture
def log(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state / "audit.log"


def test_the_log_rotates_by_size_keeps_keep_files_and_the_chain_runs_on(log):
    fill(log, 200)
    rotated = audit.rotated_files(str(log))
    assert len(rotated) == KEEP and all(os.path.getsize(f) >= SIZE for f in rotated)
    assert os.path.getsize(log) < SIZE + 200
    seqs = seqs_in(log)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one sequence across files
    firsts = [json.loads(Path(f).read_bytes().splitlines()[0]) for f in rotated[1:] + [str(log)]]
    assert all(r["event"] == "rotate" for r in firsts)
    found = audit.verify_log(str(log), os.geteuid())
    assert found.problems == [] and found.records == len(seqs)
    assert found.start.startswith(f"seq {seqs[0]} ") and "rotated out" in found.start
    assert names_in(log)[-1] == "n199"  # nothing but the oldest files went


def test_a_file_removed_from_the_middle_is_named_with_the_records_it_held(log):
    fill(log, 200)
    first, middle, last = audit.rotated_files(str(log))
    begins = int(middle.rsplit(".", 1)[1])
    os.unlink(middle)
    found = audit.verify_log(str(log), os.geteuid())
    assert len(found.problems) == 1, found.problems
    name, problem = found.problems[0]
    assert name == os.path.basename(last) and problem.line == 1
    assert f"records {begins}-" in problem.reason and "removed from the middle" in problem.reason


def test_reordered_files_and_an_edit_in_a_rotated_file_are_named(log):
    fill(log, 200)
    first, middle, last = audit.rotated_files(str(log))
    a, b = Path(middle).read_bytes(), Path(last).read_bytes()
    Path(middle).write_bytes(b)
    Path(last).write_bytes(a)
    reasons = [p.reason for _, p in audit.verify_log(str(log), os.geteuid()).problems]
    assert any("renamed or reordered" in r for r in reasons), reasons
    Path(middle).write_bytes(a)
    Path(last).write_bytes(b)
    assert audit.verify_log(str(log), os.geteuid()).problems == []
    lines = a.splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"name":"n', b'"name":"N', 1)
    Path(middle).write_bytes(b"".join(lines))
    problems = audit.verify_log(str(log), os.geteuid()).problems
    assert [(n, p.line) for n, p in problems] == [(os.path.basename(middle), 4)], problems


def test_an_append_that_waited_on_a_rotated_file_writes_to_the_new_one(log):
    """Opened before a rotation renamed the log, locked after it: it must not append to the old file."""
    import fcntl

    fill(log, 5)
    holder = os.open(log, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a rotation in progress holds the lock
    code = (f"import sys, os, time; sys.path.insert(0, {str(REPO / 'lib')!r}); from clawgate import audit; "
            f"audit.append_many({str(log)!r}, os.geteuid(), [('get', [('name', 'fresh')])], time.time(), (4096, 3))")
    waiter = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.5)  # it has opened audit.log and waits for the lock
    os.rename(log, str(log) + ".000000000001")
    log.write_bytes(b"")
    os.chmod(log, 0o600)
    fcntl.flock(holder, fcntl.LOCK_UN)
    os.close(holder)
    assert waiter.wait(timeout=20) == 0
    assert b"fresh" in log.read_bytes() and b"fresh" not in Path(str(log) + ".000000000001").read_bytes()


# -- killed at each step of a rotation -------------------------------------------------------------

KILLER = r"""
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from clawgate import audit, fsio
path, step = sys.argv[2], sys.argv[3]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
real_unlink = os.unlink
def unlink_once(*a, **k):
    real_unlink(*a, **k)
    die()
if step == "written":          # after step 1: audit.log.next whole, nothing else done
    os.link = die
elif step == "linked":         # after step 2: audit.log also under its rotated name
    os.rename = die
elif step == "renamed":        # after step 3: the new audit.log in place, nothing pruned
    fsio.fsync_dir = die
elif step == "pruning":        # during step 4: one old file removed of several
    os.unlink = unlink_once
elif step == "writing":        # during step 1: audit.log.next half written
    real_write = os.write
    def half(fd, data):
        if b'"event":"rotate"' in bytes(data):
            real_write(fd, bytes(data)[:20])
            die()
        return real_write(fd, data)
    os.write = half
for i in range(int(sys.argv[4])):
    audit.append_many(path, os.geteuid(), [("get", [("name", f"k{i}"), ("pad", "x" * 100)])], time.time(), (4096, 3))
"""


@pytest.mark.parametrize("step", ["writing", "written", "linked", "renamed", "pruning"])
def test_a_rotation_killed_at_any_step_loses_nothing_and_verifies(log, step):
    fill(log, 100 if step != "pruning" else 150)
    before = names_in(log)
    # Appends until one rotates; that rotation is killed at `step`.
    done = subprocess.run([sys.executable, "-c", KILLER, str(REPO / "lib"), str(log), step, "60"])
    assert done.returncode == -signal.SIGKILL, done
    now = names_in(log)
    written = [n for n in now if n.startswith("k")]
    assert written == [f"k{i}" for i in range(len(written))], "the killed run wrote its records before rotating"
    kept = now[:-len(written)]
    assert now[-len(written):] == written and kept == before[len(before) - len(kept):]
    assert kept == before or step == "pruning"  # only retention removes records
    found = audit.verify_log(str(log), os.geteuid())
    assert found.problems == [], found.problems
    fill(log, 60, start=1000)  # the next appends finish (or redo) the rotation
    found = audit.verify_log(str(log), os.geteuid())
    assert found.problems == [], (step, found.problems)
    seqs = seqs_in(log)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert names_in(log)[-1] == "n1059" and len(audit.rotated_files(str(log))) == KEEP
    assert not os.path.exists(str(log) + audit.NEXT) or step == "writing"


# -- through the programs ------------------------------------------------------------------------

@pytest.fixture
def rotating(tmp_path):
    tree = Tree(tmp_path, extra_config=f"[audit]\nrotate_size = 4K\nkeep = {KEEP}\n")
    tree.enroll_seed()
    tree.set_secret("pub", b"p", tier="open")
    for _ in range(60):
        assert tree.as_agent("broker", "get", "pub").returncode == 0
    return tree


def test_audit_verify_and_show_read_every_kept_file(rotating):
    log = rotating.state / "audit.log"
    assert len(audit.rotated_files(str(log))) == KEEP
    result = rotating.run("audit", "verify")
    out = result.stdout.decode()
    assert result.returncode == 0 and "intact" in out and "kept history starts at seq" in out, out
    shown = rotating.run("audit", "show", "--event", "rotate").stdout.decode().splitlines()
    assert len(shown) == KEEP and all(" rotate " in line for line in shown), shown
    everything = rotating.run("audit", "show").stdout.decode().splitlines()
    assert len(everything) == len(seqs_in(log))
    later = rotating.run("audit", "show", "--since", "2999-01-01").stdout
    assert later == b""
    recent = rotating.run("audit", "show", "--since", "1h", "--until", "2999-01-01", "--event", "get,rotate").stdout
    assert len(recent.splitlines()) == len([s for s in everything if " get " in s or " rotate " in s])
    bad = rotating.run("audit", "show", "--since", "yesterday")
    assert bad.returncode == 2 and b"how long ago" in bad.stderr
    for typo in ("2026-13-01", "2026-02-30", "2026-12-06T25:00"):  # a date that is none: said, not an empty answer
        wrong = rotating.run("audit", "show", "--since", typo)
        assert wrong.returncode == 2 and b"not a date and time" in wrong.stderr, typo


def test_verify_names_a_removed_middle_file(rotating):
    log = rotating.state / "audit.log"
    os.unlink(audit.rotated_files(str(log))[1])
    result = rotating.run("audit", "verify")
    assert result.returncode == 1 and b"removed from the middle" in result.stdout, result.stdout


@pytest.mark.parametrize("text", ["rotate_size = 100", "rotate_size = ten", "keep = 0", "keep = x"])
def test_a_bad_audit_section_is_refused(tmp_path, text):
    tree = Tree(tmp_path, extra_config=f"[audit]\n{text}\n")
    result = tree.run("audit", "verify")
    assert result.returncode == 6 and b"[audit]" in result.stderr, result.stderr


# -- on a real install, the agent flooding through the real sudo -----------------------------------

@pytest.mark.root
def test_an_agent_flooding_the_log_through_sudo_loses_the_owner_nothing_but_the_documented_retention():
    """The agent makes records as fast as it can: the log rotates under the real sudo, every file
    stays the owner's 0600, `keep` full rotated files remain, verify is green and says where the
    kept history starts; a rotated file the owner removes from the middle is named."""
    from rootenv import RootEnv

    with RootEnv() as env:
        env.enroll_seed()
        env.set_secret("pub", b"p", tier="open")
        env.config_path.write_text(env.config_path.read_text() + f"\n[audit]\nrotate_size = 4K\nkeep = {KEEP}\n")
        sudo = f"/usr/bin/sudo -n -u {env.owner_name} {env.libexec / 'broker'} get pub >/dev/null"
        flood = env.run_as(env.agent_name, "/bin/sh", "-c", f"i=0; while [ $i -lt 150 ]; do {sudo} || exit 1; i=$((i+1)); done",
                           timeout=300)
        assert flood.returncode == 0, flood.stderr
        log = env.state / "audit.log"
        rotated = audit.rotated_files(str(log))
        owner_uid = int(subprocess.check_output(["id", "-u", env.owner_name]))
        assert len(rotated) == KEEP and all(os.path.getsize(f) >= SIZE for f in rotated)
        for path in rotated + [str(log)]:
            st = os.stat(path)
            assert (st.st_uid, st.st_mode & 0o777) == (owner_uid, 0o600), path
        verified = env.owner("audit", "verify")
        out = verified.stdout.decode()
        assert verified.returncode == 0 and "kept history starts at seq" in out and "rotated out" in out, out
        assert env.agent("audit", "verify").returncode == 1  # owner only
        shown = env.owner("audit", "show", "--event", "get").stdout.decode().splitlines()
        assert len(shown) >= KEEP * SIZE // 200  # at least `keep` full files of the agent's gets
        os.unlink(rotated[1])
        broken = env.owner("audit", "verify")
        assert broken.returncode == 1 and b"removed from the middle" in broken.stdout, broken.stdout


def test_files_verified_apart_in_parallel_say_exactly_what_one_process_says(log, monkeypatch):
    """Big logs are verified a file per worker (each from the start its rotate record states):
    intact, a removed middle file, an edit: the same records, problems and start as in order."""
    fill(log, 300)
    uid = os.geteuid()

    def both():
        monkeypatch.setattr(audit, "PARALLEL_BYTES", 1 << 40)
        alone = audit.verify_log(str(log), uid)
        monkeypatch.setattr(audit, "PARALLEL_BYTES", 0)
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        assert audit._verify_apart(audit.kept_files(str(log)), uid)  # the workers did run
        return alone, audit.verify_log(str(log), uid)

    alone, apart = both()
    assert alone == apart and alone.problems == []
    rotated = audit.rotated_files(str(log))
    lines = Path(rotated[2]).read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"name":"n', b'"name":"N', 1)
    Path(rotated[2]).write_bytes(b"".join(lines))
    os.unlink(rotated[1])
    alone, apart = both()
    assert alone == apart and len(alone.problems) == 2, alone.problems


def test_a_rotation_that_cannot_finish_leaves_the_records_written_and_is_tried_again(log, monkeypatch):
    """A full disk at step 1: the append that triggered it still succeeds (its action stands, its
    records are in the log); the next append rotates."""
    fill(log, 20)
    real_open = os.open

    def full_disk(path, *args, **kw):
        if str(path).endswith(audit.NEXT):
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", full_disk)
    before = len(audit.rotated_files(str(log)))
    fill(log, 40, start=100)
    assert len(audit.rotated_files(str(log))) == before and "n139" in names_in(log)
    monkeypatch.setattr(os, "open", real_open)
    fill(log, 1, start=200)
    assert len(audit.rotated_files(str(log))) == before + 1
    assert audit.verify_log(str(log), os.geteuid()).problems == []


def test_doctor_checks_the_current_file_of_a_rotated_log_from_its_stated_start(rotating):
    """Doctor's bounded check reads audit.log alone: after a rotation it begins at a rotate record,
    which is no FAIL; an edit in it is. The rotated files are `audit verify`'s."""
    log = rotating.state / "audit.log"
    lines = rotating.run("doctor").stdout.decode().splitlines()
    assert any(line.startswith("ok    audit log: audit.log's hash chain intact") for line in lines), lines
    os.unlink(audit.rotated_files(str(log))[1])
    lines = rotating.run("doctor").stdout.decode().splitlines()
    assert any(line.startswith("ok    audit log: ") for line in lines), lines  # audit verify names it
    edited = log.read_bytes().replace(b'"name":"pub"', b'"name":"PUB"', 1)
    log.write_bytes(edited)
    lines = rotating.run("doctor").stdout.decode().splitlines()
    assert any(line.startswith("FAIL  audit log: ") and "audit.log line" in line for line in lines), lines
