"""The real OpenClaw makes one model call to a provider URL we choose (tests/openclaw_model.py).

A fake OpenAI chat-completions server on loopback stands where clawgate's proxy will: the route in
the URL picks its answer, an SSE stream ("sse-...") or one JSON object ("json-..."); OpenClaw asks
for a stream either way. The apiKey is a plain string or an exec SecretRef that clawgate's
launcher resolves, as the agent, through the real sudo.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import openclaw_model
from coretools import resolve_decisions
import openclawkit
from rootenv import RootEnv

pytestmark = pytest.mark.root

TOKEN_NAME = "proxy/token"  # a clawgate name that is also a valid OpenClaw exec SecretRef id
TOKEN = b"cgp-route-token-0123456789abcdef"


class FakeProvider(BaseHTTPRequestHandler):
    """POST /ROUTE/v1/chat/completions: answers ANSWER-ROUTE; records what it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list = []  # (route, headers, body), shared by the module's one server

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        route, _, rest = self.path.lstrip("/").partition("/")
        FakeProvider.seen.append((route, {k.lower(): v for k, v in self.headers.items()}, body))
        if rest != "v1/chat/completions":
            self.reply(404, "application/json", b'{"error":{"message":"no such path"}}')
            return
        answer, model = f"ANSWER-{route}", body.get("model")
        base = {"id": "chatcmpl-1", "created": int(time.time()), "model": model}
        if route.startswith("json-"):
            self.reply(200, "application/json", json.dumps({
                **base, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode())
            return
        chunks = [{"role": "assistant", "content": ""}, {"content": "ANSWER-"}, {"content": route}, {}]
        events = [{**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if not delta else None}]}
                  for delta in chunks]
        events.append({**base, "object": "chat.completion.chunk", "choices": [],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
        stream = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"
        self.reply(200, "text/event-stream", stream)

    def reply(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def kit():
    return openclawkit.require()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeProvider)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def env():
    with RootEnv() as root_env:
        root_env.enroll_seed()
        root_env.set_secret(TOKEN_NAME, TOKEN, "open")
        yield root_env


def clawgate_block(env) -> dict:
    """The exec provider block `clawgate openclaw-config` prints for the agent."""
    result = env.agent("openclaw-config")
    assert result.returncode == 0, result.stderr
    text = "\n".join(line for line in result.stdout.decode().splitlines() if not line.startswith("//"))
    return json.loads(text)["secrets"]["providers"]["clawgate"]


def ref(secret_id: str) -> dict:
    return {"source": "exec", "provider": "clawgate", "id": secret_id}


def agent_path(env, kit) -> str:
    return f"{kit.bin_dir}:{env.prefix / 'bin'}:/usr/bin:/bin"


def resolves(env) -> list:
    return resolve_decisions(json.loads(line) for line in (env.state / "audit.log").read_bytes().splitlines())


def requests_for(route: str) -> list:
    return [(headers, body) for seen_route, headers, body in FakeProvider.seen if seen_route == route]


@pytest.mark.parametrize("answer", ["sse", "json"])
@pytest.mark.parametrize("key", ["plain", "secretref"])
def test_one_turn_reaches_the_provider_with_the_key_and_prints_the_answer(env, kit, server, key, answer):
    route = f"{answer}-{key}"
    if key == "plain":
        api_key, expected, providers = "sk-plain-key-0123456789", "sk-plain-key-0123456789", None
    else:
        api_key, expected, providers = ref(TOKEN_NAME), TOKEN.decode(), {"clawgate": clawgate_block(env)}
    before = len(resolves(env))
    rc, out, err = openclaw_model.run_turn(kit, env.agent_home, f"{server}/{route}/v1", api_key,
                                           user=env.agent_name, secret_providers=providers,
                                           path=agent_path(env, kit))
    assert rc == 0, out + err[-3000:]
    assert f"ANSWER-{route}" in out.splitlines(), out
    sent = requests_for(route)
    assert sent, "the provider was never called"
    headers, body = sent[0]
    assert headers["authorization"] == f"Bearer {expected}"
    assert body["model"] == openclaw_model.MODEL_ID
    assert body["stream"] is True  # OpenClaw asks for a stream whatever the answer will be
    assert expected not in out + err  # OpenClaw never shows the key it sent
    if key == "secretref":  # resolved by clawgate for this turn, as the agent
        assert (TOKEN_NAME, "ok") in resolves(env)[before:]


IDS = {"proxy-token:route-1": True, "proxy-token/route-1": True, "A.b_c#key": True,
       "@proxy-token/route-1": False, "proxy-token/../x": False, "-route": False, "proxy token": False}


def test_openclaw_exec_secretref_id_grammar(env, kit):
    """What OpenClaw accepts as an exec SecretRef id: one `config validate` over one provider per id
    (no resolver runs). /^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$/, no "." or ".." segment."""
    document = openclaw_model.config("http://127.0.0.1:9/r/v1", "unused", {"clawgate": clawgate_block(env)})
    entry = document["models"]["providers"].pop(openclaw_model.PROVIDER_ID)
    names = {f"p{i}": secret_id for i, secret_id in enumerate(IDS)}
    document["models"]["providers"] = {name: {**entry, "apiKey": ref(secret_id)} for name, secret_id in names.items()}
    openclaw_model.write_config(env.agent_home, document, env.agent_name)
    variables = {"HOME": str(env.agent_home), "PATH": agent_path(env, kit)}
    result = env.run_as(env.agent_name, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items()),
                        "openclaw", "config", "validate", "--json", timeout=120)
    report = json.loads(result.stdout)
    rejected = {names[issue["path"].split(".")[2]] for issue in report["issues"]
                if issue["path"].endswith(".apiKey.id")}
    assert rejected == {secret_id for secret_id, valid in IDS.items() if not valid}, report
