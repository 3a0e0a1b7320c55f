"""`broker resolve`: OpenClaw's exec SecretRef provider protocol v1, as the agent calls it.

The gateway fails a whole batch on any non-zero exit, so refusals are per-id
error entries in one reply (exit 0); only a request that no gateway would send
gets exit 2, with nothing on stdout. Every id is audited; no value ever is.
"""

import hashlib
import json
import subprocess

import pytest

SECRETS = {
    "open/key": (b"open-value-\"quoted\"\n\ttab \xc3\xa9", "open"),
    "granted/key": (b"granted-value-9f3a", "restricted"),
    "restricted/key": (b"restricted-value-77c1", "restricted"),
    "controlled/key": (b"controlled-value-0b2e", "controlled"),
    "binary/key": (b"\xff\xfe\x00raw", "open"),
}


def request(ids, version=1, provider="clawgate") -> bytes:
    return json.dumps({"protocolVersion": version, "provider": provider, "ids": ids}).encode()


def resolve(tree, payload: bytes) -> subprocess.CompletedProcess:
    return tree.as_agent("broker", "resolve", input=payload)


def reply_of(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    reply = json.loads(result.stdout)
    assert reply["protocolVersion"] == 1
    return reply


@pytest.fixture
def stocked(tree):
    for name, (value, tier) in SECRETS.items():
        tree.set_secret(name, value, tier)
    result = tree.owner_approve("granted/key", tree.code())
    assert result.returncode == 0, result.stderr
    return tree


def audit_bytes(tree) -> bytes:
    return (tree.state / "audit.log").read_bytes()


def resolve_events(tree) -> list:
    records = [json.loads(line) for line in audit_bytes(tree).splitlines()]
    return [record for record in records if record["event"] == "resolve"]


# -- the mixed request the gateway sends at activation -------------------------------------------

def test_mixed_request_is_answered_in_one_reply(stocked):
    ids = ["open/key", "granted/key", "restricted/key", "controlled/key", "missing/key"]
    reply = reply_of(resolve(stocked, request(ids)))
    assert reply["values"] == {
        "open/key": SECRETS["open/key"][0].decode(),
        "granted/key": SECRETS["granted/key"][0].decode(),
    }
    errors = reply["errors"]
    assert set(errors) == {"restricted/key", "controlled/key", "missing/key"}
    assert errors["restricted/key"]["message"].startswith("approval required (restricted")
    assert errors["controlled/key"]["message"].startswith("approval required (controlled")
    assert "clawgate approve restricted/key CODE" in errors["restricted/key"]["message"]
    assert errors["missing/key"] == {"code": "NOT_FOUND", "message": "not found"}
    # OpenClaw displays only the codes it knows (NOT_FOUND); the others still say why.
    assert errors["restricted/key"]["code"] == errors["controlled/key"]["code"] == "APPROVAL_REQUIRED"


def test_every_id_is_audited_and_no_value_is(stocked):
    ids = ["open/key", "granted/key", "restricted/key", "missing/key", "binary/key", "bad:id"]
    reply_of(resolve(stocked, request(ids)))
    batch = resolve_events(stocked)[-1]  # one record for the batch, every id's decision in it
    assert batch["caller"] == "nobody" and batch["role"] == "agent" and batch["ids"] == len(ids)
    assert batch["ok"] == ["open/key", "granted/key"] and batch["missing"] == ["missing/key"]
    assert batch["denied_no_grant"] == ["restricted/key"] and batch["denied_not_utf8"] == ["binary/key"]
    assert batch["denied_invalid_name"] == ["bad:id"]
    log = audit_bytes(stocked)
    for value, _tier in SECRETS.values():
        assert value not in log
        assert json.dumps(value.decode("utf-8", "replace"))[1:-1].encode() not in log
    assert stocked.run("audit", "verify").returncode == 0


def test_a_batch_of_long_ids_adds_one_bounded_record_to_the_log(stocked, capsys):
    """512 distinct 127-character ids were 512 records, 165 KB a call; now one record under 10 KB
    (each list past audit.MAX_FIELD keeps its start, its length and its sha256)."""
    ids = [f"missing/{n:03d}-" + "x" * 115 for n in range(256)] + [f"bad:{n:03d}" + "y" * 119 for n in range(256)]
    before = len(audit_bytes(stocked))
    reply_of(resolve(stocked, request(ids)))
    grown = len(audit_bytes(stocked)) - before
    batch = resolve_events(stocked)[-1]
    with capsys.disabled():
        print(f"\nresolve, 512 ids of ~125 characters: {grown} audit bytes for the call")
    assert grown < 10_000, grown
    assert batch["ids"] == 512 and batch["missing_length"] > 4096 and len(batch["missing_sha256"]) == 64
    whole = json.dumps(ids[:256], separators=(",", ":"))  # the list as audit encodes it
    assert batch["missing_sha256"] == hashlib.sha256(whole.encode()).hexdigest()
    assert stocked.run("audit", "verify").returncode == 0


def test_revoke_cuts_the_provider_off_at_once(stocked):
    assert "granted/key" in reply_of(resolve(stocked, request(["granted/key"])))["values"]
    assert stocked.run("revoke", "granted/key").returncode == 0
    reply = reply_of(resolve(stocked, request(["granted/key"])))
    assert reply["values"] == {}
    assert reply["errors"]["granted/key"]["message"].startswith("approval required (restricted")


def test_a_value_that_is_not_utf8_is_an_error_entry_not_a_lossy_value(stocked):
    reply = reply_of(resolve(stocked, request(["binary/key", "open/key"])))
    assert "binary/key" not in reply["values"]
    assert reply["errors"]["binary/key"]["message"].startswith("not valid UTF-8")
    assert "open/key" in reply["values"]


def test_values_round_trip_exactly_through_json(tree):
    value = "quote\" backslash\\ newline\n nul\x00 bell\x07 snowman\u2603 emoji\U0001F511 end\n"
    tree.set_secret("exact", value.encode(), "open")
    assert reply_of(resolve(tree, request(["exact"])))["values"]["exact"] == value


def test_repeated_ids_are_answered_once(stocked):
    reply = reply_of(resolve(stocked, request(["open/key", "open/key", "missing/key", "missing/key"])))
    assert list(reply["values"]) == ["open/key"] and list(reply["errors"]) == ["missing/key"]


def test_an_empty_request_gets_an_empty_reply(tree):
    assert reply_of(resolve(tree, request([]))) == {"protocolVersion": 1, "values": {}, "errors": {}}


# -- the secrets namespace only (invariant 2) --------------------------------------------------

@pytest.mark.parametrize("secret_id", [
    "../totp-seed", "/etc/passwd", "@root", "a/../../totp-seed", "./x", "a//b", "", " open/key",
    "open/key\n", "x" * 129, "bad:id", "with#selector", "nul\x00",
])
def test_ids_outside_the_name_grammar_are_refused_per_id(stocked, secret_id):
    reply = reply_of(resolve(stocked, request([secret_id, "open/key"])))
    assert reply["errors"][secret_id] == {"code": "INVALID_ID", "message": "invalid secret name"}
    assert list(reply["values"]) == ["open/key"]


@pytest.mark.parametrize("secret_id", ["totp-seed", "totp.json", "audit.log", "grants/granted%key", "grants"])
def test_state_files_are_not_secrets(stocked, secret_id):
    reply = reply_of(resolve(stocked, request([secret_id])))
    assert reply["values"] == {}
    assert secret_id in reply["errors"]


# -- requests no gateway sends: exit 2, one line on stderr, nothing on stdout ------------------

MALFORMED = {
    "empty": b"",
    "truncated": b'{"protocolVersion":1,"ids":["a"]',
    "not json": b"ids=a,b",
    "not utf-8": b'{"protocolVersion":1,"ids":["\xff"]}',
    "array": b"[1]",
    "null": b"null",
    "version 2": request(["open/key"], version=2),
    "version string": request(["open/key"], version="1"),
    "version true": request(["open/key"], version=True),
    "version float": request(["open/key"], version=1.0),
    "no version": json.dumps({"ids": ["open/key"]}).encode(),
    "ids missing": json.dumps({"protocolVersion": 1}).encode(),
    "ids string": json.dumps({"protocolVersion": 1, "ids": "open/key"}).encode(),
    "id number": json.dumps({"protocolVersion": 1, "ids": ["open/key", 7]}).encode(),
    "id object": json.dumps({"protocolVersion": 1, "ids": [{"id": "open/key"}]}).encode(),
    "provider number": json.dumps({"protocolVersion": 1, "provider": 1, "ids": []}).encode(),
    "513 ids": request([f"id{n}" for n in range(513)]),
    "over 256 KiB": request(["open/key"]) + b" " * (256 * 1024),
    "deep nesting": b"[" * 100000 + b"]" * 100000,
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_exit_2_with_nothing_on_stdout(stocked, payload):
    result = resolve(stocked, payload)
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"clawgate: resolve: ")
    assert b"Traceback" not in result.stderr


def test_the_gateway_limits_themselves_are_accepted(stocked):
    ids = ["open/key"] + [f"missing/n{n}" for n in range(511)]
    reply = reply_of(resolve(stocked, request(ids)))
    assert len(reply["values"]) + len(reply["errors"]) == 512
    exactly = request(["open/key"])
    exactly += b" " * (256 * 1024 - len(exactly))
    assert reply_of(resolve(stocked, exactly))["values"]["open/key"]


def test_arguments_after_resolve_are_a_usage_error(tree):
    result = tree.as_agent("broker", "resolve", "extra", input=request([]))
    assert result.returncode == 2 and result.stdout == b""


# -- the provider block the front door prints ----------------------------------------------------

def provider_block(tree) -> dict:
    result = subprocess.run([str(tree.prefix / "bin" / "clawgate"), "openclaw-config"], capture_output=True,
                            env=tree.env(False))
    assert result.returncode == 0, result.stderr
    text = "\n".join(line for line in result.stdout.decode().splitlines() if not line.startswith("//"))
    return json.loads(text)["secrets"]["providers"]["clawgate"]


def test_openclaw_config_prints_the_agents_launcher_and_nothing_openclaw_dropped(tree):
    """OpenClaw 2026.9 runs only a command its own user owns and rejects allowInsecurePath: the
    block names the agent's launcher (the root suite runs it through the real OpenClaw)."""
    from installtree import AGENT_LAUNCHER

    assert provider_block(tree) == {"source": "exec", "command": AGENT_LAUNCHER, "jsonOnly": True}


def test_openclaw_config_takes_no_arguments_but_proxy_routes(tree):
    result = subprocess.run([str(tree.prefix / "bin" / "clawgate"), "openclaw-config", "x"], capture_output=True,
                            env=tree.env(False))
    assert result.returncode == 2 and result.stdout == b""


def openclaw_config(tree, *args):
    return subprocess.run([str(tree.prefix / "bin" / "clawgate"), "openclaw-config", *args], capture_output=True,
                          env=tree.env(False))


def test_openclaw_config_proxy_names_each_route_its_api_and_refuses_an_unknown_one(tree):
    tree.set_secret("k", b"v", tier="open")
    for route in ("oai", "ant"):
        assert tree.run("route", "add", route, "--upstream", "https://api.example.com", "--secret", "k",
                        "--inject", "Authorization: Bearer {secret}").returncode == 0
    result = openclaw_config(tree, "--proxy", "oai", "--proxy", "ant:anthropic-messages")
    assert result.returncode == 0, result.stderr
    block = json.loads("\n".join(line for line in result.stdout.decode().splitlines() if not line.startswith("//")))
    providers = block["models"]["providers"]
    assert providers["clawgate-oai"]["api"] == "openai-completions"
    assert providers["clawgate-ant"]["api"] == "anthropic-messages"
    assert providers["clawgate-ant"]["apiKey"]["id"] == "proxy-token:ant"
    assert providers["clawgate-oai"]["baseUrl"] == "http://127.0.0.1:8217/oai"
    missing = openclaw_config(tree, "--proxy", "nosuch")
    assert missing.returncode == 4 and missing.stdout == b"" and b"no such route" in missing.stderr
    assert openclaw_config(tree, "--proxy", "oai:gopher").returncode == 2
    assert openclaw_config(tree, "--proxy", "a/b").returncode == 2


def test_resolve_serves_a_routes_proxy_token_never_a_secret_by_that_id(tree):
    tree.set_secret("k", b"v", tier="open")
    assert tree.run("route", "add", "tok", "--upstream", "https://api.example.com", "--secret", "k",
                    "--inject", "Authorization: Bearer {secret}").returncode == 0
    token = tree.as_agent("broker", "proxy-token", "tok").stdout.decode()
    reply = json.loads(tree.as_agent("broker", "resolve", input=request(["proxy-token:tok", "proxy-token:none"])).stdout)
    assert reply["values"] == {"proxy-token:tok": token}
    assert reply["errors"]["proxy-token:none"]["code"] == "NOT_FOUND"


def test_a_grant_is_cut_to_the_cap_of_the_secrets_tier_now(tmp_path):
    """Retiered from controlled (4h) to restricted: the old grant lasts no longer than the new cap."""
    import time

    from installtree import Tree

    tree = Tree(tmp_path, ttl={"controlled": "4h", "restricted": "2s", "root": "30m"})
    tree.enroll_seed()
    tree.set_secret("ctl", b"CTLVALUE", "controlled")
    assert tree.owner_approve("ctl", tree.code()).returncode == 0
    assert tree.run("secrets", "tier", "ctl", "restricted").returncode == 0
    time.sleep(2.5)
    reply = reply_of(resolve(tree, request(["ctl"])))
    assert "ctl" not in reply["values"] and "approval required" in reply["errors"]["ctl"]["message"]
