"""The keychain store beyond the shared contract, and the fake security's fidelity.

The first part pins down that tests/fakes/security prints what Apple's security prints (the
formats the store parses), so the store's tests mean something. The rest attacks the store:
values and the keychain password never in argv, locked/missing keychains never read as
"no such secret", the seed's service never queried by broker, writes that fail half-way.
"""

import json
import os
import stat
import subprocess

import pytest

from installtree import Tree
from keychainfake import FAIL_VAR, FAKE, LOG, LOG_VAR, KeychainTree, q, security, session
from clawgate import totp
from clawgate.errors import ClawgateError
from clawgate.store import open_store
from clawgate.store.keychain import PARTS, SERVICE

GUIDE_PASSWORD = "correct horse"


@pytest.fixture
def keychain(tmp_path):
    """A bare fake keychain, unlocked, made the way a script would (password on stdin)."""
    path = str(tmp_path / "plain.keychain-db")
    LOG.remember(GUIDE_PASSWORD, what="a keychain password")
    result = session([f"create-keychain -p {q(GUIDE_PASSWORD)} {q(path)}"])
    assert result.returncode == 0, result.stderr
    return path


def add_hex(path: str, account: str, value: bytes, service: str = "svc") -> None:
    LOG.remember(value)
    result = session([f"add-generic-password -s {q(service)} -a {q(account)} -X {value.hex()} {q(path)}"])
    assert result.returncode == 0, result.stderr


# -- the fake prints what security prints ---------------------------------------------------

@pytest.mark.parametrize("value, line", [
    (b"deadbeef", b'password: "deadbeef"'),
    (bytes.fromhex("deadbeef"), b"password: 0xDEADBEEF "),
    (b"0x41", b'password: "0x41"'),
    (b'a"b', b'password: "a"b"'),
    (b"a\\b", b'password: 0x615C62  "a\\134b"'),
    (b"l1\nl2", b'password: 0x6C310A6C32  "l1\\012l2"'),
    (b"\x00", b"password: 0x00 "),
])
def test_fake_g_prints_print_buffer_forms(keychain, value, line):
    """keychain_utilities.c print_buffer(): quoted text, 0xHEX, or both with octal escapes."""
    add_hex(keychain, "item", value)
    found = security("find-generic-password", "-g", "-s", "svc", "-a", "item", keychain)
    assert found.returncode == 0
    assert found.stderr.split(b"\n")[-2] == line
    assert found.stdout.startswith(f'keychain: "{keychain}"\n'.encode())
    assert b'    "acct"<blob>="item"\n' in found.stdout and b'    "svce"<blob>="svc"\n' in found.stdout


def test_fake_w_is_ambiguous_which_is_why_the_store_never_uses_it(keychain):
    """keychain_find.c: -w prints hex only when a byte is not printable."""
    add_hex(keychain, "text", b"deadbeef")
    add_hex(keychain, "bytes", bytes.fromhex("deadbeef"))
    outputs = {security("find-generic-password", "-w", "-s", "svc", "-a", a, keychain).stdout for a in ("text", "bytes")}
    assert outputs == {b"deadbeef\n"}


def test_fake_missing_item_is_exit_44_with_the_real_message(keychain):
    missing = security("find-generic-password", "-g", "-s", "svc", "-a", "nothing", keychain)
    assert missing.returncode == 44
    assert missing.stderr == (b"security: SecKeychainSearchCopyNext: "
                              b"The specified item could not be found in the keychain.\n")


def test_fake_a_missing_keychain_also_searches_as_not_found(tmp_path):
    """The trap the store avoids by unlocking first: 44 does not prove the item is missing."""
    missing = security("find-generic-password", "-g", "-s", "svc", "-a", "absent", str(tmp_path / "none.keychain-db"))
    assert missing.returncode == 44


def test_fake_interactive_mode_quotes_and_reports_failures(keychain):
    account = "it's a \"quoted\" \\ name"
    result = session([f"add-generic-password -s svc -a {q(account)} -X 00ff {q(keychain)}",
                      f"find-generic-password -s svc -a nobody {q(keychain)}",
                      f"find-generic-password -s svc -a {q(account)} {q(keychain)}"])
    assert b"find-generic-password: returned -25300\n" in result.stderr
    assert result.returncode == 0  # the last command's status
    assert '"acct"<blob>=0x'.encode() in result.stdout  # a backslash sends an attribute to hex
    listed = security("dump-keychain", keychain)
    assert account.encode().hex().upper().encode() in listed.stdout


def test_fake_runs_the_rest_of_an_over_long_line_as_a_command(keychain):
    """readline() in security.c stops at 4095 bytes: why the store keeps its lines under 4000."""
    value = b"\xab" * 2100
    LOG.remember(value)
    result = session([f"add-generic-password -s svc -a long -X {value.hex()} {q(keychain)}"])
    assert b"unknown command" in result.stderr


def test_fake_locked_keychain_refuses_data_until_unlocked(keychain):
    add_hex(keychain, "item", b"locked away")
    assert security("lock-keychain", keychain).returncode == 0
    read = security("find-generic-password", "-g", "-s", "svc", "-a", "item", keychain)
    assert (read.returncode, read.stdout, read.stderr) == (36, b"", b"")
    attrs = security("find-generic-password", "-s", "svc", "-a", "item", keychain)
    assert attrs.returncode == 0  # attributes stay readable
    write = session([f"add-generic-password -U -s svc -a item -X 00 {q(keychain)}"])
    assert b"User interaction is not allowed." in write.stderr
    wrong = session([f"unlock-keychain -p {q('wrong')} {q(keychain)}"])
    assert b"returned -25293" in wrong.stderr and wrong.returncode == 51
    assert session([f"unlock-keychain -p {q(GUIDE_PASSWORD)} {q(keychain)}"]).returncode == 0
    assert security("find-generic-password", "-g", "-s", "svc", "-a", "item", keychain).returncode == 0


def test_fake_insists_on_a_named_keychain(keychain):
    """The real tool would fall back to the search list (the login keychain): never wanted."""
    assert security("find-generic-password", "-s", "svc", "-a", "absent").returncode != 0
    assert security("dump-keychain").returncode != 0


# -- the store -------------------------------------------------------------------------------

@pytest.fixture
def kc(tmp_path):
    tree = KeychainTree(tmp_path)
    tree.init()
    return tree


@pytest.fixture
def store(kc, monkeypatch):
    monkeypatch.setenv(LOG_VAR, str(LOG.path))
    return open_store(kc.config())


def test_init_makes_a_private_password_and_a_keychain_that_never_locks_itself(kc):
    password_file = kc.state / "keychain-password"
    st = os.stat(password_file)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    password = kc.password()
    assert len(password) == 64 and int(password, 16) >= 0
    assert password not in kc.config_path.read_text()
    info = security("show-keychain-info", str(kc.keychain))
    assert info.stderr == f'Keychain "{kc.keychain}" no-timeout\n'.encode()  # no lock-on-sleep, no timeout


def test_init_is_idempotent(kc):
    password = kc.password()
    mark = LOG.mark()
    for _ in range(2):
        assert kc.run("secrets", "init").returncode == 0
    assert kc.password() == password
    creates = [e for e in LOG.since(mark) if "create-keychain" in e.get("stdin", [])]
    assert creates == []


def test_init_refuses_a_keychain_it_cannot_unlock(tmp_path):
    tree = KeychainTree(tmp_path)
    LOG.remember("someone else's", what="a keychain password")
    session([f"create-keychain -p {q(chr(39) + 'someone else' + chr(39) + 's')} {q(str(tree.keychain))}"])
    result = tree.run("secrets", "init")
    assert result.returncode == 6
    assert b"keychain-password" in result.stderr
    assert not (tree.state / "keychain-password").exists()


def test_init_finishes_after_a_crash_between_password_and_keychain(tmp_path):
    tree = KeychainTree(tmp_path)
    tree.init()
    password = tree.password()
    os.unlink(tree.keychain)  # as if init died right after writing the password file
    tree.init()
    assert tree.password() == password
    tree.set_secret("after", b"recovered", tier="open")
    assert tree.as_agent("broker", "get", "after").stdout == b"recovered"


def test_concurrent_inits_agree_on_one_password(tmp_path):
    """Racing inits (a retried install) must not leave a password file the keychain does not take.

    Without init's lock this fails only when two racers pass the "no password yet" check
    together (about one run in three here); with it, it cannot fail."""
    tree = KeychainTree(tmp_path)
    runs = [subprocess.Popen([str(tree.libexec / "secrets"), "init"], env=tree.env(False),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(8)]
    assert [run.wait(timeout=60) for run in runs] == [0] * 8
    LOG.remember(tree.password(), what="the keychain password")
    tree.set_secret("after-race", b"one password", tier="open")
    assert tree.as_agent("broker", "get", "after-race").stdout == b"one password"


def test_a_locked_keychain_is_unlocked_before_use(kc):
    kc.set_secret("token", b"still readable", tier="open")
    assert security("lock-keychain", str(kc.keychain)).returncode == 0
    got = kc.as_agent("broker", "get", "token")
    assert got.returncode == 0 and got.stdout == b"still readable"


@pytest.mark.parametrize("name", ["token", "never-stored"])
def test_a_keychain_that_will_not_unlock_is_unsafe_never_missing(kc, name):
    """Without the unlock check a locked keychain's failed search would read as exit 4."""
    kc.set_secret("token", b"value", tier="open")
    security("lock-keychain", str(kc.keychain))
    (kc.state / "keychain-password").write_text("0" * 64)
    got = kc.as_agent("broker", "get", name)
    assert got.returncode == 6, got.stderr
    assert b"cannot unlock" in got.stderr and b"0" * 64 not in got.stderr


def test_a_missing_keychain_is_unsafe_never_missing(kc):
    os.unlink(kc.keychain)
    got = kc.as_agent("broker", "get", "anything")
    assert got.returncode == 6 and b"secrets init" in got.stderr


def test_a_loose_password_file_is_refused(kc):
    os.chmod(kc.state / "keychain-password", 0o644)
    assert kc.as_agent("broker", "get", "anything").returncode == 6


def test_a_relative_keychain_path_is_refused(tmp_path):
    tree = KeychainTree(tmp_path, extra_config=f"[keychain]\nsecurity = {FAKE}\npath = clawgate.keychain-db\n")
    assert tree.run("secrets", "init").returncode == 6


def test_values_and_the_password_go_on_stdin_only(kc, store):
    value = b"\x01\x02 sk-proj-stdin-only \xff"
    LOG.remember(value)
    mark = LOG.mark()
    store.put("stdin/only", value)
    assert store.get("stdin/only") == value
    entries = LOG.since(mark)
    adds = [e["stdin"] for e in entries if e.get("stdin", [""])[0] == "add-generic-password"]
    assert adds and all("-X" in a and "<hidden>" in a for a in adds)
    unlocks = [e["stdin"] for e in entries if e.get("stdin", [""])[0] == "unlock-keychain"]
    assert unlocks and all(a[1:3] == ["-p", "<hidden>"] for a in unlocks)
    for entry in entries:
        if "argv" in entry:
            assert not {"-X", "-w", "-p"} & set(entry["argv"]), entry["argv"]


def test_values_around_one_line_round_trip(kc, store):
    room = store._keychain.room(SERVICE, "edge", "")  # bytes of data one -i line holds
    for size in (room - 1, room, room + 1, 2 * room + 7):
        value = bytes((size + i) % 256 for i in range(size))
        LOG.remember(value)
        store.put("edge", value)
        assert store.get("edge") == value, size
    parts = [i for i in kc.items() if i["svce"] == PARTS]
    assert len(parts) == 2  # 2*room+7 bytes: the item plus two parts, the older parts dropped


def test_one_mebibyte_through_secrets_set(kc, store):
    value = os.urandom(1 << 20)
    LOG.remember(value)
    result = kc.run("secrets", "set", "huge", "--raw", input=value)
    assert result.returncode == 0, result.stderr
    assert store.get("huge") == value


def test_shrinking_a_value_drops_its_parts(kc, store):
    big = os.urandom(20_000)
    LOG.remember(big)
    store.put("shrinks", big)
    assert any(i["svce"] == PARTS for i in kc.items())
    store.put("shrinks", b"tiny")
    assert not any(i["svce"] == PARTS for i in kc.items())
    store.put("shrinks", big)
    assert store.delete("shrinks")
    assert kc.items() == []


@pytest.mark.parametrize("failing", [PARTS, SERVICE])
def test_a_write_that_fails_half_way_keeps_the_old_value(kc, store, monkeypatch, failing):
    """Parts first under a new generation, the item last: a failure leaves the old value whole."""
    old, new = os.urandom(30_000), os.urandom(50_000)
    LOG.remember(old, new)
    store.put("precious", old)
    before = sorted(i["acct"] for i in kc.items())
    monkeypatch.setenv(FAIL_VAR, failing)
    with pytest.raises(ClawgateError) as caught:
        open_store(kc.config()).put("precious", new)
    assert caught.value.code == 6
    monkeypatch.delenv(FAIL_VAR)
    assert open_store(kc.config()).get("precious") == old
    assert sorted(i["acct"] for i in kc.items()) == before  # the new parts were cleaned up


def test_clawgates_own_services_are_not_for_secrets(store):
    for service in (SERVICE, PARTS, "openclaw-secrets", "clawgate-totp\n"):
        with pytest.raises(ClawgateError):
            store.get_service_item(service)


def test_the_seed_lives_in_the_keychain_under_its_own_service(kc):
    kc.enroll_seed()
    assert not (kc.state / "totp-seed").exists()
    seeds = [i for i in kc.items() if i["svce"] == "clawgate-totp"]
    assert len(seeds) == 1 and seeds[0]["acct"] == "seed"
    assert json.loads(seeds[0]["data"])["secret"] == totp.to_base32(kc.seed.secret)


def test_broker_never_queries_the_seed_service(kc):
    """Every broker verb, as agent and owner, with names aimed at the seed: no clawgate-totp."""
    kc.enroll_seed()
    kc.set_secret("open/one", b"open value", tier="open")
    kc.set_secret("closed", b"closed value")
    mark = LOG.mark()
    for as_agent in (True, False):
        for args in (["get", "open/one"], ["get", "closed"], ["list", "--json"], ["status", "--json"],
                     ["get", "clawgate-totp"], ["get", "seed"], ["get", "clawgate-totp/seed"]):
            kc.run("broker", *args, as_agent=as_agent)
        request = json.dumps({"protocolVersion": 1, "provider": "clawgate",
                              "ids": ["open/one", "closed", "clawgate-totp", "seed"]}).encode()
        kc.run("broker", "resolve", input=request, as_agent=as_agent)
    seen = LOG.since(mark)
    assert seen, "broker ran no security command at all?"
    assert {service for e in seen for service in LOG.services(e)} == {"clawgate"}
    # The probe sees the seed's service when it is used: approve reads the seed.
    mark = LOG.mark()
    assert kc.as_agent("approve", "closed", kc.code()).returncode == 0
    assert "clawgate-totp" in {service for e in LOG.since(mark) for service in LOG.services(e)}


def test_no_value_in_the_audit_log_or_messages(kc):
    value = b"audit-must-not-see-this"
    kc.set_secret("watched", value)
    kc.run("broker", "get", "watched", as_agent=True)
    kc.run("secrets", "rm", "watched", "--force")
    assert value not in (kc.state / "audit.log").read_bytes()
    assert kc.password().encode() not in (kc.state / "audit.log").read_bytes()


def test_file_store_installs_are_untouched_by_the_keychain_code(tmp_path):
    tree = Tree(tmp_path)
    assert tree.run("secrets", "init").returncode == 0
    assert not (tree.state / "keychain-password").exists()


def test_no_secret_reached_the_fake_security_argv():
    assert LOG.leaks() == [], LOG.leaks()


def test_a_refused_get_or_resolve_never_decrypts_the_value(kc):
    """Invariant 3 is decided before any value is read (access.read): a request with no grant
    reaches the keychain only as an attribute lookup (no -g), never as a read of the data."""
    kc.set_secret("closed", b"closed value")
    mark = LOG.mark()
    got = kc.as_agent("broker", "get", "closed")
    assert got.returncode == 3, got.stderr
    request = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ["closed"]}).encode()
    reply = json.loads(kc.as_agent("broker", "resolve", input=request).stdout)
    assert reply["errors"]["closed"]["code"] == "APPROVAL_REQUIRED"
    reads = [e for e in LOG.since(mark) if "-g" in (e.get("argv") or e.get("stdin") or [])]
    assert reads == []
