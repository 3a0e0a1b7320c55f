"""The proxy's part of `make bench`: what the agent-blind proxy adds to a request, measured in one run
against a direct HTTPS request to the same loopback provider (tests/provider.py).

The client runs as the agent (the proxy serves only the agent and the owner), as one child process
that alternates direct and proxied requests, each path over one kept-alive connection as the SDKs
keep theirs (the proxy keeps its own to the provider), so a busy machine slows both alike and the
difference is the proxy's own work:
  latency      a small POST: median and p99 of each; the targets are on the difference
  first byte   a streamed answer: time to its first event, direct and through the proxy
  streams      50 concurrent streams through the proxy; its memory (the PSS of its processes, summed),
               sampled meanwhile
  flood        the owner's small requests, on a kept connection and on a new one each time, timed
               while nothing else runs and while the agent floods the proxy from 4 processes
               (bodies of one-byte chunks on every connection its budget allows, and connect/close
               churn): what the agent's CPU costs the owner
"""

import json
import subprocess
from pathlib import Path
import threading
import time

CLIENT = r'''
import http.client, json, socket, ssl, statistics, sys, threading, time
port, provider_port, token, ca, rounds, streams = sys.argv[1:7]
port, provider_port, rounds, streams = int(port), int(provider_port), int(rounds), int(streams)
tls = ssl.create_default_context(cafile=ca)
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
kept = {"direct": http.client.HTTPSConnection("localhost", provider_port, context=tls, timeout=30),
        "proxy": http.client.HTTPConnection("127.0.0.1", port, timeout=30)}
def direct(path):
    return kept["direct"], "/v1" + path, {"Authorization": "Bearer sk-direct"}
def proxied(path, fresh=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60) if fresh else kept["proxy"]
    return conn, "/bench" + path, {"Authorization": "Bearer " + token}
def timed(make, path, first_byte=False):
    start = time.perf_counter()
    conn, target, headers = make(path)
    conn.request("POST" if not first_byte else "GET", target, body=None if first_byte else body, headers=headers)
    response = conn.getresponse()
    if first_byte:
        response.read1(1) if hasattr(response, "read1") else response.read(1)
        took = time.perf_counter() - start
        response.read()
    else:
        response.read()
        took = time.perf_counter() - start
    assert response.status == 200, response.status
    return took
out = {"direct": [], "proxy": [], "direct_first": [], "proxy_first": []}
for make in (direct, proxied):  # warm both paths (the proxy's TLS context, the provider's threads)
    for _ in range(5):
        timed(make, "/chat/completions")
for i in range(rounds):
    order = [(direct, "direct"), (proxied, "proxy")]
    if i % 2:
        order.reverse()
    for make, key in order:
        out[key].append(timed(make, "/chat/completions"))
    for make, key in order:
        out[key + "_first"].append(timed(make, "/events?n=3&delay=0.01", first_byte=True))
ok = []
def stream():
    conn, target, headers = proxied("/events?n=40&delay=0.05", fresh=True)
    conn.request("GET", target, headers=headers)
    response = conn.getresponse()
    data = response.read()
    ok.append(response.status == 200 and data.count(b"data:") == 40)
threads = [threading.Thread(target=stream) for _ in range(streams)]
print("streams starting", flush=True)
for t in threads:
    t.start()
for t in threads:
    t.join()
out["streams_ok"] = sum(ok)
print(json.dumps(out), flush=True)
'''

FLOOD = r'''
import socket, sys, threading, time
port, token, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds
head = ("POST /flood/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
        "\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
def chunks():
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(head)
                while time.monotonic() < end:
                    s.sendall(b"1\r\na\r\n" * 64)
        except OSError:
            pass
def churn():
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError:
            pass
threads = [threading.Thread(target=chunks) for _ in range(24)] + [threading.Thread(target=churn) for _ in range(4)]
for t in threads:
    t.start()
print("flooding", flush=True)
for t in threads:
    t.join()
'''

OWNER = r'''
import http.client, json, sys, time
port, token, count, fresh = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "fresh"
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
took = []
for _ in range(count):
    start = time.perf_counter()
    if fresh:  # a new connection each time: through the front, which the agent's churn reaches too
        conn.close()
    conn.request("POST", "/bench/chat/completions", body="{}", headers={"Authorization": "Bearer " + token})
    response = conn.getresponse()
    response.read()
    took.append(time.perf_counter() - start)
    assert response.status == 200, response.status
print(json.dumps(took), flush=True)
'''


def _owner_times(owner, port: int, token: str, count: int, fresh: bool) -> "list[float]":
    proc = owner.popen(["/usr/bin/python3", "-I", "-c", OWNER, str(port), token, str(count),
                        "fresh" if fresh else "kept"], stdin=subprocess.DEVNULL)
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the owner's proxy client failed: {err.decode()[-2000:]}")
    return json.loads(out)


SINK = r'''
import sys, time
from pathlib import Path
from provider import Provider
sink = Provider(Path(sys.argv[1]))
print(sink.port, flush=True)
time.sleep(3600)
'''


HOW = ("kept", "fresh")  # the owner's connection: kept alive (its worker only), or new each time (the front too)
FLOOD_PROCESSES = 4  # each: 24 connections sending one-byte chunks, 4 threads opening and closing connections


def measure_flood(env, agent, owner, owner_token: str, count: int = 40) -> dict:
    """The flood goes to a route of its own, whose upstream is a provider in a process of its own:
    what is measured is the proxy, not a provider shared with the owner's requests."""
    import sys

    sink_dir = env.root / "bench-sink"
    sink_dir.mkdir(exist_ok=True)
    sink_dir.chmod(0o755)
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_dir)], stdout=subprocess.PIPE,
                            env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent / "tests")})
    floods: "list[subprocess.Popen]" = []
    try:
        assert sink.stdout is not None
        sink_port = int(sink.stdout.readline())
        added = env.owner("route", "add", "flood", "--upstream", f"https://localhost:{sink_port}/v1",
                          "--secret", "bench/proxy-key", "--inject", "Authorization: Bearer {secret}",
                          "--ca", str(sink_dir / "provider-ca.pem"), "--allow-private")
        assert added.returncode == 0, added.stderr
        token = env.agent("proxy-token", "flood").stdout.decode().strip()
        quiet = {how: _owner_times(owner, env.proxy_port, owner_token, count, how == "fresh") for how in HOW}
        for _ in range(FLOOD_PROCESSES):
            floods.append(agent.popen(["/usr/bin/python3", "-I", "-c", FLOOD, str(env.proxy_port), token, "600"],
                                      stdin=subprocess.DEVNULL))
        for flood in floods:
            assert flood.stdout is not None
            flood.stdout.readline()
        time.sleep(1)  # every flooding connection open and sending
        loud = {how: _owner_times(owner, env.proxy_port, owner_token, count, how == "fresh") for how in HOW}
    finally:
        for proc in floods + [sink]:
            proc.kill()
            proc.wait()
    return {f"{when}_{how}": _pcts(times[how]) for when, times in (("quiet", quiet), ("flooded", loud)) for how in HOW}


def _pcts(samples):
    ordered = sorted(samples)
    return {"median": ordered[len(ordered) // 2], "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "n": len(ordered)}


def _pss_kb(front: int) -> int:
    """The proxy's memory: its processes' proportional set sizes, summed (a worker shares with the
    front the pages it was forked with; RSS would count them once per process)."""
    from proxykit import tree

    total = 0
    for pid in tree(front):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def proxy_pid(env) -> int:
    """The proxy itself, below the runuser that started it as the unit would."""
    pid = env.proxy_process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        found = children.read().split()
    return int(found[0]) if found else pid


def measure_proxy(env, agent, owner, rounds: int, streams: int = 50) -> dict:
    from provider import Provider

    provider_dir = env.root / "bench-provider"
    provider_dir.mkdir(exist_ok=True)
    provider_dir.chmod(0o755)
    provider = Provider(provider_dir)
    try:
        env.set_secret("bench/proxy-key", b"sk-bench-proxy-0123456789", tier="open")
        added = env.owner("route", "add", "bench", "--upstream", f"https://localhost:{provider.port}/v1",
                          "--secret", "bench/proxy-key", "--inject", "Authorization: Bearer {secret}",
                          "--ca", str(provider.ca_path), "--allow-private")
        assert added.returncode == 0, added.stderr
        token = env.agent("proxy-token", "bench").stdout.decode().strip()
        env.start_proxy()
        pid = proxy_pid(env)
        client = agent.popen(["/usr/bin/python3", "-I", "-c", CLIENT, str(env.proxy_port), str(provider.port),
                              token, str(provider.ca_path), str(rounds), str(streams)], stdin=subprocess.DEVNULL)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _pss_kb(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        assert client.stdout is not None
        line = client.stdout.readline()
        if line.startswith(b"streams starting"):
            sampler.start()
            line = client.stdout.readline()
        done.set()
        client.wait(timeout=120)
        if client.returncode != 0 or not line.startswith(b"{"):
            raise SystemExit(f"bench: the proxy client failed: {client.stderr.read().decode()[-2000:]}")
        out = json.loads(line)
        owner_token = env.owner("proxy-token", "bench").stdout.decode().strip()
        flood = measure_flood(env, agent, owner, owner_token)
        from proxykit import journal

        lost = journal(env.proxy_process).count(b"audit record not written")
    finally:
        env.stop_proxy()
        provider.close()
    direct, proxy = _pcts(out["direct"]), _pcts(out["proxy"])
    first_direct, first_proxy = _pcts(out["direct_first"]), _pcts(out["proxy_first"])
    return {
        "direct": direct, "proxy": proxy, "direct_first": first_direct, "proxy_first": first_proxy,
        "added_median_ms": (proxy["median"] - direct["median"]) * 1000,
        "added_p99_ms": (proxy["p99"] - direct["p99"]) * 1000,
        "added_first_byte_ms": (first_proxy["median"] - first_direct["median"]) * 1000,
        "streams": streams, "streams_ok": out["streams_ok"], "rss_mb_peak": peak[0] / 1024,
        "owner": flood, "records_lost": lost, "samples": out,
    }


TARGETS = {
    "proxy_added_median_ms": ("proxy: added latency, median (ms)", "<=", 2.0),
    "proxy_added_p99_ms": ("proxy: added latency, p99 (ms)", "<=", 10.0),
    "proxy_added_first_byte_ms": ("proxy: added time to first byte (ms)", "<=", 5.0),
    "proxy_rss_mb_50_streams": ("proxy: memory (PSS) with 50 streams (MB)", "<=", 64.0),
    "proxy_records_lost": ("proxy: audit records lost while the agent floods", "<=", 0),
}


def ratios(result: dict) -> dict:
    return {"proxy_added_median_ms": result["added_median_ms"], "proxy_added_p99_ms": result["added_p99_ms"],
            "proxy_added_first_byte_ms": result["added_first_byte_ms"],
            "proxy_rss_mb_50_streams": result["rss_mb_peak"], "proxy_records_lost": result["records_lost"]}


def show(result: dict) -> None:
    for key, label in (("direct", "direct HTTPS request"), ("proxy", "through the proxy"),
                       ("direct_first", "direct: first byte of a stream"), ("proxy_first", "proxy: first byte")):
        s = result[key]
        print(f"{label:58} {s['median'] * 1000:8.2f}  p99 {s['p99'] * 1000:8.2f}  n {s['n']}")
    print(f"{'50 concurrent streams through the proxy':58} {result['streams_ok']}/{result['streams']} ok, "
          f"peak memory {result['rss_mb_peak']:.1f} MB")
    for key, label in (("quiet_kept", "the owner's request, kept connection, alone"),
                       ("flooded_kept", "the owner's request, kept connection, agent flooding"),
                       ("quiet_fresh", "the owner's request, new connection, alone"),
                       ("flooded_fresh", "the owner's request, new connection, agent flooding")):
        s = result["owner"][key]
        print(f"{label:58} {s['median'] * 1000:8.2f}  p99 {s['p99'] * 1000:8.2f}  n {s['n']}")
