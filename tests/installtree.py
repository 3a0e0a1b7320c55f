"""A throwaway clawgate install in a temp dir, owned by the user running the tests.

It lays out exactly what install.sh lays out (PREFIX/libexec/clawgate/PROG,
PREFIX/libexec/clawgate/lib/clawgate/, PREFIX/bin/clawgate, PREFIX/etc/clawgate/clawgate.conf)
without touching users, sudoers or services, so the core runs unprivileged.
The agent is simulated the way sudo presents it to the owner's programs:
SUDO_UID set to the agent's uid. Root tests use the real install.sh instead.
"""

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lib"))

from clawgate import config as config_mod  # noqa: E402
from clawgate import totp  # noqa: E402

PROGRAMS = sorted(p.name for p in (REPO / "bin").iterdir() if p.is_file() and p.name != "clawgate")
DEFAULT_TTL = {"controlled": "4h", "restricted": "15m", "root": "30m"}


def load_program(name: str):
    """bin/NAME as a module, to call its functions in-process (sys.path left as it was)."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader(f"clawgate_prog_{name.replace('-', '_')}", str(REPO / "bin" / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def python_for_install() -> str:
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _with_shebang(source: Path, python: str) -> str:
    text = source.read_text()
    first, rest = text.split("\n", 1)
    assert first.startswith("#!"), source
    return f"#!{python} -IS\n{rest}"


def stage_code(prefix: Path, python: str) -> Path:
    libexec = prefix / "libexec" / "clawgate"
    (libexec / "lib").mkdir(parents=True)
    shutil.copytree(REPO / "lib" / "clawgate", libexec / "lib" / "clawgate",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in PROGRAMS:
        target = libexec / name
        target.write_text(_with_shebang(REPO / "bin" / name, python))
        target.chmod(0o755)
    return libexec


AGENT_LAUNCHER = "/home/agent/.local/libexec/clawgate-resolve"  # install.sh: AGENT_HOME/.local/libexec/...


def front_door(owner: str, agent: str, libexec: Path, agent_home: str = "/nonexistent",
               state_dir: str = "/nonexistent") -> str:
    text = (REPO / "bin" / "clawgate").read_text()
    return text.replace("@OWNER@", owner).replace("@AGENT@", agent).replace("@LIBEXEC@", str(libexec)) \
        .replace("@RESOLVE_LAUNCHER@", AGENT_LAUNCHER).replace("@AGENT_HOME@", agent_home) \
        .replace("@STATE_DIR@", state_dir).replace("@PROXY_PORT@", "8217")


def config_text(owner: str, agent: str, state_dir: Path, ttl: Dict[str, str], store: str = "file",
                extra: str = "") -> str:
    lines = ["[clawgate]", f"owner = {owner}", f"agent_user = {agent}", f"state_dir = {state_dir}",
             f"store = {store}", "", "[ttl]"] + [f"{k} = {v}" for k, v in ttl.items()]
    return "\n".join(lines) + "\n" + extra


class Tree:
    """One staged install: run its programs as the owner or as the (simulated) agent."""

    def __init__(self, root: Path, ttl: Optional[Dict[str, str]] = None, agent: str = "nobody",
                 store: str = "file", extra_config: str = "") -> None:
        self.root = root
        self.owner = pwd.getpwuid(os.geteuid()).pw_name
        self.agent = agent
        self.agent_uid = pwd.getpwnam(agent).pw_uid
        self.prefix = root / "prefix"
        self.state = root / "state"
        self.state.mkdir(mode=0o700)
        self.libexec = stage_code(self.prefix, python_for_install())
        (self.prefix / "bin").mkdir()
        door = self.prefix / "bin" / "clawgate"
        door.write_text(front_door(self.owner, agent, self.libexec))
        door.chmod(0o755)
        etc = self.prefix / "etc" / "clawgate"
        etc.mkdir(parents=True)
        self.config_path = etc / "clawgate.conf"
        self.config_path.write_text(config_text(self.owner, agent, self.state, ttl or DEFAULT_TTL, store,
                                                extra_config))
        self.config_path.chmod(0o644)
        self.seed: Optional[totp.Params] = None
        self.last_step = -1

    # -- running programs ------------------------------------------------------------------
    def env(self, as_agent: bool, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        if as_agent:
            env.update(SUDO_UID=str(self.agent_uid), SUDO_USER=self.agent)
        env.update(extra or {})
        return env

    def run(self, prog: str, *args: str, input: Optional[bytes] = b"", as_agent: bool = False,
            env: Optional[Dict[str, str]] = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.libexec / prog), *args], input=input, capture_output=True,
                              env=self.env(as_agent, env), timeout=timeout)

    def as_agent(self, prog: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(prog, *args, as_agent=True, **kw)

    # -- owner set-up shortcuts (through the real programs) -----------------------------------
    def config(self) -> config_mod.Config:
        return config_mod.load(str(self.config_path))

    def enroll_seed(self, params: Optional[totp.Params] = None) -> totp.Params:
        """Enrol through `enroll --import` (stdin: seed, then the confirming code).

        It confirms with the previous step's code, so the current and the next step's
        codes stay unspent for code(); if the clock turns a step meanwhile, enroll re-asks
        and the second line (the then previous step's code) confirms.
        """
        params = params or totp.Params(totp.new_secret())
        before = totp.step_at(time.time(), params.period) - 1
        first, second = (totp.hotp(params.secret, step, params.digits, params.algorithm)
                         for step in (before, before + 1))
        result = self.run("enroll", "--import",
                          input=f"{totp.to_base32(params.secret)}\n{first}\n{second}\n".encode())
        assert result.returncode == 0, result.stderr
        self.seed = params
        self.last_step = before + (b"does not match" in result.stderr)  # enroll spent that code
        return params

    def code(self) -> str:
        """A valid code nobody has spent yet: the current step's, or the next one's.

        Waits for the clock when both are spent, so a test may take many codes in a row.
        """
        assert self.seed is not None, "enroll first"
        period = self.seed.period
        while True:
            current = totp.step_at(time.time(), period)
            step = max(current, self.last_step + 1)
            if step <= current + 1:
                self.last_step = step
                return totp.hotp(self.seed.secret, step, self.seed.digits, self.seed.algorithm)
            time.sleep((current + 1) * period - time.time() + 0.05)

    def spent_code(self) -> str:
        """The code most recently handed out: valid in form and time, already used."""
        assert self.seed is not None and self.last_step >= 0
        return totp.hotp(self.seed.secret, self.last_step, self.seed.digits, self.seed.algorithm)

    def owner_approve(self, name: str, code: str, *extra: str) -> subprocess.CompletedProcess:
        """The owner approves the way the README says: the code on stdin, never in argv."""
        return self.run("approve", name, *extra, input=f"{code}\n".encode())

    def set_secret(self, name: str, value: bytes, tier: Optional[str] = None) -> None:
        args = ["set", name, "--raw", "--force"] + (["--tier", tier] if tier else [])
        result = self.run("secrets", *args, input=value)
        assert result.returncode == 0, result.stderr


def wrong_code(right: Sequence[str]) -> str:
    """A well-formed code that is none of the given ones."""
    candidate = 0
    while f"{candidate:06d}" in right:
        candidate += 1
    return f"{candidate:06d}"
