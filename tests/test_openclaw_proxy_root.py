"""The real OpenClaw as the agent uses an API key it never holds (invariant 15): its model provider
is the block `clawgate openclaw-config --proxy openai` prints (baseUrl the proxy's route, apiKey
the route's token through clawgate's exec SecretRef provider), and one turn, streamed and then
answered in plain JSON, reaches the loopback provider with the real key. While the provider holds
the answer open, root reads the memory of every process of the agent, again and again for the
whole turn: the key is never there. Needs root and the OpenClaw kit (tests/openclawkit.py)."""

import json
import subprocess
import threading
import time

import pytest

import openclaw_model
import openclawkit
import proxykit
from provider import Provider
from rootenv import RUNUSER, RootEnv

pytestmark = pytest.mark.root

KEY = b"sk-proj-OPENCLAWREALKEY-5e4d3c2b1a"


@pytest.fixture(scope="module")
def world():
    kit = openclawkit.require()
    with RootEnv(proxy=True) as env:
        provider_dir = env.root / "provider"
        provider_dir.mkdir()
        provider_dir.chmod(0o755)  # the owner reads the CA in it (a test run's umask may be 077)
        provider = Provider(provider_dir)
        try:
            env.enroll_seed()
            env.set_secret("openai/key", KEY, "open")
            assert env.owner("secrets", "use-only", "openai/key").returncode == 0
            added = env.owner("route", "add", "openai", "--upstream", f"https://localhost:{provider.port}/v1",
                              "--secret", "openai/key", "--inject", "Authorization: Bearer {secret}",
                              "--ca", str(provider.ca_path), "--allow-private")
            assert added.returncode == 0, added.stderr
            env.start_proxy()
            yield env, provider, kit
        finally:
            provider.close()


def printed_config(env: RootEnv) -> dict:
    result = env.agent("openclaw-config", "--proxy", "openai")
    assert result.returncode == 0, result.stderr
    return json.loads("\n".join(line for line in result.stdout.decode().splitlines() if not line.startswith("//")))


def test_the_printed_block_points_openclaw_at_the_proxy_with_the_token_by_secretref(world):
    env, _, _ = world
    block = printed_config(env)["models"]["providers"]["clawgate-openai"]
    assert block["baseUrl"] == f"http://127.0.0.1:{env.proxy_port}/openai"
    assert block["apiKey"] == {"source": "exec", "provider": "clawgate", "id": "proxy-token:openai"}


def run_turn_watching(env: RootEnv, kit, provider: Provider, document: dict) -> "tuple[int, str, set]":
    """One turn as the agent, and what the agent's processes held in memory at any scan during it."""
    openclaw_model.write_config(env.agent_home, document, env.agent_name)
    variables = {"HOME": str(env.agent_home), "PATH": f"{kit.bin_dir}:{env.prefix / 'bin'}:/usr/bin:/bin",
                 "LANG": "C.UTF-8", "OPENCLAW_NO_AUTO_UPDATE": "1"}
    argv = [RUNUSER, "-u", env.agent_name, "--", "/usr/bin/env", "-i",
            *(f"{k}={v}" for k, v in variables.items()), *openclaw_model.turn_argv("Say hello.")]
    agent_uid = int(subprocess.run(["id", "-u", env.agent_name], capture_output=True).stdout)
    before = len(provider.seen)
    found: "set[bytes]" = set()
    scanned: "list[int]" = []
    provider.delay = 1.0  # between events: the turn is in flight, the request already went up
    try:
        turn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd="/")
        out: dict = {}
        reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), turn.communicate(timeout=240))))
        reader.start()
        # Scanned again and again for the whole turn, every readable region of every process of
        # the agent's: never the key. (What a scan finds of strings V8 keeps is not steady from one
        # run to the next, so the check that the scan saw anything is the bytes it read.)
        deadline = time.monotonic() + 200
        while turn.poll() is None and time.monotonic() < deadline:
            for pid in proxykit.pids_of(agent_uid):
                try:
                    found |= proxykit.memory_holds(pid, [KEY], scanned)
                except (OSError, MemoryError):
                    continue
            time.sleep(0.1)
        reader.join()
        assert len(provider.seen) > before, "the turn never reached the provider"
    finally:
        provider.delay = 0.0
    assert sum(scanned) > 50 << 20, f"the memory scans read only {sum(scanned)} bytes: they prove nothing"
    return turn.returncode, out.get("stdout", b"").decode(errors="replace"), found


@pytest.mark.parametrize("answer", ["stream", "json"])
def test_openclaw_through_the_proxy_gets_the_answer_and_never_holds_the_key(world, answer):
    env, provider, kit = world
    document = openclaw_model.config("", "", None)
    printed = printed_config(env)
    entry = printed["models"]["providers"]["clawgate-openai"]
    if answer == "json":  # the provider answers this path with one JSON object, not events
        entry["baseUrl"] += "/json"
    entry["models"] = openclaw_model.provider_entry("", "")["models"]
    document["models"] = {"mode": "replace", "providers": {openclaw_model.PROVIDER_ID: entry}}
    document["secrets"] = printed["secrets"]
    code, stdout, in_memory = run_turn_watching(env, kit, provider, document)
    assert code == 0, stdout
    assert "Hello from the provider" in stdout
    seen = provider.last()
    assert seen.headers["authorization"] == "Bearer " + KEY.decode()
    assert seen.path.startswith("/v1/")
    assert KEY not in in_memory
    for path in env.agent_home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert KEY not in path.read_bytes(), path
