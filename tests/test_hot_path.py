"""The hot path stays lean, and what made it lean keeps clawgate's guarantees.

No timing here (speed is `make bench`'s job): these pin down the structure. A `get` must not
import the modules that would double its cost; `resolve` writes its audit records in one
batch, before any value leaves; the broker's quick exit loses no output and no exit code.
"""

import json
import os
import subprocess
import sys

import pytest

from clawgate import audit
from coretools import context, resolve_decisions

HEAVY = {"typing", "re", "json", "configparser", "argparse", "hashlib", "enum", "collections", "contextlib",
         "functools", "hmac", "base64", "secrets", "urllib"}


def _usual_limits():
    """A login's usual limits (core files off), whatever the test runner was started with."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


def imported(tree, *args, input=b""):
    """The modules a broker run imports, from python -X importtime."""
    result = subprocess.run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                             "-IS", "-X", "importtime", str(tree.libexec / "broker"), *args],
                            input=input, capture_output=True, env=tree.env(as_agent=True), preexec_fn=_usual_limits)
    lines = result.stderr.decode().splitlines()
    modules = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    return result, modules


@pytest.fixture
def granted(tree):
    tree.set_secret("api/key", b"v-a-l-u-e", tier="controlled")
    tree.set_secret("open/one", b"open", tier="open")
    approved = tree.as_agent("approve", "api/key", tree.code())
    assert approved.returncode == 0, approved.stderr
    return tree


def test_get_imports_none_of_the_heavy_modules(granted):
    result, modules = imported(granted, "get", "api/key")
    assert result.returncode == 0 and result.stdout == b"v-a-l-u-e"
    assert "clawgate.grants" in modules  # the grant was read, without json
    assert not HEAVY & modules, sorted(HEAVY & modules)


@pytest.mark.skipif(not os.path.exists("/proc/self/limits"), reason="Linux's /proc/self/limits is what spares resource")
def test_a_served_get_loads_neither_resource_nor_the_text_escaper(granted):
    """resource is the one extension module a `get` would load from disk: with /proc saying the
    limits are sane it is never imported; display is only for something to say."""
    result, modules = imported(granted, "get", "api/key")
    assert result.returncode == 0 and result.stdout == b"v-a-l-u-e"
    assert not {"resource", "clawgate.display"} & modules, sorted({"resource", "clawgate.display"} & modules)


def test_a_refused_get_imports_none_of_them_either(granted):
    granted.as_agent("revoke", "api/key")
    result, modules = imported(granted, "get", "api/key")
    assert result.returncode == 3
    assert not HEAVY & modules, sorted(HEAVY & modules)


# What `import json` brings with it. Only the programs that speak JSON pay for it (issue 14: no
# private json internals on the hot path); `get` and a plain `list` never import it.
JSON_AND_WHAT_IT_IMPORTS = {"json", "re", "enum", "functools", "collections"}


@pytest.mark.parametrize("args, speaks_json", [(["list"], False), (["list", "--json"], True), (["resolve"], True)])
def test_list_and_resolve_import_none_of_them(granted, args, speaks_json):
    request = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ["api/key", "nope"]}).encode()
    result, modules = imported(granted, *args, input=request)
    assert result.returncode == 0, result.stderr
    forbidden = HEAVY - JSON_AND_WHAT_IT_IMPORTS if speaks_json else HEAVY
    assert not forbidden & modules, sorted(forbidden & modules)


# -- the quick exit ------------------------------------------------------------------------------

def test_get_into_a_closed_pipe_exits_141_not_denied_without_a_traceback(granted):
    """Our reader left: exit 141 as a shell reports a writer killed by SIGPIPE, never 1 (denied)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([str(granted.libexec / "broker"), "get", "open/one"], stdout=write_end,
                                stderr=subprocess.PIPE, env=granted.env(as_agent=True))
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert b"Traceback" not in result.stderr and b"Exception" not in result.stderr


def test_every_byte_of_a_large_value_is_flushed_before_the_quick_exit(tree):
    value = os.urandom(1 << 20)  # the store's maximum: far more than one pipe buffer
    tree.set_secret("big", value, tier="open")
    result = tree.as_agent("broker", "get", "big")
    assert result.returncode == 0 and result.stdout == value


# -- audit batches -------------------------------------------------------------------------------

def _records(tree):
    lines = (tree.state / "audit.log").read_bytes().splitlines()
    count, problems = audit.verify_lines(lines)
    assert problems == [], problems
    return [audit.fields_of(line) for line in lines]


def test_append_many_chains_its_records_after_the_existing_ones(tree):
    path, uid = str(tree.state / "audit.log"), os.geteuid()
    before = _records(tree)
    audit.append_many(path, uid, [("get", [("name", f"n{i}"), ("result", "ok")]) for i in range(300)], 1.0e9)
    audit.append_many(path, uid, [], 1.0e9)  # nothing to write: nothing written
    after = _records(tree)
    assert len(after) == len(before) + 300
    assert [r["seq"] for r in after] == list(range(1, len(after) + 1))
    assert [r["name"] for r in after[len(before):]] == [f"n{i}" for i in range(300)]


def test_an_audit_batch_writes_at_its_end_even_when_the_block_fails(tree):
    ctx = context(tree, "agent")
    before = len(_records(tree))
    with pytest.raises(KeyError):
        with ctx.audit_batch():
            ctx.audit("get", name="a", result="ok")
            ctx.audit("get", name="b", result="denied")
            assert len(_records(tree)) == before  # held until the block ends
            raise KeyError("boom")
    records = _records(tree)[before:]
    assert [(r["name"], r["result"], r["caller"]) for r in records] == [
        ("a", "ok", tree.agent), ("b", "denied", tree.agent)]
    ctx.audit("get", name="c", result="ok")  # after the block: straight to the log again
    assert _records(tree)[-1]["name"] == "c"


def test_audit_batches_do_not_nest(tree):
    ctx = context(tree, "agent")
    with ctx.audit_batch():
        with pytest.raises(RuntimeError):
            with ctx.audit_batch():
                pass


def test_resolve_audits_every_id_once_in_one_record(granted):
    ids = ["api/key", "open/one", "nope", "../x", "api/key"]
    before = len(_records(granted))
    request = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ids}).encode()
    result = granted.as_agent("broker", "resolve", input=request)
    assert result.returncode == 0, result.stderr
    records = _records(granted)[before:]
    assert len(records) == 1 and resolve_decisions(records) == [
        ("api/key", "ok"), ("open/one", "ok"), ("nope", "missing"), ("../x", "denied")]


def test_resolve_releases_no_value_when_its_audit_records_cannot_be_written(granted):
    log = granted.state / "audit.log"
    log.chmod(0o644)  # the audit log refuses to be appended to: unsafe
    try:
        request = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ["open/one", "api/key"]}).encode()
        result = granted.as_agent("broker", "resolve", input=request)
    finally:
        log.chmod(0o600)
    assert result.returncode == 6
    assert result.stdout == b""
    assert b"open" not in result.stdout and b"v-a-l-u-e" not in result.stderr
