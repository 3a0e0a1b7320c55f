"""The agent-blind proxy on a staged install (invariants 15 and 16), against a real loopback HTTPS
provider. One provider and one proxy for the module; each test attacks one defence and fails
if that defence is removed. The real users, the real sudo and the real SDKs are in
test_proxy_root.py."""

import base64
import json
import os
import socket
import time
import urllib.parse

import pytest

from installtree import Tree
from provider import Provider
import proxykit

KEY = b"sk-live-REALKEY-0123456789abcdef"
OTHER_KEY = b"ghp_OTHERKEY0123456789"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    provider = Provider(root)
    port = proxykit.free_port()
    (root / "tree").mkdir()
    tree = Tree(root / "tree", extra_config=f"[proxy]\nport = {port}\n")
    tree.enroll_seed()
    tree.set_secret("openai/key", KEY, tier="open")
    tree.set_secret("gh/token", OTHER_KEY, tier="restricted")
    assert tree.run("secrets", "use-only", "openai/key").returncode == 0
    upstream = f"https://localhost:{provider.port}/v1"
    for name, secret, inject, extra in (
        ("p", "openai/key", "Authorization: Bearer {secret}", []),
        ("a", "openai/key", "x-api-key: {secret}", ["--methods", "POST"]),
        ("r", "gh/token", "Authorization: token {secret}", ["--path-prefix", "/repos"]),
    ):
        result = tree.run("route", "add", name, "--upstream", upstream, "--secret", secret, "--inject", inject,
                          "--ca", str(provider.ca_path), "--allow-private", *extra)
        assert result.returncode == 0, result.stderr
    process = proxykit.start([str(tree.libexec / "proxy")], port)
    yield tree, provider, port, process
    proxykit.stop(process)
    provider.close()


def token(tree: Tree, route: str) -> str:
    result = tree.as_agent("broker", "proxy-token", route)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def request(port: int, method: str, path: str, headers=None, body: bytes = b"", host: str = "127.0.0.1"):
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=20)
    conn.request(method, path, body=body or None, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def bearer(tree, route="p"):
    return {"Authorization": f"Bearer {token(tree, route)}"}


# -- what goes up: the real key, to the route's host only ------------------------------------------

def test_the_upstream_receives_the_real_key_and_the_client_the_answer(world):
    tree, provider, port, _ = world
    status, _, body = request(port, "POST", "/p/chat/completions", bearer(tree), b'{"model": "m"}')
    assert status == 200 and b"Hello from the provider" in body
    seen = provider.last()
    assert seen.headers["authorization"] == "Bearer " + KEY.decode()
    assert seen.path == "/v1/chat/completions"


def test_host_and_sni_come_from_the_route_never_from_the_request(world):
    tree, provider, port, _ = world
    status, _, _ = request(port, "GET", "/p/models", {**bearer(tree), "Host": "evil.example"})
    assert status == 200
    assert provider.last().headers["host"] == f"localhost:{provider.port}"
    assert provider.last().sni == "localhost"


@pytest.mark.parametrize("target", [
    "http://evil.example/p/models",  # absolute-form: the fly.io tokenizer's bypass
    "evil.example:443",  # authority-form
    "*",
])
def test_a_target_that_is_not_a_path_is_refused(world, target):
    tree, provider, port, _ = world
    before = len(provider.seen)
    reply = proxykit.raw(port, f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(tree, 'p')}\r\n\r\n".encode())
    assert proxykit.status_of(reply) == 400
    assert len(provider.seen) == before


@pytest.mark.parametrize("method", ["CONNECT", "TRACE"])
def test_connect_and_trace_are_refused_even_by_a_route_that_lists_them(world, method):
    tree, provider, port, _ = world
    assert tree.run("route", "add", "wide", "--upstream", f"https://localhost:{provider.port}", "--secret",
                    "openai/key", "--inject", "Authorization: Bearer {secret}", "--allow-private", "--force",
                    "--ca", str(provider.ca_path)).returncode == 0
    assert tree.run("route", "add", "x", "--upstream", "https://h", "--secret", "openai/key", "--inject",
                    "A: {secret}", "--methods", method).returncode == 2
    record = tree.state / "routes" / "wide"  # a record edited by hand: the proxy still refuses them
    edited = json.loads(record.read_text())
    edited["methods"] += ["CONNECT", "TRACE"]
    record.write_text(json.dumps(edited))
    before = len(provider.seen)
    reply = proxykit.raw(port, f"{method} /wide/models HTTP/1.1\r\nHost: x\r\n"
                               f"Authorization: Bearer {token(tree, 'wide')}\r\n\r\n".encode())
    assert proxykit.status_of(reply) == 405
    assert len(provider.seen) == before


@pytest.mark.parametrize("path", ["/p/../r/repos", "/p/%2e%2e/x", "/p/%2E%2e/x", "/p//etc", "/p/a%2fb",
                                  "/p/./x", "/p/a%252e%252e/x", "/p/a%5cb"])
def test_a_path_that_could_leave_the_routes_base_is_refused(world, path):
    tree, provider, port, _ = world
    before = len(provider.seen)
    reply = proxykit.raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(tree, 'p')}\r\n\r\n".encode())
    assert proxykit.status_of(reply) == 400, reply
    assert len(provider.seen) == before


def test_methods_and_path_prefix_outside_the_route_are_refused(world):
    tree, provider, port, _ = world
    a = {"x-api-key": token(tree, "a")}
    assert request(port, "GET", "/a/models", a)[0] == 405
    assert request(port, "POST", "/a/messages", a, b"{}")[0] == 200


def test_a_redirect_is_passed_back_never_followed(world):
    tree, provider, port, _ = world
    before = len(provider.seen)
    status, headers, _ = request(port, "GET", "/p/redirect", bearer(tree))
    assert status == 302 and headers["Location"] == "https://evil.invalid/steal"
    assert len(provider.seen) == before + 1


def test_a_route_to_plain_http_cannot_be_added(world):
    tree = world[0]
    result = tree.run("route", "add", "plain", "--upstream", "http://localhost:80", "--secret", "openai/key",
                      "--inject", "Authorization: Bearer {secret}")
    assert result.returncode == 2 and b"https://" in result.stderr


def test_two_route_adds_at_once_make_one_route_and_tell_the_other_it_exists(world):
    """Without the lock both saw no route and both wrote one, each with its own token: the token
    the first printed stopped working."""
    import threading

    tree, provider, _port, _ = world
    codes = []

    def add():
        codes.append(tree.run("route", "add", "twice", "--upstream", f"https://localhost:{provider.port}/v1",
                              "--secret", "openai/key", "--inject", "Authorization: Bearer {secret}").returncode)

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [0] + [2] * 7
    assert tree.run("route", "rm", "twice").returncode == 0


@pytest.mark.parametrize("args, said", [
    (["--upstream", "https://" + "a" * 300 + "/v1"], b"at most 253 characters"),
    (["--upstream", "https://localhost/v1", "--path-prefix", "/a\x01b"], b"control characters"),
])
def test_a_route_with_a_host_no_dns_could_hold_or_a_control_character_in_a_path_is_refused(world, args, said):
    tree = world[0]
    result = tree.run("route", "add", "odd", "--secret", "openai/key", "--inject", "Authorization: Bearer {secret}",
                      *args)
    assert result.returncode == 2 and said in result.stderr and result.stderr.count(b"\n") == 1, result.stderr


def test_a_private_address_needs_the_routes_allow_private(world):
    tree, provider, port, _ = world
    literal = tree.run("route", "add", "priv", "--upstream", f"https://127.0.0.1:{provider.port}", "--secret",
                       "openai/key", "--inject", "Authorization: Bearer {secret}", "--ca", str(provider.ca_path))
    assert literal.returncode == 2 and b"loopback or private" in literal.stderr  # known now, refused now
    result = tree.run("route", "add", "priv", "--upstream", f"https://localhost:{provider.port}", "--secret",
                      "openai/key", "--inject", "Authorization: Bearer {secret}", "--ca", str(provider.ca_path))
    assert result.returncode == 0, result.stderr  # a name: what it resolves to is checked at each request
    assert b"loopback or private" in result.stderr  # said at once
    assert b"the proxy looks localhost up again at each" in result.stderr
    before = len(provider.seen)
    status, _, body = request(port, "GET", "/priv/models", {"Authorization": f"Bearer {token(tree, 'priv')}"})
    assert status == 403 and b"loopback or private" in body
    assert len(provider.seen) == before


@pytest.mark.parametrize("host", ["169.254.169.254", "fd00:ec2::254", "0.0.0.0", "224.0.0.1", "fe80::1"])
def test_link_local_metadata_and_unspecified_are_refused_even_with_allow_private(world, host):
    tree, provider, port, _ = world
    name = "meta" + str(abs(hash(host)) % 1000)
    shown = f"[{host}]" if ":" in host else host
    added = tree.run("route", "add", name, "--upstream", f"https://{shown}", "--secret", "openai/key",
                     "--inject", "Authorization: Bearer {secret}", "--allow-private")
    assert added.returncode == 2, added.stderr
    # A record that names one all the same (edited by hand) is refused at each request.
    assert tree.run("route", "add", name, "--upstream", "https://localhost", "--secret", "openai/key",
                    "--inject", "Authorization: Bearer {secret}", "--allow-private").returncode == 0
    record = tree.state / "routes" / name
    edited = json.loads(record.read_text())
    edited["host"] = host
    record.write_text(json.dumps(edited))
    status, _, body = request(port, "GET", f"/{name}/latest", {"Authorization": f"Bearer {token(tree, name)}"})
    assert status == 403, body


@pytest.mark.parametrize("address, private_ok, public", [
    ("127.0.0.1", True, False), ("::1", True, False), ("10.1.2.3", True, False), ("192.168.1.1", True, False),
    ("fd12::1", True, False), ("::ffff:127.0.0.1", True, False), ("8.8.8.8", True, True),
    ("2001:4860:4860::8888", True, True), ("169.254.169.254", False, False), ("fe80::1", False, False),
    ("fd00:ec2::254", False, False), ("0.0.0.0", False, False), ("::", False, False), ("240.0.0.1", False, False),
    ("100.64.0.1", False, False),
])
def test_which_addresses_a_route_may_reach(address, private_ok, public):
    import ipaddress
    from clawgate.proxy import upstream

    assert (upstream.address_refused(ipaddress.ip_address(address), True) is None) == private_ok
    assert (upstream.address_refused(ipaddress.ip_address(address), False) is None) == public


def test_a_certificate_for_another_name_is_refused(world):
    tree, provider, port, _ = world
    result = tree.run("route", "add", "badname", "--upstream", f"https://localhost:{provider.port}",
                      "--secret", "openai/key", "--inject", "Authorization: Bearer {secret}", "--allow-private")
    assert result.returncode == 0  # the system store does not know the provider's CA
    before = len(provider.seen)
    status, _, body = request(port, "GET", "/badname/models", {"Authorization": f"Bearer {token(tree, 'badname')}"})
    assert status == 502 and b"TLS" in body
    assert len(provider.seen) == before


# -- smuggling: what two parsers could read two ways is refused --------------------------------------

@pytest.mark.parametrize("head, why", [
    ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"both Content-Length and Transfer-Encoding"),
    ("Content-Length: 5\r\nContent-Length: 6\r\n", b"more than one Content-Length"),
    ("Transfer-Encoding: gzip, chunked\r\n", b"only `Transfer-Encoding: chunked`"),
    ("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"only `Transfer-Encoding: chunked`"),
    ("X-Folded: a\r\n b\r\n", b"header folding"),
    ("Content-Length : 5\r\n", b"malformed header line"),
    ("Content-Length: +5\r\n", b"malformed Content-Length"),
])
def test_ambiguous_framing_is_refused(world, head, why):
    tree, provider, port, _ = world
    before = len(provider.seen)
    data = (f"POST /p/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(tree, 'p')}\r\n"
            f"{head}\r\nhello").encode()
    reply = proxykit.raw(port, data)
    assert proxykit.status_of(reply) == 400 and why in reply, reply
    assert len(provider.seen) == before


def test_a_bare_lf_in_the_head_is_refused(world):
    tree, provider, port, _ = world
    data = f"GET /p/models HTTP/1.1\r\nHost: x\nAuthorization: Bearer {token(tree, 'p')}\r\n\r\n".encode()
    reply = proxykit.raw(port, data)
    assert proxykit.status_of(reply) == 400 and b"bare CR or LF" in reply


def test_a_chunked_body_is_relayed_whole(world):
    tree, provider, port, _ = world
    data = (f"POST /p/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(tree, 'p')}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").encode()
    assert proxykit.status_of(proxykit.raw(port, data)) == 200
    assert provider.last().body == b"hello world"


def test_the_upstream_connection_is_kept_for_the_next_request_whatever_frames_the_answer(world):
    """A TLS handshake per request would cost milliseconds each: an answer of a Content-Length
    (which http.client leaves open at its end) and a chunked one both give the connection back."""
    tree, provider, port, _ = world
    for path in ("/p/chat/completions", "/p/events?n=2&delay=0"):
        ports = set()
        for _ in range(3):
            status, _, _ = request(port, "POST", path, bearer(tree), b'{"model": "m"}')
            assert status == 200
            ports.add(provider.last().client_port)
        assert len(ports) == 1, path


@pytest.mark.parametrize("value", [b"sk-abc\r\nX-Evil: 1", b"sk-\x00\xffcd", "sk-h\u00e9llo-\u043a\u043b\u044e\u0447".encode(),
                                   b" sk-padded "], ids=["crlf", "binary", "utf8", "padded"])
def test_a_value_that_is_not_header_text_is_refused_by_route_add_and_by_the_proxy(world, value):
    """A CR or LF would split the header (and made http.client raise with the value in its message);
    other bytes go out raw and come back in escapes the scrubber does not know."""
    tree, provider, port, process = world
    tree.set_secret("bad/value", value, tier="open")
    added = tree.run("route", "add", "bad", "--upstream", f"https://localhost:{provider.port}/v1", "--secret",
                     "bad/value", "--inject", "Authorization: Bearer {secret}", "--ca", str(provider.ca_path),
                     "--allow-private")
    assert added.returncode == 2 and added.stderr.count(b"\n") == 1 and b"not header text" in added.stderr
    # A route added while the value was good, whose value changed since: refused at each request.
    tree.set_secret("bad/value", b"sk-good-0123456789", tier="open")
    assert tree.run("route", "add", "bad", "--upstream", f"https://localhost:{provider.port}/v1", "--secret",
                    "bad/value", "--inject", "Authorization: Bearer {secret}", "--ca", str(provider.ca_path),
                    "--allow-private", "--force").returncode == 0
    tree.set_secret("bad/value", value, tier="open")
    seen = len(provider.seen)
    status, _, body = request(port, "GET", "/bad/echo", bearer(tree, "bad"))
    assert status == 502 and b"not header text" in body and value not in body
    assert len(provider.seen) == seen  # nothing went up
    record = json.loads((tree.state / "audit.log").read_bytes().splitlines()[-1])
    assert record["route"] == "bad" and record["result"] == "refused" and record["status"] == 502
    said = proxykit.journal(process)
    assert b"Traceback" not in said and value.strip() not in said
    assert tree.run("route", "rm", "bad").returncode == 0


def test_a_kept_upstream_connection_serves_one_route_only_and_never_follows_a_bodyless_answer(world):
    """Kept connections are a route's own (an answer out of step would meet an exchange scrubbing
    for another value), and one that answered HEAD is not kept (a body sent anyway would be read
    as the next answer)."""
    tree, provider, port, _ = world
    request(port, "POST", "/p/chat/completions", bearer(tree), b"{}")
    first = provider.last().client_port
    request(port, "POST", "/a/chat/completions", {"x-api-key": token(tree, "a")}, b"{}")
    assert provider.last().client_port != first  # same host, port, CA and secret; another route
    request(port, "HEAD", "/p/models", bearer(tree))
    after_head = provider.last().client_port
    request(port, "GET", "/p/models", bearer(tree))
    assert provider.last().client_port != after_head


def test_a_worker_that_cannot_be_forked_costs_that_connection_a_503_and_never_the_front(world, monkeypatch):
    """A task limit reached (the unit's TasksMax) must not end the process both callers share."""
    from clawgate.proxy import front

    tree = world[0]
    server = front.Front(tree.config(), None, 0, ("127.0.0.1",))
    if server.owners is None:
        pytest.skip("no socket owner table here: one worker in the front's process")

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(front.os, "fork", no_fork)
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            conn, _ = server.listeners[0].accept()
            with conn:
                server._route(conn)  # must return, not raise
            client.settimeout(5)
            assert proxykit.status_of(client.recv(4096)) == 503
    finally:
        for listener in server.listeners:
            listener.close()


def test_a_connection_gone_before_it_is_identified_costs_no_scan_of_the_kernels_tables(monkeypatch):
    """With TIME_WAIT full of the agent's closed connections, /proc/net/tcp holds 131,072 lines:
    once sock_diag is seen to answer, a connection it does not know is gone, never a scan."""
    from clawgate.proxy import peer

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        owners = peer.Owners()
        if not owners.by_diag:
            pytest.skip("sock_diag does not answer on this host")
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        with conn:
            assert owners.uid_of(conn) == os.geteuid()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.close()  # a reset: the client's socket is gone at once
            time.sleep(0.05)
            monkeypatch.setattr(peer, "_from_table", lambda sock: pytest.fail("scanned the kernel's table"))
            assert owners.uid_of(conn) is None


def test_hop_by_hop_and_proxy_headers_are_stripped(world):
    tree, provider, port, _ = world
    request(port, "GET", "/p/models", {**bearer(tree), "Proxy-Authorization": "x", "Keep-Alive": "1",
                                        "Connection": "X-Drop-Me", "X-Drop-Me": "1", "X-Keep": "2"})
    seen = provider.last().headers
    assert "proxy-authorization" not in seen and "keep-alive" not in seen and "x-drop-me" not in seen
    assert seen["x-keep"] == "2"


# -- what comes back: scrubbed ------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["plain", "b64", "basic", "url", "hex", "gzip", "gzip2", "deflate", "rawdeflate",
                                      "slow", "headers", "fold"])
def test_an_echoing_upstream_hands_back_only_redacted_forms(world, encoding):
    tree, provider, port, _ = world
    status, headers, body = request(port, "GET", f"/p/echo?enc={encoding}", bearer(tree))
    assert status == 200
    everything = body + json.dumps(headers).encode()
    if encoding == "gzip":
        assert "Content-Encoding" not in headers
    for form in (KEY, base64.b64encode(KEY), base64.b64encode(b"user:" + KEY),
                 urllib.parse.quote(KEY.decode()).encode(), KEY[:20], KEY.hex().encode(), KEY.hex().upper().encode()):
        assert form not in everything
    if encoding == "headers":  # neither a name of the upstream's choosing nor a cookie reaches the agent
        assert "Set-Cookie" not in headers and headers["X-Request-Id"] == "req-1"
    elif encoding == "fold":  # a folded value is dropped whole: its lines could split the key
        assert "Link" not in headers
    else:
        assert b"[redacted:openai/key]" in everything
    assert provider.last().headers["authorization"] == "Bearer " + KEY.decode()


def test_an_http_1_0_answer_ends_with_the_connection(world):
    tree, provider, port, _ = world
    one = (f"GET /p/models HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: Bearer {token(tree, 'p')}"
           "\r\n\r\n").encode()
    reply = proxykit.raw(port, one + one)  # pipelined: a kept connection would answer both in one body
    assert reply.count(b"HTTP/1.1 200") == 1 and b"Connection: close" in reply


def test_a_revoke_cuts_an_upload_in_flight(world):
    tree, provider, port, _ = world
    assert tree.owner_approve("gh/token", tree.code()).returncode == 0
    before = len(provider.seen)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(f"POST /r/repos/upload HTTP/1.1\r\nHost: x\r\nAuthorization: token {token(tree, 'r')}\r\n"
                     "Content-Length: 10\r\n\r\nhello".encode())
        time.sleep(0.5)
        assert tree.run("revoke", "gh/token").returncode == 0
        time.sleep(2.5)  # the watcher looks every second
        try:
            sock.sendall(b"world")
            answer = sock.recv(65536)
        except OSError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200")
    assert all(seen.body != b"helloworld" for seen in provider.seen[before:])


def test_a_body_in_an_encoding_it_cannot_read_is_not_relayed(world):
    tree, provider, port, _ = world
    status, _, body = request(port, "GET", "/p/brotli", bearer(tree))
    assert status == 502 and b"cannot scrub" in body
    status, _, body = request(port, "GET", "/p/echo?enc=tegzip", bearer(tree))  # a transfer coding too
    assert status == 502 and b"transfer coding" in body and KEY not in body


def test_a_body_in_too_many_chunks_is_refused(world):
    tree, provider, port, _ = world
    before = len(provider.seen)
    data = (f"POST /p/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(tree, 'p')}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + b"1\r\na\r\n" * 16385 + b"0\r\n\r\n"
    reply = proxykit.raw(port, data)
    assert proxykit.status_of(reply) in (413, 0) or b"chunks" in reply
    assert all(len(seen.body) < 16385 for seen in provider.seen[before:])


def test_a_method_override_header_never_reaches_the_upstream(world):
    tree, provider, port, _ = world
    request(port, "POST", "/a/messages", {"x-api-key": token(tree, "a"), "X-HTTP-Method-Override": "DELETE",
                                          "X-Method-Override": "DELETE"}, b"{}")
    seen = provider.last().headers
    assert "x-http-method-override" not in seen and "x-method-override" not in seen


def test_the_upstream_is_asked_for_an_uncompressed_answer(world):
    tree, provider, port, _ = world
    request(port, "GET", "/p/models", {**bearer(tree), "Accept-Encoding": "gzip, br"})
    assert provider.last().headers["accept-encoding"] == "identity"


def test_events_stream_through_as_they_arrive(world):
    tree, provider, port, _ = world
    provider.delay = 0.5
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET /p/events?n=4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(tree, 'p')}\r\n"
                         "Connection: close\r\n\r\n".encode())
            first = b""
            while b'{"n": 0}' not in first:
                piece = sock.recv(65536)
                assert piece, first
                first += piece
            # The first event is here while the provider still sleeps before its last (4 x 0.5 s):
            # a buffering proxy would hold everything until the end.
            assert b'{"n": 3}' not in first
    finally:
        provider.delay = 0.0


# -- who may use it ------------------------------------------------------------------------------------

def test_a_wrong_missing_or_other_routes_token_is_refused(world):
    tree, provider, port, _ = world
    before = len(provider.seen)
    assert request(port, "GET", "/p/models")[0] == 401
    assert request(port, "GET", "/p/models", {"Authorization": "Bearer cgp_" + "0" * 48})[0] == 401
    assert request(port, "GET", "/p/models", {"Authorization": f"Bearer {token(tree, 'r')}"})[0] == 401
    assert request(port, "GET", "/p/models", {"Authorization": token(tree, "p")})[0] == 401  # framing matters
    assert len(provider.seen) == before


def test_an_old_token_is_refused_after_rotate(world):
    tree, provider, port, _ = world
    old = token(tree, "p")
    assert tree.run("route", "rotate", "p").returncode == 0
    assert request(port, "GET", "/p/models", {"Authorization": f"Bearer {old}"})[0] == 401
    assert request(port, "GET", "/p/models", bearer(tree))[0] == 200


def test_an_unknown_route_is_404_with_a_json_reason(world):
    tree, provider, port, _ = world
    status, headers, body = request(port, "GET", "/nope/models", bearer(tree))
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["message"].startswith("clawgate proxy: no route")


def test_a_restricted_secret_needs_a_grant_and_revoke_cuts_it_at_once(world):
    tree, provider, port, _ = world
    headers = {"Authorization": f"token {token(tree, 'r')}"}
    status, _, body = request(port, "GET", "/r/repos/x", headers)
    assert status == 403 and b"approval required" in body
    assert tree.owner_approve("gh/token", tree.code()).returncode == 0
    assert request(port, "GET", "/r/repos/x", headers)[0] == 200
    assert provider.last().headers["authorization"] == "token " + OTHER_KEY.decode()
    assert request(port, "GET", "/r/other", headers)[0] == 403  # outside the path prefix
    assert tree.run("revoke", "gh/token").returncode == 0
    assert request(port, "GET", "/r/repos/x", headers)[0] == 403


def test_an_expired_grant_is_no_grant(world):
    tree, provider, port, _ = world
    assert tree.owner_approve("gh/token", tree.code(), "--ttl", "2s").returncode == 0
    headers = {"Authorization": f"token {token(tree, 'r')}"}
    assert request(port, "GET", "/r/repos/x", headers)[0] == 200
    time.sleep(2.2)
    assert request(port, "GET", "/r/repos/x", headers)[0] == 403


def test_a_revoke_cuts_a_stream_in_flight(world):
    tree, provider, port, _ = world
    assert tree.owner_approve("gh/token", tree.code()).returncode == 0
    provider.delay = 0.5
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(f"GET /r/repos/events?n=20 HTTP/1.1\r\nHost: x\r\nAuthorization: token {token(tree, 'r')}\r\n"
                         "Connection: close\r\n\r\n".encode())
            got = sock.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")
            assert tree.run("revoke", "gh/token").returncode == 0
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                got += piece
        assert b'{"n": 19}' not in got
    finally:
        provider.delay = 0.0


def test_every_use_is_one_bounded_audit_record_without_the_value(world):
    tree, provider, port, _ = world
    request(port, "POST", "/p/chat/completions", bearer(tree), b'{"model": "m"}')
    log = (tree.state / "audit.log").read_bytes()
    last = json.loads(log.splitlines()[-1])
    assert last["event"] == "proxy" and last["route"] == "p" and last["status"] == 200
    assert {"method", "path", "up", "down", "ms"} <= set(last)
    assert KEY not in log and OTHER_KEY not in log


def test_exchanges_ending_together_each_leave_exactly_one_record(world):
    """Records are written in batches (one lock for those that end together): none lost, none twice."""
    import threading

    tree, _provider, port, process = world
    paths = [f"/nosuchroute/{i}-{j}" for i in range(32) for j in range(10)]

    def client(mine):
        for path in mine:
            assert request(port, "GET", path)[0] == 404

    threads = [threading.Thread(target=client, args=(paths[i::32],)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logged = [json.loads(line).get("path") for line in (tree.state / "audit.log").read_bytes().splitlines()]
    assert sorted(p for p in logged if p in set(paths)) == sorted(paths)
    assert b"audit record not written" not in proxykit.journal(process)


# -- use-only: never to the agent --------------------------------------------------------------------

def test_a_use_only_secret_is_refused_to_the_agent_by_get_and_resolve_and_names_the_route(world):
    tree = world[0]
    got = tree.as_agent("broker", "get", "openai/key")
    assert got.returncode == 1 and KEY not in got.stdout + got.stderr
    assert b"use-only" in got.stderr and b"clawgate proxy-token" in got.stderr
    request_json = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ["openai/key"]}).encode()
    resolved = tree.as_agent("broker", "resolve", input=request_json)
    assert resolved.returncode == 0 and KEY not in resolved.stdout
    assert json.loads(resolved.stdout)["errors"]["openai/key"]["code"] == "USE_ONLY"
    assert tree.run("broker", "get", "openai/key").stdout == KEY  # the owner still reads it


def test_a_grant_does_not_make_a_use_only_secret_readable(world):
    tree = world[0]
    assert tree.run("secrets", "use-only", "gh/token").returncode == 0
    try:
        assert tree.owner_approve("gh/token", tree.code()).returncode == 0
        got = tree.as_agent("broker", "get", "gh/token")
        assert got.returncode == 1 and OTHER_KEY not in got.stdout
    finally:
        assert tree.run("secrets", "use-only", "gh/token", "--off").returncode == 0
        tree.run("revoke", "gh/token")


def test_setting_a_new_value_keeps_the_use_only_mark(world):
    tree = world[0]
    tree.set_secret("openai/key", KEY, tier="open")
    assert tree.as_agent("broker", "get", "openai/key").returncode == 1


def test_a_route_warns_of_a_secret_the_agent_can_read_and_rm_of_a_routed_secret(world):
    tree, provider, port, _ = world
    tree.set_secret("readable", b"r-value", tier="open")
    added = tree.run("route", "add", "readable", "--upstream", f"https://localhost:{provider.port}", "--secret",
                     "readable", "--inject", "Authorization: Bearer {secret}", "--allow-private",
                     "--ca", str(provider.ca_path))
    assert added.returncode == 0 and b"the agent can still read it" in added.stderr
    again = tree.run("route", "add", "readable", "--upstream", f"https://localhost:{provider.port}", "--secret",
                     "readable", "--inject", "Authorization: Bearer {secret}")
    assert again.returncode == 2 and b"--force" in again.stderr
    removed = tree.run("secrets", "rm", "readable", "--force")
    assert removed.returncode == 0 and b"route readable sends readable" in removed.stderr
    status, _, body = request(port, "GET", "/readable/x", {"Authorization": f"Bearer {token(tree, 'readable')}"})
    assert status == 502 and b"not stored" in body


def test_a_damaged_tier_record_fails_closed_to_use_only(world):
    tree = world[0]
    tree.set_secret("plain", b"v", tier="open")
    record = tree.state / "tiers" / "plain"
    record.write_text("open sometimes\n")
    record.chmod(0o600)
    assert tree.as_agent("broker", "get", "plain").returncode == 1


def test_the_token_may_come_as_a_bearer_and_is_never_relayed(world):
    tree, provider, port, _ = world
    status, _, _ = request(port, "POST", "/a/messages", {"Authorization": f"Bearer {token(tree, 'a')}"}, b"{}")
    assert status == 200
    seen = provider.last().headers
    assert seen["x-api-key"] == KEY.decode() and "authorization" not in seen


def test_a_revoke_while_the_upstream_is_still_connecting_keeps_the_key_from_leaving(world, tmp_path):
    """The upstream takes 2.5 s to answer TLS; the owner revokes during it: nothing is sent."""
    import ssl
    import threading

    tree, provider, port, _ = world
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    provider.ca.issue_cert("localhost").configure_cert(context)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    received = []

    def slow():
        conn, _ = listener.accept()
        time.sleep(2.5)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(3)
                received.append(tls.recv(65536))
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    assert tree.run("route", "add", "slow", "--upstream", f"https://localhost:{listener.getsockname()[1]}",
                    "--secret", "gh/token", "--inject", "Authorization: token {secret}", "--allow-private",
                    "--ca", str(provider.ca_path)).returncode == 0
    assert tree.owner_approve("gh/token", tree.code()).returncode == 0
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(f"DELETE /slow/thing HTTP/1.1\r\nHost: x\r\nAuthorization: token {token(tree, 'slow')}\r\n"
                     "\r\n".encode())
        time.sleep(0.5)
        assert tree.run("revoke", "gh/token").returncode == 0
        try:
            answer = sock.recv(65536)
        except OSError:
            answer = b""
    thread.join(10)
    listener.close()
    assert not answer.startswith(b"HTTP/1.1 200")
    assert not any(OTHER_KEY in data for data in received), received
