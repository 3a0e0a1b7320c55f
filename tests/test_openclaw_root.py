"""The real OpenClaw (pinned in tests/openclawkit.py) against the real install, as root.

Fresh users, the real install.sh, the real sudo; OpenClaw runs as the agent and starts the
provider the way it always does (dist/resolve-*.mjs, resolveExecRefs): the configured command
after assertSecureExecCommandPath (absolute, not a symlink, not group/world-writable, owned by the
gateway's user), no shell, an empty environment, cwd = the command's directory, one JSON request on
stdin, 5 s and 1 MiB of output (stdout and stderr together) by default.
"""

import json
import os
import re
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

import openclawkit
from coretools import resolve_decisions
from installtree import REPO
from rootenv import RootEnv, run

pytestmark = pytest.mark.root

SECRETS = {
    "openai/api-key": (b"sk-open-0123456789abcdef", "open"),
    "db/password": (b"granted-pw-5e6f7a8b", "restricted"),
    "vault/token": (b"restricted-tok-9c0d1e2f", "restricted"),
    "audit/key": (b"audit-restricted-4d5e6f", "restricted"),
}


@pytest.fixture(scope="module")
def kit():
    return openclawkit.require()


@pytest.fixture(scope="module")
def env(kit):
    with RootEnv() as root_env:
        root_env.enroll_seed()
        for name, (value, tier) in SECRETS.items():
            root_env.set_secret(name, value, tier)
        result = root_env.agent("approve", "db/password", root_env.code())
        assert result.returncode == 0, result.stderr
        yield root_env


# -- helpers: OpenClaw as the agent -------------------------------------------------------------

def agent_path(env, kit) -> str:
    """The agent's PATH: the pinned node and openclaw, then clawgate's front door."""
    return f"{kit.bin_dir}:{env.prefix / 'bin'}:/usr/bin:/bin"


def openclaw(env, kit, *args: str, path=None, timeout: float = 120) -> subprocess.CompletedProcess:
    variables = {"HOME": str(env.agent_home), "PATH": path or agent_path(env, kit)}
    return env.run_as(env.agent_name, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items()),
                      "openclaw", *args, timeout=timeout)


def write_agent_config(env, text: str) -> None:
    """openclaw.json, written as the agent (its home is the agent's)."""
    config = env.agent_home / ".openclaw" / "openclaw.json"
    result = env.run_as(env.agent_name, "/bin/sh", "-c", 'mkdir -p -m 700 "${1%/*}" && cat >"$1"', "sh", str(config),
                        input=text.encode())
    assert result.returncode == 0, result.stderr


def provider(env) -> dict:
    result = env.agent("openclaw-config")
    assert result.returncode == 0, result.stderr
    text = "\n".join(line for line in result.stdout.decode().splitlines() if not line.startswith("//"))
    return json.loads(text)["secrets"]["providers"]["clawgate"]


def ref(secret_id: str) -> dict:
    return {"source": "exec", "provider": "clawgate", "id": secret_id}


def config_with(env, **sections) -> str:
    return json.dumps({"secrets": {"providers": {"clawgate": provider(env)}}, **sections})


def models_config(env, ids) -> str:
    """One model provider per id, each apiKey a SecretRef to clawgate (a loopback baseUrl: no network)."""
    providers = {f"p{i}": {"baseUrl": "http://127.0.0.1:9/v1", "apiKey": ref(secret_id), "models": []}
                 for i, secret_id in enumerate(ids)}
    return config_with(env, models={"providers": providers})


def audit(env, kit) -> dict:
    result = openclaw(env, kit, "secrets", "audit", "--allow-exec", "--json")
    assert result.returncode in (0, 2), result.stderr
    return json.loads(result.stdout)


def resolves(env) -> list:
    records = [json.loads(line) for line in (env.state / "audit.log").read_bytes().splitlines()]
    return resolve_decisions(records)


def as_gateway(env, payload: bytes):
    """Start the provider exactly as OpenClaw does: no shell, empty environment, cwd its directory."""
    command = provider(env)["command"]
    return run(["runuser", "-u", env.agent_name, "--", "/usr/bin/env", "-i", "/bin/sh", "-c",
                'cd "${1%/*}" && exec "$1"', "sh", command], input=payload)


def request(ids) -> bytes:
    return json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ids}).encode()


# -- the block and the launcher -----------------------------------------------------------------

def test_the_printed_block_is_the_agents_own_launcher(env):
    block = provider(env)
    launcher = env.agent_home / ".local" / "libexec" / "clawgate-resolve"
    assert block == {"source": "exec", "command": str(launcher), "jsonOnly": True}
    # What OpenClaw demands of the command (assertSecureExecCommandPath), and nothing it has dropped.
    st = os.lstat(launcher)
    agent_uid = int(run(["id", "-u", env.agent_name]).stdout)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == agent_uid and not st.st_mode & 0o022
    assert launcher.read_text().splitlines()[-1] == \
        f"exec /usr/bin/sudo -n -u {env.owner_name} {env.libexec / 'broker'} resolve"


def test_the_launcher_is_written_as_the_agent_and_replaces_a_planted_symlink(env):
    """Root never writes through the agent's home: a symlink the agent plants where the launcher
    goes is replaced by the agent's own file, and its target is left alone."""
    launcher = env.agent_home / ".local" / "libexec" / "clawgate-resolve"
    bait = env.root / "root-owned-bait"
    bait.write_text("root's file\n")
    launcher.unlink()
    launcher.symlink_to(bait)
    os.lchown(launcher, *[int(run(["id", flag, env.agent_name]).stdout) for flag in ("-u", "-g")])
    result = env.install()
    assert result.returncode == 0, result.stderr
    assert bait.read_text() == "root's file\n" and os.stat(bait).st_uid == 0
    assert not launcher.is_symlink() and launcher.stat().st_uid == int(run(["id", "-u", env.agent_name]).stdout)
    assert env.install().stdout.decode().splitlines()[-1] == "clawgate: already installed as asked; nothing to do"


def test_openclaw_refuses_a_launcher_that_others_can_write(env, kit):
    """The defence is OpenClaw's, and install.sh must not defeat it: a group-writable launcher fails."""
    launcher = env.agent_home / ".local" / "libexec" / "clawgate-resolve"
    write_agent_config(env, models_config(env, ["openai/api-key"]))
    launcher.chmod(0o775)
    try:
        report = audit(env, kit)
        assert report["summary"]["unresolvedRefCount"] == 1, report
        doctor = env.doctor()
        assert doctor.returncode == 1 and b"FAIL  openclaw: " in doctor.stdout
    finally:
        launcher.chmod(0o755)
    assert audit(env, kit)["status"] == "clean"


def doctor_line(env, check: str) -> str:
    return next(line for line in env.doctor().stdout.decode().splitlines() if line[6:].startswith(check + ":"))


def test_doctor_checks_the_agents_openclaw_block(env):
    write_agent_config(env, "// the agent's config is JSON5\n" + config_with(env).replace("}}}", "},},}, "))
    assert doctor_line(env, "openclaw").startswith("ok    openclaw: ")
    old_block = {**provider(env), "command": "/usr/bin/sudo", "allowInsecurePath": True}
    write_agent_config(env, json.dumps({"secrets": {"providers": {"clawgate": old_block}}}))
    line = doctor_line(env, "openclaw")
    assert line.startswith("FAIL  openclaw: ") and "allowInsecurePath" in line


def test_doctor_reads_the_agents_config_as_the_agent(env):
    """A symlink the agent plants at openclaw.json is read with the agent's rights: a root-only
    file behind it stays unread (doctor says nothing of its content)."""
    secret = env.root / "root-only.json"
    secret.write_text(json.dumps({"secrets": {"providers": {"clawgate": {"source": "exec", "command": "ROOT-ONLY"}}}}))
    secret.chmod(0o600)
    config = env.agent_home / ".openclaw" / "openclaw.json"
    result = env.run_as(env.agent_name, "/bin/sh", "-c", 'mkdir -p "${2%/*}" && ln -sf "$1" "$2"', "sh",
                        str(secret), str(config))
    assert result.returncode == 0, result.stderr
    try:
        line = doctor_line(env, "openclaw")
        assert "ROOT-ONLY" not in line and line.startswith("ok    openclaw: ")
    finally:
        config.unlink()


# -- secrets audit, the real CLI ----------------------------------------------------------------

def test_audit_resolves_open_and_reports_restricted_until_approved(env, kit):
    write_agent_config(env, models_config(env, ["openai/api-key", "audit/key", "missing/key"]))
    before = audit(env, kit)
    assert before["summary"]["plaintextCount"] == 0 and before["resolution"]["refsChecked"] == 3
    unresolved = {f["jsonPath"]: f["message"] for f in before["findings"] if f["code"] == "REF_UNRESOLVED"}
    assert set(unresolved) == {"models.providers.p1.apiKey", "models.providers.p2.apiKey"}
    # OpenClaw shows the codes it knows (NOT_FOUND) and never a resolver's message.
    assert 'failed for id "missing/key" (NOT_FOUND)' in unresolved["models.providers.p2.apiKey"]
    assert 'failed for id "audit/key"' in unresolved["models.providers.p1.apiKey"]
    assert ("openai/api-key", "ok") in resolves(env) and ("audit/key", "denied") in resolves(env)

    result = env.agent("approve", "audit/key", env.code())
    assert result.returncode == 0, result.stderr
    write_agent_config(env, models_config(env, ["openai/api-key", "audit/key"]))
    after = audit(env, kit)
    assert after["status"] == "clean" and after["summary"]["unresolvedRefCount"] == 0, after
    assert resolves(env)[-2:] == [("openai/api-key", "ok"), ("audit/key", "ok")]
    log = (env.state / "audit.log").read_bytes()
    assert not any(value in log for value, _tier in SECRETS.values())


# -- the skill ----------------------------------------------------------------------------------

def skill_entry(env, kit, path=None) -> dict:
    result = openclaw(env, kit, "skills", "list", "--json", path=path)
    assert result.returncode == 0, result.stderr
    skills = json.loads(result.stdout)
    skills = skills.get("skills", skills) if isinstance(skills, dict) else skills
    return next(skill for skill in skills if skill.get("name") == "clawgate")


def test_openclaw_lists_the_clawgate_skill_as_eligible(env, kit):
    entry = skill_entry(env, kit)
    assert entry.get("eligible") is True, entry
    # The gate is real: without clawgate on PATH the same skill is not eligible. OpenClaw also looks
    # in its standard /usr/local/bin, so a system-wide clawgate there (a real install) counts too.
    system_wide = os.access("/usr/local/bin/clawgate", os.X_OK)
    assert skill_entry(env, kit, path=f"{kit.bin_dir}:/usr/bin:/bin").get("eligible") is system_wide


def test_the_skill_teaches_the_whole_flow():
    text = (REPO / "skill" / "clawgate" / "SKILL.md").read_text()
    front = text.split("---")[1]
    assert re.search(r'^name: clawgate$', front, re.M)
    metadata = json.loads(re.search(r"^metadata: (.*)$", front, re.M).group(1))
    assert metadata["openclaw"]["requires"]["bins"] == ["clawgate"]
    for needle in ("clawgate get", "Exit 3", "6-digit code", "clawgate approve", "clawgate run --env",
                   "clawgate request NAME", "clawgate request @root", "clawgate elevate ID",
                   "Never ask the owner to paste"):
        assert needle in text, needle


# -- the gateway --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gateway:
    """`openclaw gateway run` as the agent, on loopback, its auth token a SecretRef to clawgate."""

    def __init__(self, env, kit, secret_id: str) -> None:
        self.env, self.kit, self.port = env, kit, free_port()
        write_agent_config(env, config_with(env, gateway={
            "mode": "local", "bind": "loopback", "port": self.port,
            "auth": {"mode": "token", "token": ref(secret_id)}}))
        self.log = env.root / f"gateway-{self.port}.log"
        variables = {"HOME": str(env.agent_home), "PATH": agent_path(env, kit)}
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["runuser", "-u", env.agent_name, "--", "/usr/bin/env", "-i",
                 *(f"{k}={v}" for k, v in variables.items()), "openclaw", "gateway", "run"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/", start_new_session=True)

    def wait(self) -> bool:
        """True once it answers on its port, False if it exited first."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return True
            time.sleep(0.5)
        raise AssertionError(f"gateway neither listened nor exited:\n{self.log.read_text()[-3000:]}")

    def cli(self, *args: str, token: str) -> subprocess.CompletedProcess:
        return openclaw(self.env, self.kit, *args, "--port", str(self.port), "--token", token)

    def accepts(self, token: str) -> bool:
        return self.cli("gateway", "health", "--json", token=token).returncode == 0

    def reload(self, token: str) -> subprocess.CompletedProcess:
        return self.cli("secrets", "reload", "--json", token=token)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


@pytest.fixture
def gateway_token(env):
    name, value = "gateway/token", b"gw-token-0123456789abcdef0123"
    env.set_secret(name, value, "restricted")
    return name, value.decode()


def test_the_gateway_does_not_start_without_the_grant(env, kit, gateway_token):
    name, _value = gateway_token
    gateway = Gateway(env, kit, name)
    try:
        assert gateway.wait() is False
        assert "required secrets are unavailable" in gateway.log.read_text()
    finally:
        gateway.stop()


def test_the_gateway_resolves_at_start_and_reload_and_keeps_the_last_good_value(env, kit, gateway_token):
    name, value = gateway_token
    result = env.agent("approve", name, env.code())
    assert result.returncode == 0, result.stderr
    gateway = Gateway(env, kit, name)
    try:
        assert gateway.wait(), gateway.log.read_text()[-3000:]
        assert resolves(env)[-1] == (name, "ok")
        assert gateway.accepts(value) and not gateway.accepts("wrong-" + value)

        reloaded = gateway.reload(value)
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        assert resolves(env)[-1] == (name, "ok")

        # Revoked: a reload is refused and the gateway keeps serving with the value it holds.
        assert env.owner("revoke", name).returncode == 0
        refused = gateway.reload(value)
        assert refused.returncode != 0
        assert resolves(env)[-1] == (name, "denied")
        assert gateway.accepts(value)

        # Expired: the same. The grant runs out by itself; the gateway still holds the value.
        result = env.agent("approve", name, env.code(), "--ttl", "2s")
        assert result.returncode == 0, result.stderr
        while env.agent("get", name).returncode != 3:
            time.sleep(0.5)
        assert gateway.reload(value).returncode != 0 and resolves(env)[-1] == (name, "denied")
        assert gateway.accepts(value)
    finally:
        gateway.stop()
    # The owner's way to make it drop the value: restart it. Without a grant it does not come back.
    restarted = Gateway(env, kit, name)
    try:
        assert restarted.wait() is False
    finally:
        restarted.stop()


# -- the service unit ----------------------------------------------------------------------------

def unit_environment(unit: str) -> dict:
    variables = {}
    for line in unit.splitlines():
        if line.startswith("Environment="):
            key, value = line[len("Environment="):].strip('"').split("=", 1)
            variables[key] = value
    return variables


def test_the_service_unit_runs_the_real_openclaw_as_systemd_would(kit):
    """What the unit gives the gateway is enough: `#!/usr/bin/env node` finds the node beside
    openclaw, the skill finds `clawgate`, and OpenClaw knows the unit owns its lifecycle."""
    gateway = kit.bin_dir / "openclaw"
    with RootEnv(service=True, install_args=["--gateway-command", f"{gateway} gateway"]) as service_env:
        unit = (service_env.service_dir / "openclaw-gateway.service").read_text()
        assert f"ExecStart={gateway} gateway" in unit.splitlines()
        variables = unit_environment(unit)
        assert variables["OPENCLAW_SERVICE_REPAIR_POLICY"] == variables["OPENCLAW_SUPERVISOR_MODE"] == "external"
        search = variables["PATH"].split(":")  # the gateway's directory first; node's and clawgate's on it
        assert search[0] == str(kit.bin_dir) and str(service_env.prefix / "bin") in search
        assert "Restart=always" in unit.splitlines()
        # systemd starts ExecStart with the unit's environment and nothing else (no PATH of its own
        # that has node or clawgate in it).
        result = service_env.run_as(service_env.agent_name, "/usr/bin/env", "-i",
                                    *(f"{k}={v}" for k, v in variables.items()),
                                    str(gateway), "skills", "list", "--json", timeout=120)
        assert result.returncode == 0, result.stderr
        listed = json.loads(result.stdout)
        listed = listed.get("skills", listed) if isinstance(listed, dict) else listed
        assert next(skill for skill in listed if skill.get("name") == "clawgate").get("eligible") is True


# -- the README, step by step -------------------------------------------------------------------

def readme_steps() -> list:
    """(user, command) for each `alice$` / `openclaw$` line of the README's OpenClaw example."""
    text = (REPO / "README.md").read_text()
    section = text.split("## OpenClaw: secrets the model never sees", 1)[1].split("\n## ", 1)[0]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.splitlines():
        match = re.match(r"(alice|openclaw)\$ (.*)", line)
        if match:
            steps.append(match.groups())
    return steps


def test_the_readme_openclaw_section_works_as_written(kit):
    with RootEnv() as readme_env:
        readme_env.enroll_seed()
        steps = readme_steps()
        assert steps and any("secrets audit" in command for _who, command in steps)
        for who, command in steps:
            if re.search(r"\b\d{6}\b", command):  # the code the owner reads out
                command = re.sub(r"\b\d{6}\b", readme_env.code(), command)
            user = readme_env.owner_name if who == "alice" else readme_env.agent_name
            home = readme_env.agent_home if who == "openclaw" else Path("/")
            variables = {"HOME": str(home), "PATH": agent_path(readme_env, kit)}
            value = b"sk-readme-0123456789abcdef\n" if "secrets set" in command else b""
            result = readme_env.run_as(user, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items()),
                                       "/bin/sh", "-c", command, input=value)
            assert result.returncode == 0, f"{who}$ {command}\n{result.stdout.decode()}{result.stderr.decode()}"
        assert "Secrets audit: clean" in result.stdout.decode()


# -- the protocol, through the launcher ---------------------------------------------------------

def test_the_gateway_path_answers_a_mixed_request_in_one_reply(env):
    result = as_gateway(env, request(["openai/api-key", "db/password", "vault/token", "missing/x"]))
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["protocolVersion"] == 1
    assert reply["values"] == {
        "openai/api-key": SECRETS["openai/api-key"][0].decode(),
        "db/password": SECRETS["db/password"][0].decode(),
    }
    assert reply["errors"]["vault/token"]["code"] == "APPROVAL_REQUIRED"
    assert reply["errors"]["vault/token"]["message"].startswith("approval required (restricted")
    assert reply["errors"]["missing/x"] == {"code": "NOT_FOUND", "message": "not found"}


def test_the_gateway_path_audits_each_id_as_the_agent(env):
    as_gateway(env, request(["openai/api-key", "vault/token"]))
    records = [json.loads(line) for line in (env.state / "audit.log").read_bytes().splitlines()]
    batch = [r for r in records if r["event"] == "resolve"][-1]
    assert (batch["role"], batch["caller"]) == ("agent", env.agent_name)
    assert resolve_decisions([batch]) == [("openai/api-key", "ok"), ("vault/token", "denied")]


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


def test_run_as_the_agent_needs_the_grant(env):
    result = env.agent("run", "--env", "T=vault/token", "--", "/bin/true")
    assert result.returncode == 3
    assert result.stderr.startswith(b"clawgate: vault/token: approval required")


def test_the_agent_cannot_reach_the_broker_another_way(env):
    """Only the sudoers entry opens the owner's side: the state is closed to the agent."""
    result = env.run_as(env.agent_name, str(env.libexec / "broker"), "resolve", input=request(["openai/api-key"]))
    assert result.returncode != 0 and result.stdout == b""
