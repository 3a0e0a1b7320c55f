"""The fake security(1) for tests: where it lives, an install tree that uses it, and its argv log.

One log serves every keychain test in this pytest run (LOG), with every secret value and
keychain password those tests used, so a test can check that none of them ever reached argv.
"""

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

from installtree import REPO, Tree

FAKE = REPO / "tests" / "fakes" / "security"
LOG_VAR = "CLAWGATE_FAKE_SECURITY_LOG"
FAIL_VAR = "CLAWGATE_FAKE_SECURITY_FAIL_ADD"


class ArgvLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.secrets: Dict[bytes, str] = {}

    def remember(self, *values: Union[bytes, str], what: str = "a secret value") -> None:
        for value in values:
            raw = value if isinstance(value, bytes) else value.encode()
            if raw:
                self.secrets[raw] = what

    def entries(self) -> List[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]

    def mark(self) -> int:
        return len(self.entries())

    def since(self, mark: int) -> List[dict]:
        return self.entries()[mark:]

    def leaks(self) -> List[str]:
        """Each remembered secret found in any argv the fake received, as itself or as hex.

        An argument equal to the value (or to -wVALUE) counts however short the value; a value
        inside a longer argument counts from 8 bytes up (shorter ones turn up in temp paths).
        """
        found = []
        for entry in self.entries():
            if "argv" not in entry:
                continue
            args = [os.fsencode(arg) for arg in entry["argv"]]
            joined = b"\0".join(args)
            for secret, what in self.secrets.items():
                forms = (secret, secret.hex().encode(), secret.hex().upper().encode())
                whole = any(arg in forms or arg[2:] in forms for arg in args)
                inside = len(secret) >= 8 and any(form in joined for form in forms)
                if whole or inside:
                    found.append(f"{what} ({len(secret)} bytes) in argv {entry['argv']}: {secret!r}")
        return found

    @staticmethod
    def services(entry: dict) -> List[str]:
        """The -s values of one logged command (argv or stdin)."""
        args = entry.get("argv") or entry.get("stdin") or []
        return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "-s"]


_LOG_DIR = tempfile.mkdtemp(prefix="clawgate-fake-security-")
atexit.register(shutil.rmtree, _LOG_DIR, True)
LOG = ArgvLog(Path(_LOG_DIR) / "argv.log")


def security(*args: str, input: Optional[bytes] = None, extra: Optional[Dict[str, str]] = None
             ) -> subprocess.CompletedProcess:
    """Run the fake directly (as a test or the guide's scripts would), logging to LOG."""
    env = {"PATH": "/usr/bin:/bin", LOG_VAR: str(LOG.path), **(extra or {})}
    return subprocess.run([str(FAKE), *args], input=input, capture_output=True, env=env, timeout=60)


def session(lines: Iterable[str], extra: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """`security -i` with these command lines on stdin."""
    return security("-i", input="".join(line + "\n" for line in lines).encode(), extra=extra)


def q(text: str) -> str:
    """Quote one argument for a -i line, as split_line() in security.c reads it."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class KeychainTree(Tree):
    """An install tree with `store = keychain`, driving the fake, logging to LOG."""

    def __init__(self, root: Path, **kw) -> None:
        keychains = root / "Keychains"
        keychains.mkdir(parents=True)
        self.keychain = keychains / "clawgate.keychain-db"
        kw.setdefault("extra_config", f"[keychain]\nsecurity = {FAKE}\npath = {self.keychain}\n")
        super().__init__(root, store="keychain", **kw)

    def env(self, as_agent: bool, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        env = super().env(as_agent, extra)
        env.setdefault(LOG_VAR, str(LOG.path))
        return env

    def init(self) -> None:
        result = self.run("secrets", "init")
        assert result.returncode == 0, result.stderr
        LOG.remember(self.password(), what="the keychain password")

    def password(self) -> str:
        return (self.state / "keychain-password").read_text()

    def set_secret(self, name: str, value: bytes, tier: Optional[str] = None) -> None:
        LOG.remember(value)
        super().set_secret(name, value, tier)

    def enroll_seed(self, params=None):
        params = super().enroll_seed(params)
        from clawgate import totp

        LOG.remember(params.secret, totp.to_base32(params.secret), what="the TOTP seed")
        return params

    def items(self) -> List[dict]:
        """The fake keychain's items, decoded (attributes as text, data as bytes)."""
        raw = json.loads(self.keychain.read_text())["items"]
        return [{key: (bytes.fromhex(value) if key == "data" else bytes.fromhex(value).decode("utf-8", "replace"))
                 for key, value in item.items() if value is not None} for item in raw]
