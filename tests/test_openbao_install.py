"""install.sh --store openbao checks OpenBao before it changes anything, as the owner (issue 22,
the newcomer's review): a wrong secret id, an unreachable address or a CA the owner cannot read is
one line on stderr and exit 6, and the machine is exactly as before (its file tree, the sudoers
file, the users); a dry run makes the same check. Real OpenBao (DevServer), real users and sudo."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from baoserver import DevServer
from rootenv import INSTALL, SUDOERS_DIR, RootEnv, run, user_exists

pytestmark = pytest.mark.root
WRONG_ID = "0badc0de-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def bao(tmp_path_factory):
    server = DevServer(tmp_path_factory.mktemp("bao"))
    shared = Path(tempfile.mkdtemp(prefix="clawgate-baoca-", dir="/opt"))
    try:
        shared.chmod(0o755)
        ca = shared / "ca.pem"
        shutil.copy(server.ca, ca)
        ca.chmod(0o644)
        private = shared / "root-only"
        private.mkdir(mode=0o700)
        shutil.copy(server.ca, private / "ca.pem")  # readable by root, not by the owner
        server.shared_ca, server.private_ca = str(ca), str(private / "ca.pem")
        yield server
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        server.stop()


def bao_args(server, owner, address=None, ca=None) -> "list[str]":
    return ["--store", "openbao", "--openbao-address", address or server.address, "--openbao-ca",
            ca or server.shared_ca, "--openbao-role-id", owner.role_id, "--openbao-prefix", owner.prefix]


def snapshot(env: RootEnv) -> dict:
    """Everything install.sh could have touched: the tree under the test's root, the sudoers file, the users."""
    tree = {}
    for path in sorted([env.root, *env.root.rglob("*")]):
        st = os.lstat(path)
        content = os.readlink(path) if path.is_symlink() else (path.read_bytes() if path.is_file() else None)
        tree[str(path)] = (st.st_mode, st.st_uid, st.st_gid, content)
    sudoers = env.sudoers.read_bytes() if env.sudoers.exists() else None
    # (other tests may add and remove their own files in sudoers.d meanwhile: only this agent's are compared)
    return {"tree": tree, "sudoers": sudoers, "agent": user_exists(env.agent_name),
            "sudoers.d": sorted(name for name in os.listdir(SUDOERS_DIR) if env.agent_name in name)}


def refused(env: RootEnv, argv: "list[str]", given: bytes, *words: str) -> str:
    before = snapshot(env)
    got = run(argv, input=given)
    err = got.stderr.decode()
    assert got.returncode == 6, (got.returncode, err, got.stdout.decode()[-2000:])
    assert err.count("\n") == 1 and err.startswith("clawgate install: ") and "nothing was changed" in err, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    assert "==> Installing" not in got.stdout.decode()
    assert snapshot(env) == before
    return err


FAULTS = ("wrong secret id", "unreachable address", "CA the owner cannot read")


def fault_args(server, owner, fault: str) -> "tuple[list[str], bytes, tuple[str, ...]]":
    if fault == "wrong secret id":
        return bao_args(server, owner), f"{WRONG_ID}\n".encode(), ("refused the AppRole login", "secret id")
    if fault == "unreachable address":
        from proxykit import free_port

        return (bao_args(server, owner, address=f"https://127.0.0.1:{free_port()}"), f"{owner.secret_id}\n".encode(),
                ("unreachable", "--openbao-address"))
    return bao_args(server, owner, ca=server.private_ca), f"{owner.secret_id}\n".encode(), ("--openbao-ca", "cannot read")


@pytest.mark.parametrize("fault", FAULTS)
def test_a_first_install_that_fails_the_openbao_check_changes_nothing(bao, fault):
    owner = bao.owner(f"clawgate/first-{FAULTS.index(fault)}-{os.getpid()}")
    with RootEnv(install=False) as env:
        args, given, words = fault_args(bao, owner, fault)
        refused(env, env.install_argv(*args), given, *words)
        dry = run(env.install_argv(*args, "--dry-run"), input=given)  # the dry run checks it too
        assert dry.returncode == 6 and dry.stderr.decode().count("\n") == 1, dry.stderr
        assert not env.prefix.exists() and not env.sudoers.exists() and not user_exists(env.agent_name)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_rerun_that_fails_the_openbao_check_changes_nothing(bao, fault):
    owner = bao.owner(f"clawgate/rerun-{FAULTS.index(fault)}-{os.getpid()}")
    with RootEnv(install_args=bao_args(bao, owner), install_input=f"{owner.secret_id}\n".encode()) as env:
        args, given, words = fault_args(bao, owner, fault)
        env.extra_args = []
        refused(env, env.install_argv(*args), given, *words)
        if fault != "wrong secret id":  # nothing on stdin: the secret id the host keeps is checked, as the owner
            refused(env, env.install_argv(*args), b"", *words)
        kept = run(env.install_argv(*bao_args(bao, owner)), input=b"")
        assert kept.returncode == 0 and "already installed as asked" in kept.stdout.decode(), kept.stderr


def test_a_rerun_whose_kept_secret_id_was_revoked_is_refused_before_any_change(bao):
    owner = bao.owner(f"clawgate/revoked-{os.getpid()}")
    with RootEnv(install_args=bao_args(bao, owner), install_input=f"{owner.secret_id}\n".encode()) as env:
        bao.api("POST", f"auth/approle/role/{owner.role}/secret-id/destroy", {"secret_id": owner.secret_id})
        env.extra_args = []
        err = refused(env, env.install_argv(*bao_args(bao, owner), "--proxy-port", "18217"), b"",
                      "refused the AppRole login", "openbao-secret-id")
        assert "--proxy-port 18217" not in err
        # doctor's fix, as printed, with a fresh secret id on its stdin: this install, its fleet kept
        said = next(line for line in env.doctor().stdout.decode().splitlines() if line.startswith("FAIL  openbao token"))
        command = said.split("| sudo ./install.sh ", 1)[1].split(" (ROLE", 1)[0]
        fresh = bao.api("POST", f"auth/approle/role/{owner.role}/secret-id")["data"]["secret_id"]
        again = run(["bash", str(INSTALL), *command.split()], input=f"{fresh}\n".encode())
        assert again.returncode == 0, again.stderr
        assert "==> Installation successful" in again.stdout.decode() or "nothing to do" in again.stdout.decode()
        assert (env.state / "openbao-secret-id").read_text().strip() == fresh
        kept = run(env.install_argv("--store", "openbao"), input=b"")  # the settings and the secret id kept, said so
        assert kept.returncode == 0 and "its secret id (kept)" in kept.stdout.decode(), kept.stderr.decode()
        assert f"prefix = {owner.prefix}\n" in env.config_path.read_text()  # not the default clawgate/OWNER
        gone = env.uninstall(purge=True)
        assert gone.returncode == 0 and "OpenBao still has this host's AppRole secret id" in gone.stdout.decode()


def test_the_dry_run_checks_openbao_as_the_owner_and_says_so(bao):
    owner = bao.owner(f"clawgate/dry-{os.getpid()}")
    with RootEnv(install=False) as env:
        good = run(env.install_argv(*bao_args(bao, owner), "--dry-run"), input=f"{owner.secret_id}\n".encode())
        out = good.stdout.decode()
        assert good.returncode == 0, good.stderr
        assert "checked first, as the owner:" in out and "AppRole login (the one given)" in out, out
        assert f"policy covers secret/{owner.prefix}/" in out
        wrapped = run(env.install_argv(*bao_args(bao, owner), "--dry-run"), input=b"hvs.wrapping-token-shape\n")
        assert wrapped.returncode == 0 and "unwrapped and logged in with by the real run only" in wrapped.stdout.decode()
        nothing = run(env.install_argv(*bao_args(bao, owner), "--dry-run"), input=b"")
        assert nothing.returncode == 0 and "no secret id given to this dry run" in nothing.stdout.decode()
        assert not env.prefix.exists() and not user_exists(env.agent_name)


def test_a_sealed_openbao_is_one_line_before_any_change(tmp_path):
    from baoserver import FileServer

    server = FileServer(tmp_path)
    try:
        shared = Path(tempfile.mkdtemp(prefix="clawgate-baoca-", dir="/opt"))
        shared.chmod(0o755)
        shutil.copy(server.ca, shared / "ca.pem")
        (shared / "ca.pem").chmod(0o644)
        owner = server.owner(f"clawgate/sealed-{os.getpid()}")
        server.seal()
        with RootEnv(install=False) as env:
            refused(env, env.install_argv(*bao_args(server, owner, ca=str(shared / "ca.pem"))),
                    f"{owner.secret_id}\n".encode(), "sealed", "unseal")
        shutil.rmtree(shared)
    finally:
        server.stop()
