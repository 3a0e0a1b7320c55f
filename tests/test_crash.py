"""Invariant 8 (crash side): a process killed with SIGKILL in the middle of writing a grant, the
TOTP state or a secret leaves the old value or the new one, never a torn file.

A forked child rewrites one record in a loop through the real writer (grants.write,
gate's state save, the file store's put), alternating two large values; the parent kills it
at a random moment, many times, and reads the record back through the real reader.
"""

import json
import os
import random
import signal
import time

import pytest

from coretools import context
from clawgate import fsio, gate, grants, lockout
from clawgate.store import FileStore

KILLS = 40
BIG = 3 << 20  # 3 MiB: a write takes long enough to be caught in the middle


def _writers(tree):
    """name -> (write(i), read(), the two values written alternately)."""
    cfg, ctx = tree.config(), context(tree, "owner")
    store = FileStore(cfg)
    now = time.time()
    grant_values = [grants.Grant("k", "restricted", now, now + 600, caller * BIG)
                    for caller in ("a", "b")]
    gate_values = [gate.GateState(step, lockout.State(step, float(step), 0.0)) for step in (10 ** 9, 2 * 10 ** 9)]
    secret_values = [b"\x00" * BIG, b"\xff" * (BIG + 4096)]

    def read_grant():
        raw = fsio.read_checked(grants._path(cfg, "k"), cfg.owner.uid)
        return grants._parse(raw, "k")  # a torn record would not even parse: None

    return {
        "grant": (lambda i: grants.write(cfg, grant_values[i % 2]), read_grant, grant_values),
        "totp-state": (lambda i: gate._save_state(ctx, gate_values[i % 2]), lambda: gate.load_state(ctx),
                       gate_values),
        "secret": (lambda i: store.put("k", secret_values[i % 2]), lambda: store.get("k"), secret_values),
    }


def _loop_in_child(write):
    pid = os.fork()
    if pid == 0:  # the child: rewrite forever until killed
        try:
            i = 1
            while True:
                write(i)
                i += 1
        finally:
            os._exit(0)
    return pid


@pytest.mark.parametrize("record", ["grant", "totp-state", "secret"])
def test_sigkill_mid_write_leaves_old_or_new_never_torn(tree, record):
    write, read, values = _writers(tree)[record]
    rng = random.Random(record)
    write(0)
    seen = set()
    for _ in range(KILLS):
        pid = _loop_in_child(write)
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        got = read()
        assert got in values, f"torn {record}: {len(repr(got))} chars"
        seen.add(values.index(got))
    assert seen == {0, 1}  # the kills really landed at different points of the loop


def test_leftover_temp_files_are_never_taken_for_records(tree):
    write, read, values = _writers(tree)["grant"]
    secret_write, _, _ = _writers(tree)["secret"]
    write(0)
    secret_write(0)  # there whatever the kills catch: a busy machine may kill every child before its first write
    for fn in (write, secret_write):
        for _ in range(10):
            pid = _loop_in_child(fn)
            time.sleep(0.02)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    cfg = tree.config()
    assert grants.all_names(cfg) == ["k"]
    assert FileStore(cfg).names() == ["k"]
    result = tree.as_agent("broker", "list", "--json")
    assert [row["name"] for row in json.loads(result.stdout)] == ["k"]
