"""The root end-to-end harness: the real install.sh, real users, the real sudo.

    with RootEnv() as env:                       # fresh owner + agent users, installed
        env.enroll_seed()                        # through `clawgate enroll --import`
        env.set_secret("db", b"pw", tier="open")
        env.agent("get", "db")                   # runuser -u AGENT -- PREFIX/bin/clawgate get db
        env.agent("approve", "x", env.code())    # env.code(): a valid code nobody has spent

Everything lives under a root-owned temp dir in /opt (never /tmp: it is world-writable
and the installer refuses it); close() runs `install.sh --uninstall --purge`, deletes
both users and the temp dir. Needs root; mark tests that use it `@pytest.mark.root`.
"""

import json
import os
import pwd
import random
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from installtree import REPO, Tree, python_for_install
from proxykit import free_port, start as start_proxy_process, stop as stop_proxy_process
from clawgate import totp

INSTALL = REPO / "install.sh"
# What install.sh reads from its source tree (its $SRC): copied by RootEnv.readable_installer.
INSTALLED_FROM = ("install.sh", "bin", "lib", "man", "completion", "docs", "launchd", "skill", "sudoers", "systemd")
SUDOERS_DIR = Path("/etc/sudoers.d")
TEST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# By its path: a test may give the user a PATH without sbin (Debian keeps runuser there).
RUNUSER = shutil.which("runuser", path=TEST_PATH) or "runuser"


def random_user() -> str:
    return "cg" + "".join(random.choices(string.ascii_lowercase, k=6))


def run(argv: Sequence[str], input: Optional[bytes] = b"", env: Optional[Dict[str, str]] = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    base = {"PATH": TEST_PATH, "LANG": "C.UTF-8"}
    base.update(env or {})
    return subprocess.run(list(argv), input=input, capture_output=True, env=base, cwd="/", timeout=timeout)


def make_user(name: str) -> None:
    subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name], check=True)


def delete_user(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True)


def user_exists(name: str) -> bool:
    return subprocess.run(["id", "-u", name], capture_output=True).returncode == 0


HOLD_LOCK = """import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def relay_while_sudo_is_made_to_kill_it(env: "RootEnv", name: str, code: str, hang: float = 20,
                                        on_a_terminal: bool = False) -> None:
    """The agent relays `code` through the real sudo, to `approve NAME CODE`, or to `elevate CODE --
    /usr/bin/true` when NAME is @root; once the code is spent (and
    the record waits for the audit log, whose lock is held here), the agent sends its sudo SIGALRM,
    which sudo takes for its command's timeout: HUP, TERM, then KILL 2 s later (to the command's
    process group when sudo runs it on a pty of its own: use_pty and a terminal). Returns once the
    grant's record is in the log; fails if it never comes."""
    import fcntl
    import pty
    import termios

    agent = pwd.getpwnam(env.agent_name)
    terminal = pty.openpty() if on_a_terminal else None

    def take_terminal() -> None:  # the new session's controlling terminal: sudo sees one
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    streams = dict(stdin=terminal[1], stdout=terminal[1], stderr=terminal[1], preexec_fn=take_terminal) if terminal \
        else dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    spent_before = json.loads((env.state / "totp.json").read_bytes())["last_step"]
    holder = subprocess.Popen(["python3", "-c", HOLD_LOCK, str(env.state / "audit.log")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    assert holder.stdin is not None and holder.stdout is not None
    assert holder.stdout.readline() == b"held\n"
    try:
        program = (["-u", "root", str(env.libexec / "elevate"), code, "--", "/usr/bin/true"] if name == "@root"
                   else ["-u", env.owner_name, str(env.libexec / "approve"), name, code])
        sudo = subprocess.Popen(["/usr/bin/sudo", "-n", *program],
                                user=agent.pw_uid, group=agent.pw_gid, extra_groups=[], cwd="/",
                                env={"PATH": "/usr/bin:/bin"}, start_new_session=True, **streams)  # type: ignore[call-overload]
        deadline = time.time() + hang
        while json.loads((env.state / "totp.json").read_bytes())["last_step"] == spent_before:
            assert time.time() < deadline, "the code was not spent"
            time.sleep(0.01)
        assert env.run_as(env.agent_name, "kill", "-ALRM", str(sudo.pid)).returncode == 0
        sudo.wait(timeout=hang)  # sudo ends once its command is gone; the pipes may live on
    finally:
        holder.stdin.close()
        holder.wait()
        for fd in terminal or ():
            os.close(fd)
    sudo.communicate(timeout=hang)
    deadline = time.time() + hang
    while not any(json.loads(line).get("event") == "grant" and json.loads(line).get("name") == name
                  for line in (env.state / "audit.log").read_bytes().splitlines()[-5:]):
        assert time.time() < deadline, "the grant has no record: its approve was killed half-way"
        time.sleep(0.05)


class RootEnv:
    """One throwaway install: a fresh owner (made here) and agent (made by install.sh)."""

    # Handing out unspent codes works exactly as in the unprivileged tree (uses .seed, .last_step).
    code = Tree.code
    spent_code = Tree.spent_code

    def __init__(self, ttl: Optional[Dict[str, str]] = None, service: bool = False,
                 install_args: Sequence[str] = (), install: bool = True, proxy: bool = False,
                 install_input: Optional[bytes] = None) -> None:
        assert os.geteuid() == 0, "RootEnv needs root"
        self.root = Path(tempfile.mkdtemp(prefix="clawgate-test-", dir="/opt"))
        self.root.chmod(0o755)  # the agent and the owner must reach PREFIX/bin and libexec
        self.owner_name = random_user()
        self.agent_name = random_user()
        self.prefix = self.root / "prefix"
        self.state = self.root / "state"
        self.agent_home = self.root / "agent-home"
        self.service_dir = self.root / "units"
        self.libexec = self.prefix / "libexec" / "clawgate"
        self.door = self.prefix / "bin" / "clawgate"
        self.config_path = self.prefix / "etc" / "clawgate" / "clawgate.conf"
        self.sudoers = SUDOERS_DIR / f"clawgate-{self.agent_name}"
        self.service = service
        self.proxy = proxy  # the proxy's unit, in service_dir (started by hand: start_proxy)
        self.proxy_port = free_port()
        self.proxy_unit = self.service_dir / "clawgate-proxy.service"
        self.proxy_process: Optional[subprocess.Popen] = None
        self.extra_args = list(install_args)
        self.install_input = install_input  # install.sh's stdin (--store openbao: the secret id)
        self.seed: Optional[totp.Params] = None
        self.last_step = -1
        make_user(self.owner_name)
        try:
            if install:
                result = self.install()
                assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
                if ttl:
                    self.set_ttl(**ttl)
        except BaseException:
            self.close()
            raise

    # -- install.sh ---------------------------------------------------------------------------
    def install_argv(self, *extra: str, installer: Optional[Path] = None) -> "list[str]":
        argv = ["bash", str(installer or INSTALL), "--owner", self.owner_name, "--agent-user", self.agent_name,
                "--prefix", str(self.prefix), "--state-dir", str(self.state), "--agent-home", str(self.agent_home),
                "--python", python_for_install(), "--yes"]
        argv += ["--service-dir", str(self.service_dir)]
        argv += ["--proxy-port", str(self.proxy_port)] + ([] if self.proxy else ["--no-proxy"])
        if self.service:
            argv += ["--gateway-command", "/bin/sleep infinity"]
        else:
            argv += ["--no-service"]
        return argv + self.extra_args + list(extra)

    def readable_installer(self) -> Path:
        """install.sh and the source tree it installs from, copied where any user can read them: a
        test that runs install.sh as a throwaway user must pass from a checkout only root can read
        (cloned under /root, or into a 0750 home). Copied once per RootEnv, removed with it."""
        copy = self.root / "source"
        if not copy.exists():
            copy.mkdir(mode=0o755)
            for entry in INSTALLED_FROM:
                source = REPO / entry
                if source.is_dir():
                    shutil.copytree(source, copy / entry, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                elif source.exists():
                    shutil.copy2(source, copy / entry)
            subprocess.run(["chmod", "-R", "a+rX,go-w", str(copy)], check=True)
        return copy / "install.sh"

    def install(self, *extra: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        return run(self.install_argv(*extra), input=self.install_input, env=env)

    def uninstall(self, purge: bool = True, *extra: str) -> subprocess.CompletedProcess:
        argv = ["bash", str(INSTALL), "--uninstall", "--prefix", str(self.prefix), "--yes", *extra]
        return run(argv + (["--purge"] if purge else []), input=None)

    def set_ttl(self, **caps: str) -> None:
        """Shorten the TTL caps in the installed config (install.sh keeps [ttl] across runs)."""
        lines = self.config_path.read_text().splitlines()
        out = [line for line in lines if line.split("=")[0].strip() not in caps]
        at = out.index("[ttl]") + 1
        out[at:at] = [f"{tier} = {value}" for tier, value in caps.items()]
        self.config_path.write_text("\n".join(out) + "\n")

    # -- running as the principals ------------------------------------------------------------
    def run_as(self, user: str, *argv: str, input: Optional[bytes] = b"", env: Optional[Dict[str, str]] = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
        return run([RUNUSER, "-u", user, "--", *argv], input=input, env=env, timeout=timeout)

    def agent(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """`clawgate ARGS` as the agent: through the front door and the real sudo."""
        return self.run_as(self.agent_name, str(self.door), *args, **kw)

    def owner(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run_as(self.owner_name, str(self.door), *args, **kw)

    def doctor(self, as_owner: bool = False) -> subprocess.CompletedProcess:
        return self.owner("doctor") if as_owner else run([str(self.door), "doctor"])

    # -- owner set-up shortcuts ---------------------------------------------------------------
    def enroll_seed(self, params: Optional[totp.Params] = None) -> totp.Params:
        params = params or totp.Params(totp.new_secret())
        self.seed = params
        self.last_step = -1
        code = self.code()  # spent by enroll's confirmation
        result = self.owner("enroll", "--import", input=f"{totp.to_base32(params.secret)}\n{code}\n".encode())
        assert result.returncode == 0, result.stderr
        return params

    def enroll_at_a_terminal(self) -> "tuple[int, str, str]":
        """`clawgate enroll` at a terminal, as a person: the secret read off the URI, the current
        code typed. (exit status, what the terminal showed, the code typed); the seed is kept."""
        import io

        import pexpect

        child = pexpect.spawn(RUNUSER, ["-u", self.owner_name, "--", str(self.door), "enroll"],
                              timeout=30, encoding="utf-8", dimensions=(60, 200))
        child.logfile_read = io.StringIO()
        child.expect(r"secret=([A-Z2-7]+)")
        params = totp.Params(totp.from_base32(child.match.group(1)))
        child.expect_exact("to confirm: ")
        step = totp.step_at(time.time(), params.period)
        code = totp.hotp(params.secret, step, params.digits, params.algorithm)
        child.sendline(code)
        child.expect(pexpect.EOF)
        child.close()
        self.seed, self.last_step = params, step
        return child.exitstatus, child.logfile_read.getvalue(), code

    def set_secret(self, name: str, value: bytes, tier: Optional[str] = None) -> None:
        result = self.owner("secrets", "set", name, "--raw", "--force", *(["--tier", tier] if tier else []), input=value)
        assert result.returncode == 0, result.stderr

    # -- the proxy, as its unit runs it ---------------------------------------------------------
    def start_proxy(self) -> subprocess.Popen:
        """The installed unit's ExecStart as its User=, with the empty environment systemd gives
        (no systemd runs here; the unit's sandboxing is checked apart, by systemd-analyze)."""
        unit = dict(line.split("=", 1) for line in self.proxy_unit.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
        self.proxy_process = start_proxy_process([RUNUSER, "-u", unit["User"], "--", *unit["ExecStart"].split()],
                                                 self.proxy_port)
        return self.proxy_process

    def stop_proxy(self) -> None:
        if self.proxy_process is not None:
            stop_proxy_process(self.proxy_process)
            self.proxy_process = None

    # -- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        self.stop_proxy()
        if (self.prefix / "etc" / "clawgate" / "install.manifest").exists():
            self.uninstall(purge=True)
        for name in (self.agent_name, self.owner_name):
            if user_exists(name):
                delete_user(name)
        if self.sudoers.exists():
            self.sudoers.unlink()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "RootEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
