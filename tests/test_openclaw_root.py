"""OpenClaw end to end, as root: the real install.sh, fresh users, the real sudo.

The gateway runs as the agent and starts the provider exactly as the block that
`clawgate openclaw-config` prints says: `command` + `args`, no shell, an empty
environment (no passEnv), cwd = the command's directory, request on stdin
(OpenClaw src/secrets/resolve.ts, runExecResolver). These tests do the same.
"""

import json
import os
import stat

import pytest

from rootenv import RootEnv, run

pytestmark = pytest.mark.root

SECRETS = {
    "openai/api-key": (b"sk-open-0123456789abcdef", "open"),
    "db/password": (b"granted-pw-5e6f7a8b", "restricted"),
    "vault/token": (b"restricted-tok-9c0d1e2f", "restricted"),
}


@pytest.fixture(scope="module")
def env():
    with RootEnv() as root_env:
        root_env.enroll_seed()
        for name, (value, tier) in SECRETS.items():
            root_env.set_secret(name, value, tier)
        result = root_env.agent("approve", "db/password", root_env.code())
        assert result.returncode == 0, result.stderr
        yield root_env


def provider(env) -> dict:
    result = env.agent("openclaw-config")
    assert result.returncode == 0, result.stderr
    text = "\n".join(line for line in result.stdout.decode().splitlines() if not line.startswith("//"))
    return json.loads(text)["secrets"]["providers"]["clawgate"]


def as_gateway(env, payload: bytes):
    """Start the provider the way OpenClaw's gateway does, as the agent."""
    block = provider(env)
    argv = ["runuser", "-u", env.agent_name, "--", "/usr/bin/env", "-i", block["command"], *block["args"]]
    return run(argv, input=payload)


def request(ids) -> bytes:
    return json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ids}).encode()


def test_the_printed_block_names_this_install(env):
    block = provider(env)
    assert block["command"] == "/usr/bin/sudo"
    assert block["args"] == ["-n", "-u", env.owner_name, str(env.libexec / "broker"), "resolve"]
    assert block["jsonOnly"] is True
    # OpenClaw wants the command owned by the gateway's user unless allowInsecurePath is set;
    # sudo is root's (the agent cannot replace it) and a regular file, not a symlink.
    st = os.lstat(block["command"])
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022
    assert block["allowInsecurePath"] is True


def test_the_gateway_path_answers_a_mixed_request_in_one_reply(env):
    result = as_gateway(env, request(["openai/api-key", "db/password", "vault/token", "missing/x"]))
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["protocolVersion"] == 1
    assert reply["values"] == {
        "openai/api-key": SECRETS["openai/api-key"][0].decode(),
        "db/password": SECRETS["db/password"][0].decode(),
    }
    assert reply["errors"]["vault/token"]["message"].startswith("approval required (restricted")
    assert reply["errors"]["missing/x"] == {"message": "not found"}


def test_the_gateway_path_audits_each_id_as_the_agent(env):
    as_gateway(env, request(["openai/api-key", "vault/token"]))
    records = [json.loads(line) for line in (env.state / "audit.log").read_bytes().splitlines()]
    recent = [r for r in records if r["event"] == "resolve"][-2:]
    assert [(r["name"], r["result"], r["role"], r["caller"]) for r in recent] == [
        ("openai/api-key", "ok", "agent", env.agent_name),
        ("vault/token", "denied", "agent", env.agent_name),
    ]
    log = (env.state / "audit.log").read_bytes()
    assert not any(value in log for value, _tier in SECRETS.values())


@pytest.mark.parametrize("payload", [
    b"{", request(["a"])[:-1], json.dumps({"protocolVersion": 2, "ids": []}).encode(),
    request([f"n{i}" for i in range(513)]),
], ids=["truncated", "unterminated", "version 2", "513 ids"])
def test_the_gateway_path_rejects_malformed_requests(env, payload):
    result = as_gateway(env, payload)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.startswith(b"clawgate: resolve: ") and len(result.stderr.splitlines()) == 1


def test_the_front_door_resolve_verb_is_the_same_provider(env):
    result = env.agent("resolve", input=request(["openai/api-key"]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["values"] == {"openai/api-key": SECRETS["openai/api-key"][0].decode()}


def test_run_as_the_agent_goes_through_sudo_and_redacts(env):
    body = 'printf "%s\\n" "$K"; printf "%s" "$D" >&2; exit 7'
    result = env.agent("run", "--env", "K=openai/api-key", "--env", "D=db/password", "--", "/bin/sh", "-c", body)
    assert result.returncode == 7, result.stderr
    assert result.stdout == b"[redacted:openai/api-key]\n"
    assert result.stderr == b"[redacted:db/password]"


def test_run_as_the_agent_needs_the_grant(env, tmp_path):
    result = env.agent("run", "--env", "T=vault/token", "--", "/bin/true")
    assert result.returncode == 3
    assert result.stderr.startswith(b"clawgate: vault/token: approval required")


def test_run_audits_each_fetch_as_a_get_by_the_agent(env):
    env.agent("run", "--env", "K=openai/api-key", "--", "/bin/true")
    records = [json.loads(line) for line in (env.state / "audit.log").read_bytes().splitlines()]
    last_get = [r for r in records if r["event"] == "get"][-1]
    assert (last_get["name"], last_get["role"], last_get["result"]) == ("openai/api-key", "agent", "ok")


def test_the_agent_cannot_reach_the_broker_another_way(env):
    """Only the sudoers entry opens the owner's side: the state is closed to the agent."""
    result = env.run_as(env.agent_name, str(env.libexec / "broker"), "resolve", input=request(["openai/api-key"]))
    assert result.returncode != 0 and result.stdout == b""
