"""The openbao store fails closed (invariant 17): a real OpenBao with file storage, sealed, stopped,
restarted, slowed, its token and secret id revoked, its policy too narrow.

Each fault: exit 6 with one line naming OpenBao and what to check, within a bounded time, nothing
of the value on the host's disk afterwards (the state dir searched for it and its base64), and
the next call after recovery is served. One server for the module (it is started, initialised
and unsealed once); each test has its own prefix and AppRole.
"""

import base64
import signal
import time

import pytest

from baoserver import FileServer, ScriptedServer, SlowProxy
from installtree import REPO, Tree

VALUE = b"fleet-value-\x00\xff-7d1c"
BOUND = 8.0  # seconds: the store's 5 s call timeout and the interpreter's start, with room to spare


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = FileServer(tmp_path_factory.mktemp("baofile"))
    yield srv
    srv.stop()


@pytest.fixture
def host(server, tmp_path):
    owner = server.owner(f"clawgate/{tmp_path.name}")
    tree = Tree(tmp_path, store="openbao", extra_config=owner.config())
    owner.give(tree.state)
    assert tree.run("secrets", "init").returncode == 0
    tree.set_secret("db/password", VALUE, tier="open")
    tree.bao_owner = owner
    return tree


def served(tree: Tree) -> None:
    got = tree.as_agent("broker", "get", "db/password")
    assert got.returncode == 0, got.stderr
    assert got.stdout == VALUE


def refused(tree: Tree, *words: str) -> str:
    started = time.monotonic()
    got = tree.as_agent("broker", "get", "db/password")
    took = time.monotonic() - started
    line = got.stderr.decode()
    assert got.returncode == 6, line
    assert took < BOUND, (took, line)
    assert got.stdout == b""
    assert line.count("\n") == 1 and line.startswith("clawgate: OpenBao at https://127.0.0.1:"), line
    assert "Traceback" not in line
    for word in words:
        assert word in line, line
    assert_no_value_on_disk(tree)
    return line


def assert_no_value_on_disk(tree: Tree) -> None:
    needles = [VALUE, base64.b64encode(VALUE), b"fleet-value"]
    for path in tree.state.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), path


def test_served_and_nothing_on_disk(host):
    served(host)
    assert_no_value_on_disk(host)
    assert not (host.state / "secrets").exists() or not any((host.state / "secrets").iterdir())


def test_sealed_then_unsealed(server, host):
    served(host)
    server.seal()
    try:
        line = refused(host, "sealed", "unseal")
    finally:
        server.unseal()
    served(host)
    documented = line.replace(server.address, "https://bao.example:8200").rstrip("\n")
    assert f"    {documented}\n" in (REPO / "docs" / "OPENBAO.md").read_text()  # the doc shows the real line


def test_stopped_then_restarted(server, host):
    served(host)
    server.stop()
    try:
        refused(host, "unreachable", "[openbao] address")
    finally:
        server.start()
    refused(host, "sealed")  # a restarted server comes back sealed
    server.unseal()
    served(host)  # the cached token survived the restart


def test_slow_server_is_refused_in_bounded_time(server, tmp_path):
    proxy = SlowProxy(server.port, delay=30)
    try:
        owner = server.owner(f"clawgate/{tmp_path.name}")
        slow_config = owner.config().replace(server.address, f"https://127.0.0.1:{proxy.port}")
        (tmp_path / "slow").mkdir()
        tree = Tree(tmp_path / "slow", store="openbao", extra_config=slow_config)
        owner.give(tree.state)
        line = refused(tree, "no answer within")
        assert "running and reachable" in line
    finally:
        proxy.close()


def test_revoked_token_is_replaced_by_a_fresh_login(server, host):
    served(host)
    token = (host.state / "openbao-token").read_text().split()[1]
    server.api("POST", "auth/token/revoke", {"token": token})
    served(host)
    assert (host.state / "openbao-token").read_text().split()[1] != token


def test_expired_token_in_the_cache_is_replaced(host):
    served(host)
    path = host.state / "openbao-token"
    token = path.read_text().split()[1]
    path.write_text(f"{int(time.time()) - 5} {token}\n")
    served(host)
    expiry, fresh = path.read_text().split()
    assert fresh != token and float(expiry) > time.time()


def test_revoked_secret_id_then_a_new_one(server, host):
    served(host)
    owner = host.bao_owner
    token = (host.state / "openbao-token").read_text().split()[1]
    server.api("POST", f"auth/approle/role/{owner.role}/secret-id/destroy", {"secret_id": owner.secret_id})
    server.api("POST", "auth/token/revoke", {"token": token})
    refused(host, "AppRole login", "secret id")
    owner.secret_id = server.api("POST", f"auth/approle/role/{owner.role}/secret-id")["data"]["secret_id"]
    owner.give(host.state)
    served(host)


def test_policy_too_narrow_then_widened(server, host):
    served(host)
    owner = host.bao_owner
    policy = server.api("GET", f"sys/policies/acl/{owner.role}")["data"]["policy"]
    server.api("PUT", f"sys/policies/acl/{owner.role}", {"policy": 'path "secret/data/elsewhere/*" '
                                                                   '{ capabilities = ["read"] }'})
    try:
        line = refused(host, "permission denied", "policy")
        assert "error occurred" not in line  # summarised: OpenBao's own text is not echoed
        assert "token_bound_cidrs" not in line  # its token works (lookup-self): the policy's answer
    finally:
        server.api("PUT", f"sys/policies/acl/{owner.role}", {"policy": policy})
    served(host)


def test_a_wrong_ca_is_refused(server, host, tmp_path):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    text = host.config_path.read_text().replace(server.ca, str(other))
    host.config_path.write_text(text)
    refused(host, "TLS certificate not verified", f"[openbao] ca ({other})")


def test_a_standby_answering_429_is_refused(tmp_path):
    """No real standby here (one node): a TLS server that answers every call as a standby does."""
    import http.server
    import ssl
    import threading

    import trustme

    from baoserver import Owner, Server

    authority = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)

    class Standby(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = b'{"errors":[]}'
            self.send_response(429)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_LIST = answer  # noqa: N815 - http.server names its handlers so

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Standby)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        fake = Server.__new__(Server)
        fake.address, fake.ca = f"https://127.0.0.1:{httpd.server_address[1]}", str(tmp_path / "ca.pem")
        authority.cert_pem.write_to_path(fake.ca)
        owner = Owner(fake, "clawgate/standby", "r", "role-id", "d2b6a1f0-1111-2222-3333-444455556666")
        (tmp_path / "host").mkdir()
        tree = Tree(tmp_path / "host", store="openbao", extra_config=owner.config())
        owner.give(tree.state)
        refused(tree, "standby", "active node")
    finally:
        httpd.shutdown()


def scripted_host(tmp_path, server: ScriptedServer) -> Tree:
    (tmp_path / "host").mkdir()
    tree = Tree(tmp_path / "host", store="openbao", extra_config=server.owner().config())
    server.owner().give(tree.state)
    return tree


@pytest.mark.parametrize("behaviour", ["reset", "drop"])
def test_a_connection_reset_or_dropped_is_not_called_a_tls_or_ca_problem(tmp_path, behaviour):
    server = ScriptedServer(tmp_path, behaviour)
    try:
        line = refused(scripted_host(tmp_path, server), "closed or reset the connection", "is OpenBao running")
        assert "TLS" not in line and "[openbao] ca" not in line, line
    finally:
        server.close()


def test_a_refused_connection_names_the_address_to_check(tmp_path):
    from proxykit import free_port

    server = ScriptedServer(tmp_path, "answer")
    server.close()
    server.address = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    line = refused(scripted_host(tmp_path, server), "connection refused", "is OpenBao running")
    assert line.startswith(f"clawgate: OpenBao at {server.address}:"), line


def test_a_server_trickling_its_answer_is_cut_off_by_one_deadline_for_the_whole_call(tmp_path):
    """A byte every 0.4 s never lets one read wait 5 s; the whole answer would take ~40 s."""
    server = ScriptedServer(tmp_path, "trickle", body=b'{"auth": {"client_token": "t", "lease_duration": 60}}',
                            pace=0.4)
    try:
        line = refused(scripted_host(tmp_path, server), "no answer within 5s")
        assert "running and reachable" in line
    finally:
        server.close()


def test_openbao_error_text_is_quoted_bounded_and_escaped(tmp_path):
    hostile = "\x1b]0;owned\x07\x1b[2J" + "A" * 20000 + "\r\ninjected line"
    import json

    server = ScriptedServer(tmp_path, "answer", status=500, body=json.dumps({"errors": [hostile]}).encode())
    try:
        line = refused(scripted_host(tmp_path, server), "HTTP 500", "\\x1b]0;owned")
        assert "\x1b" not in line and "\x07" not in line and "\r" not in line
        assert len(line) < 400 and "AAAA..." in line and "injected" not in line, line
    finally:
        server.close()


def test_a_login_from_outside_the_roles_cidrs_says_so_not_wrong_secret_id(server, tmp_path):
    owner = server.owner(f"clawgate/{tmp_path.name}")
    server.api("POST", f"auth/approle/role/{owner.role}", {"secret_id_bound_cidrs": ["10.0.0.0/8"]})
    owner.secret_id = server.api("POST", f"auth/approle/role/{owner.role}/secret-id")["data"]["secret_id"]
    tree = Tree(tmp_path, store="openbao", extra_config=owner.config())
    owner.give(tree.state)
    line = refused(tree, "AppRole login", "secret_id_bound_cidrs", "this host's address")
    assert "wrong role id" not in line, line


def test_a_wrong_secret_id_says_so_not_cidrs(server, tmp_path):
    owner = server.owner(f"clawgate/{tmp_path.name}")
    owner.secret_id = "d2b6a1f0-1111-2222-3333-444455556666"
    tree = Tree(tmp_path, store="openbao", extra_config=owner.config())
    owner.give(tree.state)
    line = refused(tree, "AppRole login", "wrong role id", "secret id")
    assert "cidr" not in line.lower(), line


def test_a_token_bound_to_other_addresses_is_not_called_a_policy_gap(server, tmp_path):
    owner = server.owner(f"clawgate/{tmp_path.name}")
    server.api("POST", f"auth/approle/role/{owner.role}", {"token_bound_cidrs": ["10.0.0.0/8"]})
    tree = Tree(tmp_path, store="openbao", extra_config=owner.config())
    owner.give(tree.state)
    line = refused(tree, "token_bound_cidrs", "this host's address")
    assert "permission denied on" not in line and "covers the prefix" not in line, line


def test_a_missing_kv_mount_is_named_not_a_policy_gap_nor_a_missing_secret(server, tmp_path):
    owner = server.owner(f"clawgate/{tmp_path.name}", mount="nokv")  # its policy covers the mount
    tree = Tree(tmp_path, store="openbao", extra_config=owner.config() + "mount = nokv\n")
    owner.give(tree.state)
    line = refused(tree, "no secrets engine mounted at nokv/", "[openbao] mount")
    assert "permission" not in line and "policy" not in line, line
    init = tree.run("secrets", "init")
    assert init.returncode == 6 and b"no secrets engine mounted at nokv/" in init.stderr, init.stderr


# -- doctor: each OpenBao finding's fix says who fixes it and how (never "rerun install.sh" for a
# server-side fault: a sealed OpenBao needs its operators, not a reinstall) -------------------------

def doctor_lines(tree: Tree) -> "list[str]":
    out = tree.run("doctor").stdout.decode()
    return [line for line in out.splitlines() if line[6:].split(":")[0] == "seed" or "openbao" in line.split(":")[0]]


def finding(lines: "list[str]", what: str) -> str:
    found = [line for line in lines if line.startswith(f"FAIL  {what}:")]
    assert len(found) == 1, lines
    assert "install.sh --owner" not in found[0].split("(fix: ")[0]
    return found[0].split("(fix: ", 1)[1]


def test_doctor_sealed_says_unseal_not_reinstall(server, host):
    host.set_secret("api/key", b"sk-routed-0123")
    added = host.run("route", "add", "r", "--upstream", "https://localhost:9/v1", "--secret", "api/key",
                     "--inject", "Authorization: Bearer {secret}", "--ca", server.ca, "--allow-private")
    assert added.returncode == 0, added.stderr
    server.seal()
    try:
        everything = host.run("doctor").stdout.decode().splitlines()
        lines = doctor_lines(host)
    finally:
        server.unseal()
    assert not [line for line in everything if line.startswith("FAIL  route")], everything  # its secret is in OpenBao
    assert any(line.startswith("skip  proxy routes: not checked") for line in everything), everything
    assert any(line.startswith("skip  openbao session: not checked") for line in everything), everything
    assert any(line.startswith("ok    audit log:") for line in everything), everything  # this host's: checked all the same
    fix = finding(lines, "openbao unsealed")
    assert "unseal" in fix and "operator" in fix and "install.sh" not in fix, fix
    assert not any("install.sh" in line for line in lines if line.startswith("FAIL")), lines
    assert any(line.startswith("skip  seed:") for line in lines), lines  # its seed is in OpenBao: not a second FAIL
    assert sum(line.startswith("FAIL") for line in lines) == 1, lines


def test_doctor_unreachable_says_check_the_address_and_network(server, host):
    server.stop()
    try:
        lines = doctor_lines(host)
    finally:
        server.start()
        server.unseal()
    fix = finding(lines, "openbao reachable")
    assert "[openbao] address" in fix and "network" in fix and "install.sh" not in fix, fix
    assert sum(line.startswith("FAIL") for line in lines) == 1, lines


def test_doctor_revoked_secret_id_says_issue_a_new_one_with_the_documented_command(server, host):
    served(host)
    owner = host.bao_owner
    server.api("POST", f"auth/approle/role/{owner.role}/secret-id/destroy", {"secret_id": owner.secret_id})
    lines = doctor_lines(host)  # the cached token still works: doctor checks the secret id itself
    fix = finding(lines, "openbao token")
    assert "bao write -wrap-ttl=5m -f -field=wrapping_token auth/approle/role/" in fix, fix
    assert f"whose role id is {owner.role_id}" in fix and "share/doc/clawgate/OPENBAO.md" in fix and "metadata=" in fix, fix
    assert f"--prefix {host.prefix} --state-dir {host.state} " in fix and "--store openbao" in fix, fix
    owner.secret_id = server.api("POST", f"auth/approle/role/{owner.role}/secret-id")["data"]["secret_id"]
    owner.give(host.state)
    assert not any(line.startswith("FAIL") for line in doctor_lines(host) if "openbao" in line)


def test_doctor_policy_too_narrow_points_at_the_documented_policy(server, host):
    owner = host.bao_owner
    policy = server.api("GET", f"sys/policies/acl/{owner.role}")["data"]["policy"]
    server.api("PUT", f"sys/policies/acl/{owner.role}", {"policy": 'path "secret/data/elsewhere/*" '
                                                                   '{ capabilities = ["read"] }'})
    try:
        lines = doctor_lines(host)
    finally:
        server.api("PUT", f"sys/policies/acl/{owner.role}", {"policy": policy})
    fix = finding(lines, "openbao policy")
    assert "share/doc/clawgate/OPENBAO.md" in fix and "policy" in fix and owner.role_id in fix and "install.sh" not in fix, fix


def test_doctor_on_a_server_that_stopped_answering_says_check_it_runs_not_the_ca(server, host):
    """A frozen server (connected, silent) times out mid-handshake: that is a server to look at,
    not a CA file to change."""
    served(host)
    server.proc.send_signal(signal.SIGSTOP)
    try:
        lines = doctor_lines(host)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    fix = finding(lines, "openbao reachable")
    assert "running" in fix and "[openbao] ca" not in fix, fix
    served(host)
