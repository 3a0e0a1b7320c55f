"""Migration from a setup built with the guide's scripts: `secrets import-keychain`, then the seed.

The guide kept its secrets as generic passwords under one service in a keychain of its own,
and the TOTP seed as one more item of that service (account totp_secret). The tests build such
a keychain with the fake security (commands on stdin, so the argv log stays clean), migrate with
the two documented commands, and check every secret, the tiers, and that the owner's existing
authenticator entry (the old seed) approves grants afterwards.
"""

import json
import subprocess
import time

import pytest

from installtree import Tree
from keychainfake import FAKE, LOG, LOG_VAR, KeychainTree, q, security, session
from clawgate import migrate, tiers, totp
from clawgate.store import open_store

SERVICE = "openclaw-secrets"
GUIDE_PASSWORD = "guide's \"keychain\" pass\\word"
TEXT = {  # what the guide stored with -w "$VALUE"
    "OPENAI_API_KEY": "sk-proj-guide-openai-000111",
    "github-token": "ghp_guideGithubToken1234567890",
    "hexlike": "deadbeef",
}
BYTES = {  # what no -w line can carry: stored as -X hex
    "tls/server.pem": b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    "binary.blob": b"\x00\x01quote\"back\\slash\xff",
}
EXPECTED = {**{k: v.encode() for k, v in TEXT.items()}, **BYTES}


def build_guide_keychain(path: str, seed: totp.Params, extra_accounts=()) -> None:
    LOG.remember(GUIDE_PASSWORD, what="the guide keychain's password")
    LOG.remember(*EXPECTED.values())
    LOG.remember(seed.secret, totp.to_base32(seed.secret), what="the guide's TOTP seed")
    lines = [f"create-keychain -p {q(GUIDE_PASSWORD)} {q(path)}"]
    lines += [f"add-generic-password -s {SERVICE} -a {q(name)} -w {q(value)} {q(path)}" for name, value in TEXT.items()]
    lines += [f"add-generic-password -s {SERVICE} -a {q(name)} -X {value.hex()} {q(path)}" for name, value in BYTES.items()]
    lines += [f"add-generic-password -s {SERVICE} -a totp_secret -w {totp.to_base32(seed.secret)} {q(path)}",
              f"add-generic-password -s other-app -a unrelated -w {q('not-for-clawgate')} {q(path)}"]
    lines += [f"add-generic-password -s {SERVICE} -a {q(name)} -w value-of-{len(name)} {q(path)}"
              for name in extra_accounts]
    result = session(lines)
    assert result.returncode == 0 and b"returned" not in result.stderr, result.stderr
    assert security("lock-keychain", path).returncode == 0  # as it would be by the time anyone migrates


@pytest.fixture
def phone():
    """The authenticator entry the owner already has: the guide's seed."""
    return totp.Params(totp.new_secret())


@pytest.fixture
def guide(tmp_path, phone):
    path = tmp_path / "guide" / "openclaw.keychain-db"
    path.parent.mkdir()
    build_guide_keychain(str(path), phone)
    return str(path)


@pytest.fixture
def kc(tmp_path, monkeypatch):
    monkeypatch.setenv(LOG_VAR, str(LOG.path))
    tree = KeychainTree(tmp_path / "clawgate")
    tree.init()
    return tree


def import_keychain(tree: Tree, path: str, *extra: str, password: str = GUIDE_PASSWORD, as_agent=False):
    return tree.run("secrets", "import-keychain", "--keychain", path, "--service", SERVICE, *extra,
                    input=password.encode() + b"\n", as_agent=as_agent)


def enroll_as_documented(tree: Tree, guide_path: str, phone: totp.Params, rotate: bool = False
                         ) -> subprocess.CompletedProcess:
    """Command 2, exactly as printed, with the terminal (/dev/tty) replaced by this test's stdin."""
    command = migrate.seed_command(str(FAKE), guide_path, SERVICE, "totp_secret", rotate)
    command = command.replace("head -n 1 /dev/tty", "head -n 1").replace(
        "clawgate enroll --import", str(tree.libexec / "enroll") + " --import")
    step = totp.step_at(time.time(), phone.period)
    code = totp.hotp(phone.secret, step, phone.digits, phone.algorithm)
    result = subprocess.run(["/bin/sh", "-c", command], input=f"{code}\n".encode(), capture_output=True,
                            env=tree.env(False), timeout=60)
    tree.seed, tree.last_step = phone, step
    return result


def test_migration_moves_every_secret_and_the_seed(kc, guide, phone):
    result = import_keychain(kc, guide)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    for name in EXPECTED:
        assert f"clawgate: {name}: imported (restricted)" in out
    assert migrate.seed_command(str(FAKE), guide, SERVICE, "totp_secret") in out

    store = open_store(kc.config())
    assert store.names() == sorted(EXPECTED)  # not totp_secret, not the other service's item
    for name, value in EXPECTED.items():
        assert store.get(name) == value, name
        assert tiers.get(kc.config(), name) == "restricted"

    enrolled = enroll_as_documented(kc, guide, phone)
    assert enrolled.returncode == 0, enrolled.stderr
    assert b"seed enrolled" in enrolled.stdout

    # The owner's phone, unchanged, now opens clawgate's grants (one code: the next step's,
    # since enrolling spent the current one; a second would mean waiting for the clock).
    name = "tls/server.pem"
    assert kc.as_agent("broker", "get", name).returncode == 3
    approved = kc.as_agent("approve", name, kc.code())
    assert approved.returncode == 0, approved.stderr
    got = kc.as_agent("broker", "get", name)
    assert got.returncode == 0 and got.stdout == EXPECTED[name]
    assert kc.as_agent("approve", "github-token", kc.spent_code()).returncode == 1  # each code once


def test_with_a_seed_already_enrolled_the_command_rotates(kc, guide, phone):
    kc.enroll_seed()  # the install's fresh seed
    result = import_keychain(kc, guide)
    assert result.returncode == 0, result.stderr
    command = migrate.seed_command(str(FAKE), guide, SERVICE, "totp_secret", rotate=True)
    assert command.endswith("clawgate enroll --import --rotate") and command in result.stdout.decode()
    rotated = enroll_as_documented(kc, guide, phone, rotate=True)
    assert rotated.returncode == 0, rotated.stderr
    assert kc.as_agent("approve", "github-token", kc.code()).returncode == 0  # the phone's code


def test_the_old_keychain_is_only_read(kc, guide):
    before = json.loads(open(guide).read())["items"]
    assert import_keychain(kc, guide).returncode == 0
    assert json.loads(open(guide).read())["items"] == before


def test_tier_option_applies_to_every_item(kc, guide):
    assert import_keychain(kc, guide, "--tier", "controlled").returncode == 0
    assert {tiers.get(kc.config(), name) for name in EXPECTED} == {"controlled"}


def test_a_wrong_password_imports_nothing(kc, guide):
    LOG.remember("not the password", what="a wrong keychain password")
    result = import_keychain(kc, guide, password="not the password")
    assert result.returncode == 1
    assert b"cannot unlock" in result.stderr and GUIDE_PASSWORD.encode() not in result.stderr
    assert open_store(kc.config()).names() == []


def test_an_already_unlocked_keychain_needs_no_password(kc, guide):
    session([f"unlock-keychain -p {q(GUIDE_PASSWORD)} {q(guide)}"])
    assert import_keychain(kc, guide, password="").returncode == 0
    assert open_store(kc.config()).names() == sorted(EXPECTED)


def test_a_locked_keychain_without_its_password_imports_nothing(kc, guide):
    result = import_keychain(kc, guide, password="")
    assert result.returncode == 6
    assert open_store(kc.config()).names() == []


def test_an_item_name_clawgate_cannot_take_imports_nothing(kc, tmp_path, phone):
    path = str(tmp_path / "odd.keychain-db")
    build_guide_keychain(path, phone, extra_accounts=["My API Key"])
    result = import_keychain(kc, path)
    assert result.returncode == 2 and b"My API Key: not a valid secret name" in result.stderr
    assert open_store(kc.config()).names() == []


def test_a_name_already_in_clawgate_imports_nothing(kc, guide):
    kc.set_secret("github-token", b"clawgate's own value")
    result = import_keychain(kc, guide)
    assert result.returncode == 2 and b"github-token: already stored" in result.stderr
    store = open_store(kc.config())
    assert store.names() == ["github-token"] and store.get("github-token") == b"clawgate's own value"


def test_a_second_run_changes_nothing(kc, guide):
    assert import_keychain(kc, guide).returncode == 0
    again = import_keychain(kc, guide)
    assert again.returncode == 2
    assert open_store(kc.config()).names() == sorted(EXPECTED)


@pytest.mark.parametrize("args, code", [
    (["--keychain", "/nonexistent/old.keychain-db", "--service", SERVICE], 2),
    (["--service", SERVICE], 2),
    (["--keychain", "PLACEHOLDER", "--service", "no-such-service"], 2),
    (["--keychain", "PLACEHOLDER", "--service", ""], 2),
])
def test_bad_arguments_are_usage_errors(kc, guide, args, code):
    args = [guide if arg == "PLACEHOLDER" else arg for arg in args]
    result = kc.run("secrets", "import-keychain", *args, input=GUIDE_PASSWORD.encode() + b"\n")
    assert result.returncode == code, result.stderr
    assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr
    assert open_store(kc.config()).names() == []


def test_clawgates_own_keychain_is_not_a_source(kc):
    result = import_keychain(kc, str(kc.keychain), password="")
    assert result.returncode == 2 and b"clawgate's own keychain" in result.stderr


def test_the_agent_cannot_import(kc, guide):
    result = import_keychain(kc, guide, as_agent=True)
    assert result.returncode == 1
    assert open_store(kc.config()).names() == []


def test_migration_into_the_file_store(tmp_path, guide, monkeypatch):
    """The source is read through security whatever the store: a guide user may pick `file`."""
    monkeypatch.setenv(LOG_VAR, str(LOG.path))
    (tmp_path / "filestore").mkdir()
    tree = Tree(tmp_path / "filestore", extra_config=f"[keychain]\nsecurity = {FAKE}\n")
    assert tree.run("secrets", "init").returncode == 0
    result = tree.run("secrets", "import-keychain", "--keychain", guide, "--service", SERVICE,
                      input=GUIDE_PASSWORD.encode() + b"\n", env={LOG_VAR: str(LOG.path)})
    assert result.returncode == 0, result.stderr
    store = open_store(tree.config())
    assert {name: store.get(name) for name in store.names()} == EXPECTED


def test_nothing_of_the_migration_in_argv_or_the_audit_log(kc, guide, phone):
    assert import_keychain(kc, guide).returncode == 0
    audit = (kc.state / "audit.log").read_bytes()
    for value in [*EXPECTED.values(), GUIDE_PASSWORD.encode(), totp.to_base32(phone.secret).encode()]:
        assert value not in audit
    assert LOG.leaks() == [], LOG.leaks()
