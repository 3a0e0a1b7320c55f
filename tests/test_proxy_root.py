"""The agent-blind proxy on a real install (invariants 15, 16): real users, the real sudo, the
proxy as its unit runs it (the owner's uid, an empty environment), and real clients run as the
agent: the openai and anthropic SDKs and curl, plain and streamed, against a loopback HTTPS
provider with its own CA. The agent gets answers; the real key reaches only the provider.
Needs root."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from provider import Provider
import proxykit
from rootenv import INSTALL, RUNUSER, RootEnv, delete_user, make_user, random_user, run

pytestmark = pytest.mark.root

KEY = b"sk-ant-REALKEY-9f8e7d6c5b4a3210"
OPENAI_KEY = b"sk-proj-REALOPENAIKEY-abcdef012345"
GH_KEY = b"ghp_RESTRICTEDKEY0123456789"


@pytest.fixture(scope="module")
def world():
    if os.geteuid() != 0:
        pytest.skip("needs root: real users, install.sh and sudo")
    env = RootEnv(proxy=True)
    try:
        provider_dir = env.root / "provider"
        provider_dir.mkdir()
        provider_dir.chmod(0o755)  # the owner reads the CA in it (a test run's umask may be 077)
        provider = Provider(provider_dir)
        env.enroll_seed()
        for name, value, tier in (("openai/key", OPENAI_KEY, "open"), ("anthropic/key", KEY, "controlled"),
                                  ("gh/token", GH_KEY, "restricted")):
            env.set_secret(name, value, tier)
            assert env.owner("secrets", "use-only", name).returncode == 0
        base = f"https://localhost:{provider.port}"
        for route, secret, inject, upstream in (
            ("openai", "openai/key", "Authorization: Bearer {secret}", base + "/v1"),
            ("anthropic", "anthropic/key", "x-api-key: {secret}", base),
            ("gh", "gh/token", "Authorization: token {secret}", base),
        ):
            result = env.owner("route", "add", route, "--upstream", upstream, "--secret", secret, "--inject", inject,
                               "--ca", str(provider.ca_path), "--allow-private")
            assert result.returncode == 0, result.stderr
        env.start_proxy()
        yield env, provider
    finally:
        env.close()
        if "provider" in locals():
            provider.close()


def token(env: RootEnv, route: str, as_owner: bool = False) -> str:
    result = (env.owner if as_owner else env.agent)("proxy-token", route)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().strip()


def as_agent_python(env: RootEnv, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A Python client run as the agent user: the system's python3 with the SDKs this test run has
    (this interpreter may live where the agent cannot read, as pyenv's under /root does)."""
    site = proxykit.client_site(["openai", "anthropic"], env.root / "client-site")
    prelude = f"import sys; sys.path.insert(0, {site!r})\n"
    return env.run_as(env.agent_name, "/usr/bin/python3", "-c", prelude + textwrap.dedent(script),
                      env={"HOME": str(env.agent_home)}, timeout=timeout)


def test_the_openai_sdk_as_the_agent_gets_answers_plain_and_streamed(world):
    env, provider = world
    script = f"""
        import openai
        client = openai.OpenAI(base_url="http://127.0.0.1:{env.proxy_port}/openai", api_key="{token(env, 'openai')}")
        reply = client.chat.completions.create(model="test-model", messages=[{{"role": "user", "content": "hi"}}])
        print("plain:", reply.choices[0].message.content)
        stream = client.chat.completions.create(model="test-model", messages=[{{"role": "user", "content": "hi"}}],
                                                stream=True)
        print("streamed:", "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
    """
    result = as_agent_python(env, script)
    assert result.returncode == 0, result.stderr
    assert b"plain: Hello from the provider" in result.stdout
    assert b"streamed: Hello from the provider" in result.stdout
    assert provider.last().headers["authorization"] == "Bearer " + OPENAI_KEY.decode()


def test_the_anthropic_sdk_needs_a_grant_for_a_controlled_key_then_gets_answers(world):
    env, provider = world
    script = f"""
        import anthropic
        client = anthropic.Anthropic(base_url="http://127.0.0.1:{env.proxy_port}/anthropic",
                                     api_key="{token(env, 'anthropic')}", max_retries=0)
        try:
            reply = client.messages.create(model="test-model", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
            print("plain:", reply.content[0].text)
            with client.messages.stream(model="test-model", max_tokens=10,
                                        messages=[{{"role": "user", "content": "hi"}}]) as stream:
                print("streamed:", "".join(stream.text_stream))
        except anthropic.APIStatusError as err:
            print("refused:", err.status_code, err.message)
    """
    refused = as_agent_python(env, script)
    assert b"refused: 403" in refused.stdout and b"approval required" in refused.stdout, refused.stdout + refused.stderr
    approved = env.agent("approve", "anthropic/key", env.code())
    assert approved.returncode == 0, approved.stderr
    result = as_agent_python(env, script)
    assert result.returncode == 0, result.stderr
    assert b"plain: Hello from the provider" in result.stdout
    assert b"streamed: Hello from the provider" in result.stdout
    assert provider.last().headers["x-api-key"] == KEY.decode()


def test_curl_as_the_agent_plain_and_streamed(world):
    env, provider = world
    url = f"http://127.0.0.1:{env.proxy_port}/openai/chat/completions"
    header = f"Authorization: Bearer {token(env, 'openai')}"
    plain = env.run_as(env.agent_name, "curl", "-sS", "-H", header, "-d", '{"model": "m"}', url)
    assert plain.returncode == 0 and b"Hello from the provider" in plain.stdout
    streamed = env.run_as(env.agent_name, "curl", "-sS", "-N", "-H", header, "-d", '{"model": "m", "stream": true}', url)
    assert streamed.returncode == 0 and b"data: [DONE]" in streamed.stdout


def test_the_agent_cannot_read_a_use_only_key_through_get_resolve_or_run(world):
    env, _ = world
    got = env.agent("get", "openai/key")
    assert got.returncode == 1 and b"use-only" in got.stderr and b"proxy-token openai" in got.stderr
    launcher = env.agent_home / ".local" / "libexec" / "clawgate-resolve"
    resolved = env.run_as(env.agent_name, str(launcher),
                          input=json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ["openai/key"]}).encode())
    assert json.loads(resolved.stdout)["errors"]["openai/key"]["code"] == "USE_ONLY"
    ran = env.agent("run", "--env", "K=openai/key", "--", "/usr/bin/env")
    assert ran.returncode != 0 and OPENAI_KEY not in ran.stdout
    for result in (got, resolved, ran):
        assert OPENAI_KEY not in result.stdout + result.stderr


def test_the_agent_owns_nothing_that_holds_a_key(world):
    env, _ = world
    for path in Path(env.agent_home).rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert OPENAI_KEY not in data and KEY not in data and GH_KEY not in data, path
    agent_uid = int(run(["id", "-u", env.agent_name]).stdout)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == agent_uid:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                assert OPENAI_KEY not in environ and KEY not in environ
        except OSError:
            continue


def test_another_local_users_connection_is_refused(world):
    env, provider = world
    stranger = random_user()
    make_user(stranger)
    try:
        before = len(provider.seen)
        result = env.run_as(stranger, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "-H", f"Authorization: Bearer {token(env, 'openai')}",
                            f"http://127.0.0.1:{env.proxy_port}/openai/models")
        assert result.stdout == b"403"
        result6 = env.run_as(stranger, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                             "-H", f"Authorization: Bearer {token(env, 'openai')}",
                             f"http://[::1]:{env.proxy_port}/openai/models")
        assert result6.stdout in (b"403", b"000")  # 000: a host without IPv6 loopback
        assert len(provider.seen) == before
    finally:
        delete_user(stranger)


def test_a_code_relayed_by_the_agent_opens_a_restricted_route_and_revoke_closes_it(world):
    env, provider = world
    url = f"http://127.0.0.1:{env.proxy_port}/gh/repos"
    header = f"Authorization: token {token(env, 'gh')}"
    curl = [env.agent_name, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", header, url]
    assert env.run_as(*curl).stdout == b"403"
    assert env.agent("approve", "gh/token", env.code()).returncode == 0
    assert env.run_as(*curl).stdout == b"200"
    assert provider.last().headers["authorization"] == "token " + GH_KEY.decode()
    assert env.agent("revoke", "gh/token").returncode == 0
    assert env.run_as(*curl).stdout == b"403"


HOSTILE = """
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, token = int(sys.argv[1]), sys.argv[2]
held = []
def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.append(s)
    return s
for i in range(1000):  # a thousand connections, most of them silent
    try:
        connect()
    except OSError:
        pass
for s in held[:20]:  # slow headers: one line, then nothing
    try:
        s.sendall(b"GET /openai/models HTTP/1.1\\r\\n")
    except OSError:
        pass
big = b"GET /openai/models HTTP/1.1\\r\\nX: " + b"a" * (1 << 20)
for _ in range(5):  # huge headers
    try:
        connect().sendall(big)
    except OSError:
        pass
head = ("POST /openai/chat/completions HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer " + token +
        "\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n").encode()
for _ in range(5):  # bodies that never end
    try:
        s = connect()
        s.sendall(head)
        s.sendall(b"10000\\r\\n" + b"b" * 0x10000 + b"\\r\\n")
    except OSError:
        pass
print("holding", len(held), flush=True)
time.sleep(30)
"""


def test_a_hostile_agent_cannot_stop_the_owners_route_nor_grow_the_proxy_without_bound(world):
    env, provider = world
    attack = subprocess.Popen([RUNUSER, "-u", env.agent_name, "--", "/usr/bin/python3", "-c", HOSTILE,
                               str(env.proxy_port), token(env, "openai")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    try:
        line = attack.stdout.readline()
        assert line.startswith(b"holding"), attack.stderr.read()
        # While every connection is held: the owner, through another route, is served.
        owner_token = token(env, "anthropic", as_owner=True)
        assert env.owner("approve", "anthropic/key", input=f"{env.code()}\n".encode()).returncode == 0
        result = env.run_as(env.owner_name, "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}",
                            "-H", f"x-api-key: {owner_token}", "-d", "{}",
                            f"http://127.0.0.1:{env.proxy_port}/anthropic/v1/messages")
        assert result.stdout == b"200", result.stderr
        for pid in proxykit.tree(front(env)):
            assert proxykit.threads(pid) <= 64 + 4  # a worker's budget and its watcher
            assert proxykit.rss_kb(pid) < 128 * 1024
    finally:
        attack.kill()
        attack.wait()
    time.sleep(0.5)
    # The agent's own budget comes back once its connections close.
    curl = env.run_as(env.agent_name, "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}",
                      "-H", f"Authorization: Bearer {token(env, 'openai')}",
                      f"http://127.0.0.1:{env.proxy_port}/openai/models")
    assert curl.stdout == b"200"


def front(env: RootEnv) -> int:
    """The proxy's front, below the runuser that started it as the unit would."""
    pid = env.proxy_process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


HOLD = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(b"GET /openai/models HTTP/1.1\\r\\n")  # a head begun, never ended: held by the proxy
print(s.getsockname()[1], flush=True)
time.sleep(30)
"""


def hold(env: RootEnv, user: str) -> "tuple[subprocess.Popen, int]":
    held = subprocess.Popen([RUNUSER, "-u", user, "--", "/usr/bin/python3", "-c", HOLD, str(env.proxy_port)],
                            stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    return held, int(held.stdout.readline())


def holder(env: RootEnv, client_port: int) -> int:
    for _ in range(100):  # the hand-off to the worker takes a moment
        pid = proxykit.holder(env.proxy_port, client_port, proxykit.tree(front(env))[1:])
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


@contextlib.contextmanager
def held_by_both(env: RootEnv):
    """A connection of the agent's and one of the owner's, each held open by the proxy: (the pid
    holding the agent's, the pid holding the owner's, the owner's client, its port)."""
    agent, agent_port = hold(env, env.agent_name)
    owner, owner_port = hold(env, env.owner_name)
    try:
        yield holder(env, agent_port), holder(env, owner_port), owner, owner_port
    finally:
        for held in (agent, owner):
            held.kill()
            held.wait()


def test_the_agents_connections_are_served_by_a_process_apart_from_the_owners_and_below_it(world):
    """What the agent makes its worker do (CPU floods, churn) costs that process, at a lower
    priority, never the interpreter the owner's requests run in."""
    env, _provider = world
    with held_by_both(env) as (agents, owners, _owner, _owner_port):
        assert agents != owners
        assert proxykit.niceness(agents) == 10 and proxykit.niceness(owners) == 0
        assert front(env) not in (agents, owners)


def test_a_dead_agent_worker_leaves_the_owners_connection_and_is_forked_anew(world):
    env, _provider = world
    with held_by_both(env) as (agents, owners, owner, owner_port):
        os.kill(agents, 9)
        time.sleep(0.3)
        assert owner.poll() is None and Path(f"/proc/{owners}").exists()
        assert holder(env, owner_port) == owners  # the owner's half-sent request still stands
        curl = env.run_as(env.agent_name, "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}",
                          "-H", f"Authorization: Bearer {token(env, 'openai')}",
                          f"http://127.0.0.1:{env.proxy_port}/openai/models")
        assert curl.stdout == b"200", curl.stderr
        assert agents not in proxykit.tree(front(env))


def test_doctor_checks_the_proxy_service_its_loopback_listener_and_each_routes_tls(world):
    env, _ = world
    result = env.doctor()
    out = result.stdout.decode()
    assert f"ok    proxy service: {env.proxy_unit}" in out, out
    assert f"ok    proxy listening: port {env.proxy_port} on 127.0.0.1" in out, out
    for route in ("anthropic", "gh", "openai"):
        assert f"ok    route {route}: upstream reachable, TLS verified" in out, out


def test_doctor_fails_a_route_whose_upstream_tls_is_not_trusted(world):
    env, provider = world
    assert env.owner("route", "add", "untrusted", "--upstream", f"https://localhost:{provider.port}",
                     "--secret", "openai/key", "--inject", "Authorization: Bearer {secret}",
                     "--allow-private").returncode == 0
    try:
        out = env.doctor().stdout.decode()
        assert "FAIL  route untrusted: upstream TLS not trusted" in out, out
    finally:
        assert env.owner("route", "rm", "untrusted").returncode == 0


def test_doctor_fails_a_route_whose_secret_is_gone_or_readable_by_the_agent(world):
    env, provider = world
    env.set_secret("plain/key", b"plain-value", "open")
    for route in ("readable", "gone"):
        assert env.owner("route", "add", route, "--upstream", f"https://localhost:{provider.port}", "--secret",
                         "plain/key", "--inject", "Authorization: Bearer {secret}", "--allow-private").returncode == 0
    try:
        out = env.doctor().stdout.decode()
        assert "FAIL  route readable: its secret plain/key is readable by the agent" in out, out
        assert env.owner("secrets", "rm", "plain/key", "--force").returncode == 0
        out = env.doctor().stdout.decode()
        assert "FAIL  route gone: its secret plain/key is not stored" in out, out
    finally:
        for route in ("readable", "gone"):
            env.owner("route", "rm", route)


def test_the_unit_is_sandboxed_to_an_exposure_of_at_most_2(world):
    env, _ = world
    analyze = subprocess.run(["systemd-analyze", "security", "--offline=true", str(env.proxy_unit)],
                             capture_output=True, text=True) if shutil.which("systemd-analyze") else None
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package; .ci/run installs it)")
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", analyze.stdout)
    assert score, analyze.stdout + analyze.stderr
    assert float(score.group(1)) <= 2.0, analyze.stdout


def test_uninstall_would_stop_and_remove_the_proxy_unit(world):
    """And stop the proxy's processes, the owner's only, by their whole argv: a decoy of the
    agent's naming the proxy's path is not the proxy, nor is an owner's process that has it among
    its arguments (the agent can keep a broker of the owner's alive with such an argv)."""
    env, _ = world
    decoys_started = [subprocess.Popen([RUNUSER, "-u", user, "--", "/usr/bin/python3", "-c",
                                        "import time; time.sleep(60)", str(env.libexec / "proxy")])
                      for user in (env.agent_name, env.owner_name)]
    try:
        time.sleep(0.5)
        plan = run(["bash", str(INSTALL), "--uninstall", "--dry-run", "--prefix", str(env.prefix), "--yes"])
        decoys = [pid for decoy in decoys_started for pid in proxykit.tree(decoy.pid)]
    finally:
        for decoy in decoys_started:
            decoy.kill()
            decoy.wait()
    assert f"would: remove {env.proxy_unit}" in plan.stdout.decode(), plan.stdout
    stop = [line for line in plan.stdout.decode().splitlines() if line.startswith("would: stop the proxy still running")]
    assert stop and f"from {env.libexec} (pid " in stop[0], plan.stdout
    stopped = stop[0].split("(pid ")[1].rstrip(")").split()
    assert str(front(env)) in stopped and not set(map(str, decoys)) & set(stopped), (stopped, decoys)


def test_a_second_install_never_takes_over_the_first_ones_proxy_unit(world):
    """Two installs on one machine (two prefixes, owners, agents): the second, pointed at the
    first's unit directory, is refused before anything changes; the first's unit stays its own."""
    env, _ = world
    before = env.proxy_unit.read_bytes()
    with RootEnv(install=False, proxy=True) as second:
        result = run(second.install_argv("--service-dir", str(env.proxy_unit.parent)), input=None)
        assert result.returncode == 6, result.stdout + result.stderr
        assert result.stderr.decode().count("\n") == 1, result.stderr
        assert f"{env.proxy_unit} exists and is not this install's" in result.stderr.decode()
        assert "--service-dir DIR (nothing was changed)" in result.stderr.decode()
        assert not (second.prefix / "etc" / "clawgate" / "install.manifest").exists()
    assert env.proxy_unit.read_bytes() == before


KNOCK = """
import socket, sys, time
port, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pass
"""


def test_an_agent_knocking_while_the_proxy_starts_cannot_turn_its_socket_lookups_off(world):
    """The probe that decides how callers are told apart uses a listener of its own: on the proxy's,
    the agent's knock could be the connection it asked about, and every later connection would
    cost a scan of the kernel's tables in the front both callers share."""
    env, _ = world
    env.stop_proxy()
    knockers = [subprocess.Popen([RUNUSER, "-u", env.agent_name, "--", "/usr/bin/python3", "-c", KNOCK,
                                  str(env.proxy_port), "6"]) for _ in range(2)]
    try:
        time.sleep(1)
        env.start_proxy()
        for knocker in knockers:
            knocker.wait(timeout=30)
        said = proxykit.journal(env.proxy_process)
        assert b"callers told apart by sock_diag" in said, said
    finally:
        for knocker in knockers:
            knocker.kill()
            knocker.wait()
        if env.proxy_process is None or env.proxy_process.poll() is not None:
            env.start_proxy()


def test_doctor_fails_a_route_whose_value_is_not_header_text(world):
    env, provider = world
    env.set_secret("crlf/key", b"sk-ok-0123456789", "open")
    assert env.owner("secrets", "use-only", "crlf/key").returncode == 0
    assert env.owner("route", "add", "crlf", "--upstream", f"https://localhost:{provider.port}", "--secret", "crlf/key",
                     "--inject", "Authorization: Bearer {secret}", "--ca", str(provider.ca_path),
                     "--allow-private").returncode == 0
    try:
        env.set_secret("crlf/key", b"sk-ok\r\nX-Evil: 1", "open")
        out = env.doctor().stdout.decode()
        assert "FAIL  route crlf: its secret crlf/key: its value is not header text" in out, out
    finally:
        env.owner("route", "rm", "crlf")


def test_without_the_service_doctor_names_routes_that_cannot_work_and_uninstall_stops_a_proxy_run_by_hand():
    """--no-proxy, or no systemd to start the unit: the owner runs `clawgate proxy` by hand. Doctor
    says where routes cannot work and how to start it; uninstall leaves no proxy sending the key."""
    if os.geteuid() != 0:
        pytest.skip("needs root: real users, install.sh and sudo")
    with RootEnv() as env:  # --no-proxy
        env.set_secret("k/key", b"sk-0123456789", "open")
        assert env.owner("route", "add", "k", "--upstream", "https://localhost:9/v1", "--secret", "k/key",
                         "--inject", "Authorization: Bearer {secret}", "--allow-private").returncode == 0
        result = env.doctor()
        out = result.stdout.decode()
        assert result.returncode != 0
        assert "FAIL  proxy: routes are set but no proxy is installed or running" in out, out
        assert "rerun install.sh without it, or as " in out and f": {env.door} proxy" in out, out  # typed as it is found
        by_hand = proxykit.start([RUNUSER, "-u", env.owner_name, "--", str(env.libexec / "proxy")], env.proxy_port)
        try:
            held = proxykit.tree(by_hand.pid)
            removed = env.uninstall(purge=False)
            assert removed.returncode == 0, removed.stderr
            assert f"stop the proxy still running from {env.libexec}" in removed.stdout.decode()
            by_hand.wait(timeout=10)
            for _ in range(100):
                if not any(Path(f"/proc/{pid}").exists() for pid in held[1:]):
                    break
                time.sleep(0.05)
            assert not any(Path(f"/proc/{pid}").exists() for pid in held[1:]), "a worker outlived its front"
        finally:
            proxykit.stop(by_hand)


def test_a_rerun_that_changes_something_asks_the_owner_to_restart_a_proxy_run_by_hand(world):
    """No service manager restarts a proxy the owner started by hand (the newcomer's review): a
    rerun that changed something says so; one that changed nothing says nothing was written."""
    env, _ = world
    helper = env.libexec / "help"
    helper.write_bytes(helper.read_bytes() + b"# changed since the install\n")
    changed = env.install()
    assert changed.returncode == 0, changed.stderr
    said = [line for line in changed.stderr.decode().splitlines() if "the proxy runs by hand here (pid " in line]
    assert said and str(front(env)) in said[0].split("(pid ")[1].split(")")[0].split(), changed.stderr
    assert b"# changed since" not in helper.read_bytes()
    unchanged = env.install()
    assert unchanged.returncode == 0, unchanged.stderr
    changes = unchanged.stdout.decode().split("==> Installing", 1)[-1][:3000]
    assert b"already installed as asked; nothing to do" in unchanged.stdout, changes
    assert b"runs by hand" not in unchanged.stderr and b"written;" not in unchanged.stdout, changes
