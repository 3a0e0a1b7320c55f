"""One model call through the real OpenClaw (tests/openclawkit.py) against a provider URL we choose.

    rc, out, err = openclaw_model.run_turn(kit, home, "http://127.0.0.1:PORT/ROUTE/v1", "sk-...")
    rc, out, err = openclaw_model.run_turn(kit, env.agent_home, base_url, ref("proxy/token"),
                                           user=env.agent_name, secret_providers={"clawgate": block},
                                           path=f"{kit.bin_dir}:{env.prefix / 'bin'}:/usr/bin:/bin")

What it writes (HOME/.openclaw/openclaw.json, as `user` when given) is one custom provider,
`models.providers.proxied`, with api "openai-completions" (POST BASE_URL/chat/completions,
`Authorization: Bearer APIKEY`), one model `m1`, and `agents.defaults.model.primary` =
"proxied/m1"; `models.mode: "replace"` drops the bundled catalogue. The apiKey is what the caller
gives: a string, or a SecretRef dict such as {"source": "exec", "provider": "clawgate", "id": ...}
resolved through `secrets.providers` (OpenClaw's exec SecretRef ids must match
/^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$/ with no "." or ".." path segment: `:` yes, `@` no).

The turn is `openclaw agent --local --agent main --session-id NEW --message TEXT`: the embedded
agent, no Gateway, one fresh session, the final assistant text on stdout. Its request always
asks for a stream (`"stream": true, "stream_options": {"include_usage": true}`; OpenClaw 2026.9.6
has no setting that turns it off for openai-completions: `params.extra_body.stream: false` is
sent but the run then fails, "yield* ... is not async iterable"). It accepts either answer: an
SSE body (`data: {...}` ... `data: [DONE]`) or a plain JSON chat.completion; its transport
fetch tells them apart by the body (provider-transport-fetch: "sse" or "json").
Other `api` values, seen against the same loopback URL (requests only, not asserted here):
"openai-responses" POSTs BASE_URL/responses with the same Bearer header; "anthropic-messages"
POSTs BASE_URL/v1/messages with `x-api-key: APIKEY` and `"stream": true`. A failed call is retried
(up to 3 more times) within the one turn.
No network beyond the provider: update checks and telemetry are off in the config written.
"""

import json
import subprocess
import uuid
from pathlib import Path
from typing import Optional, Tuple, Union

PROVIDER_ID = "proxied"
MODEL_ID = "m1"
RUNUSER = "/usr/sbin/runuser"


def provider_entry(base_url: str, api_key: Union[str, dict], api: str = "openai-completions") -> dict:
    """models.providers.<id>: the fields OpenClaw needs for a custom OpenAI-compatible provider."""
    return {
        "baseUrl": base_url,
        "apiKey": api_key,
        "api": api,
        "timeoutSeconds": 60,
        "models": [{
            "id": MODEL_ID, "name": "Proxied test model", "reasoning": False, "input": ["text"],
            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
            "contextWindow": 32000, "maxTokens": 1024,
        }],
    }


def config(base_url: str, api_key: Union[str, dict], secret_providers: Optional[dict] = None,
           api: str = "openai-completions") -> dict:
    """The whole openclaw.json: the provider, its model as the default, nothing that phones home."""
    document = {
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
        "agents": {"defaults": {"model": {"primary": f"{PROVIDER_ID}/{MODEL_ID}"}}},
        "models": {"mode": "replace", "providers": {PROVIDER_ID: provider_entry(base_url, api_key, api)}},
    }
    if secret_providers:
        document["secrets"] = {"providers": secret_providers}
    return document


def write_config(home: Path, document: dict, user: Optional[str] = None) -> None:
    """HOME/.openclaw/openclaw.json; as `user` when given (root never writes in the agent's home)."""
    target = Path(home) / ".openclaw" / "openclaw.json"
    text = json.dumps(document, indent=1).encode()
    if user is None:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.write_bytes(text)
        return
    result = subprocess.run([RUNUSER, "-u", user, "--", "/bin/sh", "-c",
                             'mkdir -p -m 700 "${1%/*}" && cat >"$1"', "sh", str(target)],
                            input=text, capture_output=True, cwd="/", env={"PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        raise RuntimeError(f"writing {target} as {user}: {result.stderr.decode()}")


def turn_argv(message: str, session_id: Optional[str] = None) -> list:
    return ["openclaw", "agent", "--local", "--agent", "main",
            "--session-id", session_id or f"t-{uuid.uuid4().hex[:12]}", "--message", message]


def run_turn(kit, home: Path, base_url: str, api_key: Union[str, dict], *, user: Optional[str] = None,
             secret_providers: Optional[dict] = None, path: Optional[str] = None,
             message: str = "Reply with the single word you are told to.", api: str = "openai-completions",
             timeout: float = 240) -> Tuple[int, str, str]:
    """Write the config and run one turn; (exit code, stdout, stderr)."""
    write_config(home, config(base_url, api_key, secret_providers, api), user)
    variables = {"HOME": str(home), "PATH": path or f"{kit.bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8",
                 "OPENCLAW_NO_AUTO_UPDATE": "1"}
    argv = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items()), *turn_argv(message)]
    if user is not None:
        argv = [RUNUSER, "-u", user, "--", *argv]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, cwd="/", timeout=timeout)
    return result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
