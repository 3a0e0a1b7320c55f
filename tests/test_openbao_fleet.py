"""Two hosts on one OpenBao prefix (invariant 17), as two staged installs sharing one dev server.

A secret and its tier set on one are served on the other; one code works once across both, even
with 20 approvals racing; wrong codes from both count toward one lockout; the tier record (with
its use-only mark) is the same text on both. The root suite (test_openbao_root.py) repeats the
race through install.sh, real users and sudo.
"""

import concurrent.futures
import os
import pwd
import time

import pytest

import coretools
from baoserver import DevServer
from installtree import Tree, wrong_code
from clawgate import gate, grants, lockout
from clawgate.errors import ClawgateError
from clawgate.store import open_store


@pytest.fixture(scope="module")
def bao_dev(tmp_path_factory):
    server = DevServer(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


@pytest.fixture
def hosts(bao_dev, tmp_path):
    owner = bao_dev.owner(f"clawgate/{tmp_path.name}")
    pair = []
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        tree = Tree(tmp_path / label, store="openbao", extra_config=owner.config())
        owner.give(tree.state)
        assert tree.run("secrets", "init").returncode == 0
        pair.append(tree)
    pair[0].enroll_seed()
    pair[1].seed, pair[1].last_step = pair[0].seed, pair[0].last_step  # one authenticator entry
    return pair


def grants_on(tree: Tree) -> "list[str]":
    directory = tree.state / "grants"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_a_secret_and_its_tier_set_on_one_host_serve_on_the_other(hosts):
    a, b = hosts
    a.set_secret("shared/key", b"one value for the fleet", tier="open")
    got = b.as_agent("broker", "get", "shared/key")
    assert (got.returncode, got.stdout) == (0, b"one value for the fleet"), got.stderr
    assert a.run("secrets", "tier", "shared/key", "restricted").returncode == 0
    assert b.as_agent("broker", "get", "shared/key").returncode == 3  # the tier moved for both hosts
    assert not (a.state / "tiers").exists() or not any((a.state / "tiers").iterdir())


def test_the_tier_record_with_its_use_only_mark_is_one_record(hosts):
    a, b = hosts
    a.set_secret("api/token", b"v")
    open_store(a.config()).save_tier("api/token", b"controlled use-only\n")
    assert open_store(b.config()).load_tier("api/token") == b"controlled use-only\n"


def test_a_use_only_mark_set_on_one_host_while_the_other_changes_the_tier_is_kept(hosts, monkeypatch):
    """Deterministic race: host b marks the secret use-only between host a's read of the tier
    record and its write of a new tier. Without check-and-set a's write drops b's mark."""
    from clawgate import tiers

    a, b = hosts
    a.set_secret("api/key", b"v", tier="controlled")
    store = open_store(a.config())
    real = store._read
    pending = [lambda: b.run("secrets", "use-only", "api/key")]
    others = []

    def read_then_let_the_other_host_in(*parts):
        found = real(*parts)
        if parts[0] == "tiers":
            while pending:
                others.append(pending.pop()())
        return found

    monkeypatch.setattr(store, "_read", read_then_let_the_other_host_in)
    tiers.set(a.config(), "api/key", tier="open")
    assert others[0].returncode == 0, others[0].stderr
    assert tiers.read(b.config(), "api/key") == ("open", True)
    got = b.as_agent("broker", "get", "api/key")
    assert got.returncode != 0 and got.stdout == b"", got.stderr  # use-only: never served to the agent


def test_tier_changes_and_use_only_marks_racing_from_both_hosts_all_hold(hosts):
    """Each of 12 secrets gets a new tier from host a and the use-only mark from host b at the
    same moment (separate clients, as two hosts are): every secret ends with both."""
    import threading

    from clawgate import tiers

    a, b = hosts
    wanted = [f"race/k{i:02d}" for i in range(12)]
    for name in wanted:
        open_store(a.config()).put(name, b"v")
        tiers.set(a.config(), name, tier="controlled")
    start = threading.Barrier(2 * len(wanted))
    failures = []

    def change(tree: Tree, name: str, **what) -> None:
        try:
            start.wait()
            tiers.set(tree.config(), name, **what)
        except BaseException as err:  # noqa: BLE001 - reported by the assert below
            failures.append((name, err))

    workers = [threading.Thread(target=change, args=(a, name), kwargs={"tier": "open"}) for name in wanted]
    workers += [threading.Thread(target=change, args=(b, name), kwargs={"use_only": True}) for name in wanted]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    assert {name: tiers.read(a.config(), name) for name in wanted} == {name: ("open", True) for name in wanted}


def test_a_code_accepted_on_one_host_is_refused_on_the_other(hosts):
    a, b = hosts
    a.set_secret("db", b"pw", tier="controlled")
    code = a.code()
    assert a.as_agent("approve", "db", code).returncode == 0
    again = b.as_agent("approve", "db", code)
    assert again.returncode == 1 and b"code denied" in again.stderr
    assert grants_on(a) == ["db"] and grants_on(b) == []


def test_twenty_racing_approvals_across_both_hosts_give_one_grant(hosts):
    a, b = hosts
    a.set_secret("db", b"pw", tier="controlled")
    code = a.code()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: (a, b)[i % 2].as_agent("approve", "db", code), range(20)))
    codes = sorted(r.returncode for r in results)
    # Each replay is a counted wrong code: past the free ones the rest find the agent locked out.
    assert codes[0] == 0 and set(codes[1:]) <= {1, 5}, [r.stderr for r in results]
    assert len(grants_on(a)) + len(grants_on(b)) == 1


def test_wrong_codes_from_both_hosts_count_toward_one_lockout(hosts):
    a, b = hosts
    a.set_secret("db", b"pw", tier="controlled")
    right = [a.code()]
    wrong = wrong_code(right)
    for i in range(lockout.FREE_FAILURES + 1):
        got = (a, b)[i % 2].as_agent("approve", "db", wrong)
        assert got.returncode == 1, got.stderr
    for tree in (a, b):  # both see the one lockout: even the right code is not checked
        got = tree.as_agent("approve", "db", right[0])
        assert got.returncode == 5 and b"locked out" in got.stderr, got.stderr
    assert a.run("totp-validate", "--unlock").returncode == 0
    assert b.as_agent("approve", "db", right[0]).returncode == 0


def _between_read_and_write(monkeypatch, tree: Tree, act) -> None:
    """Run `act` (the other host) once, right after this host's next read of the gate record."""
    store = open_store(tree.config())
    real = store.load_gate
    pending = [act]

    def load_then_let_the_other_host_in():
        found = real()
        while pending:
            pending.pop()()
        return found

    monkeypatch.setattr(store, "load_gate", load_then_let_the_other_host_in)


def test_the_other_host_spending_the_code_between_our_read_and_write_wins(hosts, monkeypatch):
    """Deterministic race: without check-and-set both hosts would grant."""
    a, b = hosts
    a.set_secret("db", b"pw", tier="controlled")
    code = a.code()
    other = []
    _between_read_and_write(monkeypatch, a, lambda: other.append(b.as_agent("approve", "db", code)))
    owner_ctx = coretools.context(a, role="owner")
    with pytest.raises(ClawgateError) as caught:
        gate.check(owner_ctx, code, purpose="db", now=time.time(),
                   grant=grants.Grant("db", "controlled", time.time(), time.time() + 60, "owner"))
    assert other[0].returncode == 0, other[0].stderr
    assert caught.value.code == 1
    assert grants_on(a) == [] and grants_on(b) == ["db"]


def test_a_guess_counted_on_the_other_host_meanwhile_is_not_lost(hosts, monkeypatch):
    """Our count and theirs both land; our success takes back only ours, never theirs."""
    a, b = hosts
    a.set_secret("db", b"pw", tier="controlled")
    code = a.code()
    wrong = wrong_code([code])
    other = []
    _between_read_and_write(monkeypatch, a, lambda: other.append(b.as_agent("approve", "db", wrong)))
    agent_ctx = coretools.context(a, role="agent")
    gate.check(agent_ctx, code, purpose="db", now=time.time())
    assert other[0].returncode == 1
    assert gate.load_state(agent_ctx).lock.failures == 1


def _doctor_lines(tree: Tree) -> "list[str]":
    result = tree.run("doctor")
    return [line for line in result.stdout.decode().splitlines() if "openbao" in line]


def test_doctor_checks_reachable_unsealed_token_and_policy(hosts):
    a, _ = hosts
    lines = _doctor_lines(a)
    for what in ("openbao reachable", "openbao unsealed", "openbao token", "openbao policy"):
        assert any(line.startswith(f"ok    {what}:") for line in lines), lines
    assert not any(line.startswith(("FAIL", "warn")) for line in lines), lines


def test_doctor_fails_a_policy_too_narrow_and_warns_of_one_far_too_wide(bao_dev, tmp_path):
    for label, policy, expect in (
            ("narrow", 'path "secret/data/elsewhere/*" { capabilities = ["read"] }', "FAIL  openbao policy:"),
            ("wide", 'path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }',
             "warn  openbao policy breadth:")):
        owner = bao_dev.owner(f"clawgate/{tmp_path.name}-{label}", policy=policy)
        (tmp_path / label).mkdir()
        tree = Tree(tmp_path / label, store="openbao", extra_config=owner.config())
        owner.give(tree.state)
        lines = _doctor_lines(tree)
        assert any(line.startswith(expect) for line in lines), lines


def _setup_check(server, owner, given: str, tmp_path, kept: bool = False, mode: str = "install",
                 address: str = ""):
    """installcheck.py openbao-check as install.sh runs it (here as root checking for root's own uid:
    the owner is this process's user); the secret id it accepts lands in tmp_path/staged."""
    import subprocess
    import sys

    from installtree import REPO

    state, staged = tmp_path / "state", tmp_path / "staged"
    state.mkdir(exist_ok=True)
    staged.unlink(missing_ok=True)
    if kept:
        owner.give(state)
    else:
        (state / "openbao-secret-id").unlink(missing_ok=True)
    got = subprocess.run([sys.executable, "-I", str(REPO / "lib" / "clawgate" / "installcheck.py"), "openbao-check",
                          mode, pwd.getpwuid(os.geteuid()).pw_name, address or server.address, server.ca, owner.role_id,
                          "secret",
                          owner.prefix, str(state), str(staged)], input=given + "\n", capture_output=True, text=True,
                         timeout=30)
    got.staged = staged.read_text().strip() if staged.exists() else ""  # type: ignore[attr-defined]
    return got


def test_install_takes_a_secret_id_or_a_wrapped_one_once_and_checks_the_policy(bao_dev, tmp_path):
    import json
    import ssl
    import urllib.request

    owner = bao_dev.owner(f"clawgate/{tmp_path.name}")
    plain = _setup_check(bao_dev, owner, owner.secret_id, tmp_path)
    assert (plain.returncode, plain.staged) == (0, owner.secret_id), plain.stderr
    request = urllib.request.Request(f"{bao_dev.address}/v1/auth/approle/role/{owner.role}/secret-id", data=b"{}",
                                     method="POST", headers={"X-Vault-Token": bao_dev.token, "X-Vault-Wrap-TTL": "60s"})
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=bao_dev.ca)) as answer:
        wrapping_token = json.load(answer)["wrap_info"]["token"]
    dry = _setup_check(bao_dev, owner, wrapping_token, tmp_path, mode="dry-run")  # a dry run leaves it unspent
    assert dry.returncode == 0 and dry.staged == "" and "real run only" in dry.stdout, dry.stderr
    unwrapped = _setup_check(bao_dev, owner, wrapping_token, tmp_path)
    assert unwrapped.returncode == 0 and len(unwrapped.staged) == 36, unwrapped.stderr
    again = _setup_check(bao_dev, owner, wrapping_token, tmp_path)  # a wrapping token works once
    assert again.returncode == 6 and "did not unwrap" in again.stderr and again.staged == ""
    kept = _setup_check(bao_dev, owner, "", tmp_path, kept=True)  # a rerun: the kept one is checked, none staged
    assert kept.returncode == 0 and kept.staged == "" and "the one kept in" in kept.stdout, kept.stderr
    assert _setup_check(bao_dev, owner, "", tmp_path).returncode == 2
    narrow = bao_dev.owner(f"clawgate/{tmp_path.name}-n", policy='path "secret/data/x/*" { capabilities = ["read"] }')
    refused = _setup_check(bao_dev, narrow, narrow.secret_id, tmp_path)
    assert refused.returncode == 6 and "policy lacks" in refused.stderr and refused.staged == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("clawgate install: ")
    request = urllib.request.Request(f"{bao_dev.address}/v1/auth/approle/role/{narrow.role}/secret-id", data=b"{}",
                                     method="POST", headers={"X-Vault-Token": bao_dev.token, "X-Vault-Wrap-TTL": "60s"})
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=bao_dev.ca)) as answer:
        wrapping_token = json.load(answer)["wrap_info"]["token"]
    from proxykit import free_port

    unused = _setup_check(bao_dev, narrow, wrapping_token, tmp_path, address=f"https://127.0.0.1:{free_port()}")
    assert unused.returncode == 6 and "the wrapping token was not used: give the same one again" in unused.stderr
    spent = _setup_check(bao_dev, narrow, wrapping_token, tmp_path)  # refused after the unwrap: say it is spent
    assert spent.returncode == 6 and "policy lacks" in spent.stderr and spent.stderr.count("\n") == 1, spent.stderr
    assert "the wrapping token is now spent" in spent.stderr, spent.stderr
    destroy = spent.stderr.split("(bao write ", 1)[1].split(")", 1)[0]  # the command, as printed: it works
    path, _, argument = destroy.partition(" ")
    assert path == f"auth/approle/role/{narrow.role}/secret-id-accessor/destroy", destroy
    accessor = argument.split("secret_id_accessor=", 1)[1]
    assert bao_dev.api("POST", f"auth/approle/role/{narrow.role}/secret-id-accessor/lookup",
                       {"secret_id_accessor": accessor})["data"]["secret_id_accessor"] == accessor
    bao_dev.api("POST", path, {"secret_id_accessor": accessor})


def _file_host_moving_to(bao_dev, tmp_path, owner):
    """A host on the file store with secrets, tiers, a seed and a spent code; then its config
    switched to openbao, as rerunning install.sh --store openbao leaves it."""
    tree = Tree(tmp_path, store="file")
    tree.enroll_seed()
    tree.set_secret("db/password", b"file-value-1\x00", tier="open")
    tree.set_secret("api/token", b"file-value-2", tier="controlled")
    assert tree.owner_approve("api/token", tree.code()).returncode == 0
    text = tree.config_path.read_text().replace("store = file", "store = openbao") + owner.config()
    tree.config_path.write_text(text)
    owner.give(tree.state)
    return tree


def _local_leftovers(tree: Tree) -> "list[str]":
    kept = [p.name for sub in ("secrets", "tiers") for p in (tree.state / sub).iterdir()]
    return kept + [name for name in ("totp-seed", "totp.json") if (tree.state / name).exists()]


def test_migrate_moves_everything_reads_it_back_then_removes_it_here(bao_dev, tmp_path):
    owner = bao_dev.owner(f"clawgate/{tmp_path.name}")
    tree = _file_host_moving_to(bao_dev, tmp_path, owner)
    spent = tree.spent_code()
    moved = tree.run("secrets", "migrate", "--to", "openbao")
    assert moved.returncode == 0, moved.stderr
    assert b"moved 2 secrets and the TOTP seed" in moved.stdout
    assert _local_leftovers(tree) == []
    got = tree.as_agent("broker", "get", "db/password")
    assert (got.returncode, got.stdout) == (0, b"file-value-1\x00")
    assert tree.as_agent("broker", "get", "api/token").returncode == 0  # the local grant stays on the host
    assert tree.run("secrets", "tier", "api/token", "restricted").returncode == 0
    again = tree.owner_approve("api/token", spent)  # the once-only step came along
    assert again.returncode == 1, again.stderr
    assert tree.owner_approve("api/token", tree.code()).returncode == 0  # and the seed too


def test_migrate_is_all_or_nothing(bao_dev, tmp_path):
    owner = bao_dev.owner(f"clawgate/{tmp_path.name}")
    (tmp_path / "clash").mkdir()
    tree = _file_host_moving_to(bao_dev, tmp_path / "clash", owner)
    before = sorted(_local_leftovers(tree))
    other = open_store(tree.config())
    other.put("api/token", b"another host's value")
    clash = tree.run("secrets", "migrate", "--to", "openbao")
    assert clash.returncode == 2 and b"nothing was moved" in clash.stderr
    assert sorted(_local_leftovers(tree)) == before
    assert other.names() == ["api/token"]
    # A policy that takes the values but not the seed: what was written is removed again.
    narrow = bao_dev.owner(f"clawgate/{tmp_path.name}-n", policy=(
        f'path "secret/data/clawgate/{tmp_path.name}-n/secrets/*" {{ capabilities = ["create", "read", "update"] }}\n'
        f'path "secret/metadata/clawgate/{tmp_path.name}-n/*" {{ capabilities = ["read", "list", "delete"] }}\n'
        f'path "secret/data/clawgate/{tmp_path.name}-n/tiers/*" {{ capabilities = ["create", "read", "update"] }}\n'
        f'path "secret/data/clawgate/{tmp_path.name}-n/totp/*" {{ capabilities = ["read"] }}\n'))
    (tmp_path / "narrow").mkdir()
    tree = _file_host_moving_to(bao_dev, tmp_path / "narrow", narrow)
    before = sorted(_local_leftovers(tree))
    failed = tree.run("secrets", "migrate", "--to", "openbao")
    assert failed.returncode == 6 and b"permission denied" in failed.stderr, failed.stderr
    assert sorted(_local_leftovers(tree)) == before
    assert bao_dev.read_prefix("secret", f"clawgate/{tmp_path.name}-n/secrets") == []


def _hint(stderr: bytes, before: str, after: str) -> str:
    import re

    found = re.search(re.escape(before) + r" (.*?)" + re.escape(after), stderr.decode())
    assert found, stderr
    return found.group(1)


@pytest.mark.parametrize("keep", ["the fleet's", "this host's"])
def test_migrate_clash_hint_names_commands_that_resolve_it(bao_dev, tmp_path, keep):
    """Each way out the refusal names, run as it is written, lets the migration through."""
    import shlex
    import subprocess

    owner = bao_dev.owner(f"clawgate/{tmp_path.name}")
    tree = _file_host_moving_to(bao_dev, tmp_path, owner)
    open_store(tree.config()).put("api/token", b"the fleet's value")
    clash = tree.run("secrets", "migrate", "--to", "openbao")
    assert clash.returncode == 2 and b"nothing was moved" in clash.stderr, clash.stderr
    assert clash.stderr.count(b"\n") == 1
    if keep == "the fleet's":
        argv = shlex.split(_hint(clash.stderr, "Keep the fleet's value:", "; or keep"))
        assert argv[:2] == ["rm", "-f"]
        subprocess.run(argv, check=True)
        expected = b"the fleet's value"
    else:
        argv = shlex.split(_hint(clash.stderr, "keep this host's:", " (removes it"))
        assert argv[:3] == ["clawgate", "secrets", "rm"]
        assert tree.run(*argv[1:], "--force").returncode == 0
        expected = b"file-value-2"
    moved = tree.run("secrets", "migrate", "--to", "openbao")
    assert moved.returncode == 0, moved.stderr
    assert open_store(tree.config()).get("api/token") == expected
    assert _local_leftovers(tree) == []


def test_resolve_on_openbao_answers_each_id_as_the_file_store_does(hosts):
    import json

    a, _ = hosts
    a.set_secret("open/one", b"v-open", tier="open")
    a.set_secret("granted/one", b"v-granted", tier="controlled")
    a.set_secret("held/one", b"v-held", tier="controlled")
    assert a.owner_approve("granted/one", a.code()).returncode == 0
    many = [f"bulk/key-{i:02d}" for i in range(40)]
    for name in many:
        open_store(a.config()).put(name, name.encode())
        open_store(a.config()).save_tier(name, b"open\n")
    ids = ["open/one", "granted/one", "held/one", "missing/one", "../bad"] + many
    request = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ids}).encode()
    got = a.as_agent("broker", "resolve", input=request)
    assert got.returncode == 0, got.stderr
    reply = json.loads(got.stdout)
    assert reply["values"] == {"open/one": "v-open", "granted/one": "v-granted", **{n: n for n in many}}
    assert {k: v["code"] for k, v in reply["errors"].items()} == {
        "held/one": "APPROVAL_REQUIRED", "missing/one": "NOT_FOUND", "../bad": "INVALID_ID"}


def test_install_dry_run_plans_the_openbao_store_and_checks_its_flags(bao_dev, tmp_path):
    import shutil
    import tempfile

    where = f"/opt/clawgate-dry-{tmp_path.name}"  # never made: a plan only (and /tmp is refused)
    shared = tempfile.mkdtemp(prefix="clawgate-dryca-", dir="/opt")  # nobody, the owner here, reads the CA:
    os.chmod(shared, 0o755)  # the dry run checks OpenBao as nobody (as root; without root it says it did not)
    ca = shutil.copy(bao_dev.ca, f"{shared}/ca.pem")
    os.chmod(ca, 0o644)
    try:
        _dry_run_plans(bao_dev, where, ca)
    finally:
        shutil.rmtree(shared)


def _dry_run_plans(bao_dev, where: str, ca: str) -> None:
    import subprocess

    from installtree import REPO

    def plan(*flags: str) -> subprocess.CompletedProcess:
        argv = ["bash", str(REPO / "install.sh"), "--owner", "nobody", "--agent-user", "cgdryrun",
                "--prefix", f"{where}/prefix", "--state-dir", f"{where}/state", "--agent-home", f"{where}/home",
                "--no-service", "--dry-run", *flags]
        return subprocess.run(argv, input=b"must not be read\n", capture_output=True, timeout=120)

    good = plan("--store", "openbao", "--openbao-address", bao_dev.address, "--openbao-ca", ca,
                "--openbao-role-id", "role-1", "--openbao-prefix", "clawgate/team")
    out = good.stdout.decode()
    assert good.returncode == 0, good.stderr
    assert (f"[openbao]\naddress = {bao_dev.address}\nca = {ca}\nrole_id = role-1\nmount = secret\n"
            "prefix = clawgate/team\n") in out
    assert f"would: write {where}/state/openbao-secret-id (nobody 0600) from stdin" in out
    assert "checked first, as the owner:" in out and "reachable, unsealed" in out  # (that stdin is no secret id)
    assert not os.path.exists(where)
    for flags, says in ((["--store", "openbao"], "needs --openbao-address"),
                        (["--openbao-ca", ca], "go with --store openbao"),
                        (["--store", "openbao", "--openbao-address", "http://127.0.0.1:1", "--openbao-ca",
                          ca, "--openbao-role-id", "r"], "TLS always"),
                        (["--store", "openbao", "--openbao-address", bao_dev.address, "--openbao-ca",
                          ca, "--openbao-role-id", "r", "--openbao-prefix", "a/../b"], "KV path")):
        bad = plan(*flags)
        assert bad.returncode == 2 and says in bad.stderr.decode(), bad.stderr


def test_resolve_reads_no_value_it_refuses(hosts, monkeypatch):
    """Invariant 3 on the batch path: the values prefetched are those of the ids already allowed."""
    from clawgate import resolver

    a, _ = hosts
    a.set_secret("open/two", b"v", tier="open")
    a.set_secret("held/two", b"v", tier="restricted")
    ctx = coretools.context(a, role="agent")
    store = open_store(ctx.cfg)
    asked: "dict[str, list[str]]" = {}
    real = store.prefetch
    monkeypatch.setattr(store, "prefetch", lambda kind, wanted: (asked.setdefault(kind, list(wanted)),
                                                                 real(kind, wanted))[1])
    reads: "list[str]" = []
    real_read = store._read
    monkeypatch.setattr(store, "_read", lambda *parts: (reads.append("/".join(parts)), real_read(*parts))[1])
    values, errors = resolver.answer(ctx, ["open/two", "held/two"])
    assert values == {"open/two": "v"} and list(errors) == ["held/two"]
    assert asked == {"tiers": ["open/two", "held/two"], "secrets": ["open/two"]}
    assert not any(path.startswith("secrets/") for path in reads), reads  # open/two came from the prefetch


def test_list_on_openbao_shows_every_tier_fetched_at_once(hosts):
    a, b = hosts
    a.set_secret("l/open", b"v", tier="open")
    a.set_secret("l/ctl", b"v", tier="controlled")
    a.set_secret("l/res", b"v")
    got = b.run("secrets", "list", "--json")
    assert got.returncode == 0, got.stderr
    import json

    assert {row["name"]: row["tier"] for row in json.loads(got.stdout)} == {
        "l/open": "open", "l/ctl": "controlled", "l/res": "restricted"}


def test_the_readme_policy_is_enough_and_no_more(bao_dev, tmp_path):
    """The README's HCL, as written, for its owner alice: everything works, doctor finds it exact."""
    import re

    from installtree import REPO

    readme = (REPO / "README.md").read_text()
    hcl = re.search(r"```hcl\n(.*?)```", readme, re.S).group(1)
    assert 'path "secret/data/clawgate/alice/*"' in hcl
    owner = bao_dev.owner("clawgate/alice", policy=hcl)
    tree = Tree(tmp_path, store="openbao", extra_config=owner.config())
    owner.give(tree.state)
    assert tree.run("secrets", "init").returncode == 0
    tree.enroll_seed()
    tree.set_secret("db", b"pw", tier="controlled")
    assert tree.as_agent("approve", "db", tree.code()).returncode == 0
    assert tree.as_agent("broker", "get", "db").stdout == b"pw"
    assert tree.run("secrets", "rm", "db", "--force").returncode == 0
    lines = _doctor_lines(tree)
    assert any(line.startswith("ok    openbao policy:") for line in lines), lines
    assert not any(line.startswith(("FAIL", "warn")) for line in lines), lines


def test_a_gate_record_that_never_stops_changing_is_exit_5_and_grants_nothing(hosts, monkeypatch):
    from clawgate.store import Conflict

    a, _ = hosts
    a.set_secret("db", b"pw", tier="controlled")
    ctx = coretools.context(a, role="owner")
    store = open_store(ctx.cfg)
    tries = []

    def always_lost(raw, version):
        tries.append(version)
        raise Conflict()

    monkeypatch.setattr(store, "save_gate", always_lost)
    with pytest.raises(ClawgateError) as caught:
        gate.check(ctx, a.code(), purpose="db", now=time.time(),
                   grant=grants.Grant("db", "controlled", time.time(), time.time() + 60, "owner"))
    assert caught.value.code == 5 and "try again" in caught.value.message
    assert len(tries) == gate.CAS_TRIES
    assert grants_on(a) == []


def test_a_rerun_without_store_keeps_an_openbao_install_from_falling_back(bao_dev, tmp_path):
    import shutil
    import subprocess

    from installtree import REPO

    where = f"/opt/clawgate-rerun-{tmp_path.name}"
    etc = f"{where}/prefix/etc/clawgate"
    os.makedirs(etc)
    try:
        with open(f"{etc}/clawgate.conf", "w") as conf:
            conf.write("[clawgate]\nowner = nobody\nagent_user = cgrerun\nstate_dir = /nonexistent\nstore = openbao\n")

        def plan(*flags: str) -> subprocess.CompletedProcess:
            return subprocess.run(["bash", str(REPO / "install.sh"), "--owner", "nobody", "--agent-user", "cgrerun",
                                   "--prefix", f"{where}/prefix", "--state-dir", f"{where}/state", "--agent-home",
                                   f"{where}/home", "--no-service", "--dry-run", *flags], capture_output=True, timeout=120)

        kept = plan()
        assert kept.returncode == 2 and b"says store = openbao" in kept.stderr, kept.stderr
        assert plan("--store", "file").returncode == 0  # leaving the fleet is said out loud
    finally:
        shutil.rmtree(where)


@pytest.fixture
def small_disk_host(bao_dev, tmp_path):
    """A host whose whole tree (state included) is a 32 MiB tmpfs, so its disk can be filled."""
    import subprocess

    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs",
                                            str(where)], capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        owner = bao_dev.owner(f"clawgate/{tmp_path.name}")
        tree = Tree(where, store="openbao", extra_config=owner.config())
        owner.give(tree.state)
        assert tree.run("secrets", "init").returncode == 0
        tree.enroll_seed()
        tree.set_secret("db", b"pw", tier="controlled")
        tree.filler = where / "filler"
        yield tree
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path) -> None:
    """Write zeros to `path` until the filesystem has no room left."""
    with open(path, "ab", buffering=0) as out:
        block = bytes(1 << 16)
        while True:
            try:
                out.write(block)
            except OSError:
                break
        for size in (4096, 512, 1):
            try:
                while True:
                    out.write(bytes(size))
            except OSError:
                pass


def test_a_full_disk_refuses_the_code_before_it_is_counted_or_spent_in_openbao(small_disk_host):
    tree = small_disk_host
    store = open_store(tree.config())
    before = store.load_gate()
    code = tree.code()
    fill(tree.filler)
    got = tree.as_agent("approve", "db", code)
    assert got.returncode == 74, got.stderr
    assert b"no room for the audit log" in got.stderr and got.stderr.count(b"\n") == 1, got.stderr
    assert store.load_gate() == before  # nothing counted, nothing spent
    os.unlink(tree.filler)
    again = tree.as_agent("approve", "db", code)  # so the same code still works
    assert again.returncode == 0, again.stderr
    assert tree.run("audit", "verify").returncode == 0


def test_a_disk_that_fills_after_the_check_leaves_the_spent_code_in_the_audit_log(small_disk_host, monkeypatch):
    """The disk fills just as the guess is counted in OpenBao: the code is spent there and the grant
    cannot be written; the attempt was recorded before, and the error says the outcome was not."""
    from clawgate import audit, state, totp

    tree = small_disk_host
    ctx = coretools.context(tree, role="agent")
    store = open_store(ctx.cfg)
    real = store.save_gate
    pending = [lambda: fill(tree.filler)]

    def fill_then_write(raw, version):
        while pending:
            pending.pop()()
        return real(raw, version)

    monkeypatch.setattr(store, "save_gate", fill_then_write)
    code, now = tree.code(), time.time()
    with pytest.raises(ClawgateError) as caught:
        gate.check(ctx, code, purpose="db", now=now,
                   grant=grants.Grant("db", "controlled", now, now + 60, "agent"))
    assert caught.value.code == 74 and "attempt is in the audit log" in caught.value.message, caught.value.message
    os.unlink(tree.filler)
    step = totp.match_step(tree.seed, code, now, -1)
    assert gate.load_state(ctx).last_step == step  # spent in OpenBao...
    records = [audit.fields_of(line) for line in audit.read_lines(state.path(ctx.cfg, "audit.log"), ctx.cfg.owner.uid)]
    assert any(r.get("event") == "code" and r.get("purpose") == "db" and r.get("result") == "checking"
               for r in records), records[-3:]  # ...and in the audit log
    assert grants_on(tree) == []


def test_enrolling_again_on_another_host_says_the_seed_is_the_fleets(hosts):
    _a, b = hosts
    again = b.run("enroll", "--import", input=b"JBSWY3DPEHPK3PXP\n000000\n")
    err = again.stderr.decode()
    assert again.returncode == 2 and err.count("\n") == 1, err
    assert "already enrolled for the fleet in OpenBao" in err, err
    assert f"for all of them: {b.prefix}/bin/clawgate enroll --rotate" in err, err
