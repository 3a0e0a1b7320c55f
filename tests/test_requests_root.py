"""Requests, the owner's channel, number matching and the root seed, end to end as root.

The real install.sh, fresh users and the real sudo (RootEnv): the agent asks with `clawgate
request`, the owner's channel (a command writing to a file only the owner can read, or a
loopback https server with a test CA) receives what is asked and the match, and the agent
relays code + match. Each test attacks one defence of DESIGN's invariant 14.
"""

import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from installtree import wrong_code
from rootenv import RootEnv
from clawgate import totp

pytestmark = pytest.mark.root

DENIED = b"clawgate: code denied\n"
VALUES = {"db": b"hunter2-db-value", "api": b"sk-api-value-93843", "cfg": b"open-config-value"}
HANG_DETECTOR = 60  # seconds: far above notify.BOUND (5 s); only a hang can reach it


# -- the owner's channel: a command that appends each event to a file only the owner can read -----

def inbox(env) -> Path:
    path = env.root / "inbox"
    if not path.exists():
        path.mkdir(mode=0o700)
        uid = int(subprocess.check_output(["id", "-u", env.owner_name]))
        os.chown(path, uid, -1)
    return path / "events"


def set_command_channel(env, line=None) -> None:
    line = line or f"/bin/sh -c 'cat >> {inbox(env)}; echo >> {inbox(env)}'"
    result = env.owner("notify", "set", input=f"{line}\n".encode())
    assert result.returncode == 0, result.stderr


def events(env, kind=None, wait_for=0):
    """The events the channel got; wait_for: poll until that many of `kind` arrived (pushes are detached)."""
    deadline = time.time() + 20
    while True:
        path = inbox(env)
        found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        found = [e for e in found if kind in (None, e["event"])]
        if len(found) >= wait_for or time.time() > deadline:
            return found
        time.sleep(0.1)


def request(env, *args: str, **kw) -> str:
    result = env.agent("request", *args, **kw)
    assert result.returncode == 0, result.stderr
    rid = result.stdout.decode().strip()
    assert rid.startswith("@") and len(rid) == 7, result.stdout
    return rid


def pushed(env, rid):
    return next(e for e in events(env, "request") if e["id"] == rid)


def audit(env, event=None):
    records = [json.loads(line) for line in (env.state / "audit.log").read_bytes().splitlines()]
    return [r for r in records if event in (None, r["event"])]


def failures(env) -> int:
    return json.loads((env.state / "totp.json").read_text())["failures"]


def code_of(env, params) -> str:
    """An unspent code of `params` (the root seed): both seeds share the gate's step counter."""
    saved, env.seed = env.seed, params
    try:
        return env.code()
    finally:
        env.seed = saved


@pytest.fixture(scope="module")
def env():
    with RootEnv() as root_env:
        root_env.enroll_seed()
        root_env.set_secret("db", VALUES["db"], tier="restricted")
        root_env.set_secret("api", VALUES["api"], tier="controlled")
        root_env.set_secret("cfg", VALUES["cfg"], tier="open")
        set_command_channel(root_env)
        yield root_env


@pytest.fixture
def fresh():
    with RootEnv() as root_env:
        root_env.enroll_seed()
        root_env.set_secret("db", VALUES["db"], tier="restricted")
        yield root_env


# -- what the owner is shown --------------------------------------------------------------------

def test_a_request_pushes_what_it_asks_the_reason_escaped_and_a_fresh_match(env):
    rid = request(env, "db", "--ttl", "2h", "--reason", "migrate\x1b[31m\nfake: approved by owner")
    event = pushed(env, rid)
    assert event["match"].isdigit() and len(event["match"]) == 2
    assert event["what"] == "db (restricted, 15m)"  # 2h asked, cut to the cap before the owner sees it
    assert "\x1b" not in event["text"] and "\n" not in event["text"]
    assert "migrate\\x1b[31m\\x0afake: approved by owner" in event["text"]
    assert f"Match {event['match']}" in event["text"] and rid in event["text"]
    root_id = request(env, "@root", "--reason", "update", "--", "/usr/bin/apt-get", "install", "-y", "a b")
    assert pushed(env, root_id)["what"] == "run as root: /usr/bin/apt-get install -y 'a b'"
    more = [request(env, "db") for _ in range(6)]
    assert len({pushed(env, r)["match"] for r in [rid, root_id] + more}) > 1  # fresh per request
    for done in [rid, root_id] + more:  # the module's install allows 16 pending at once
        assert env.owner("deny", done).returncode == 0


def test_code_and_match_for_one_request_is_refused_on_another_and_on_root(env):
    a, b = request(env, "db"), request(env, "api")
    root = request(env, "@root", "--", "/usr/bin/true")
    code, match_a = env.code(), pushed(env, a)["match"]
    assert match_a != pushed(env, b)["match"] or True  # the same two digits by chance changes nothing below
    before = failures(env)
    for target in (b, root):
        if pushed(env, target)["match"] == match_a:
            continue  # 1 in 100: that request happens to share A's match
        result = env.agent("approve", target, code + match_a)
        assert (result.returncode, result.stderr) == (1, DENIED)
    assert failures(env) > before  # counted like a wrong code
    causes = [r["cause"] for r in audit(env, "code") if r.get("result") == "denied"]
    assert "wrong match" in causes
    assert env.agent("get", "api").returncode == 3
    spent = env.agent("approve", a, f"{code}-{match_a}")  # a right code refused for its match is spent
    assert (spent.returncode, spent.stderr) == (1, DENIED)
    ok = env.agent("approve", a, f"{env.code()}-{match_a}")  # the owner's next code; `-` accepted
    assert ok.returncode == 0, ok.stderr
    assert env.agent("get", "db").stdout == VALUES["db"]
    again = env.agent("approve", a, code + match_a)
    assert again.returncode == 3  # the request is done: one approval, one grant
    assert env.owner("revoke", "db").returncode == 0


def test_a_bare_code_relayed_by_the_agent_is_refused_once_a_channel_is_set(env):
    assert env.owner("unlock").returncode == 0  # earlier tests' refusals count too
    rid = request(env, "db")
    before = failures(env)
    code = env.code()
    for args in (("approve", rid, code), ("approve", "db", code), ("approve", "@root", code),
                 ("elevate", code, "--", "/usr/bin/id", "-u")):
        result = env.agent(*args)
        assert (result.returncode, result.stderr, result.stdout) == (1, DENIED, b""), args
    assert failures(env) == before + 4
    assert env.agent("get", "db").returncode == 3
    assert not (env.state / "grants" / "@root").exists()
    assert env.owner("unlock").returncode == 0  # the spent code above was one more failure
    ok = env.agent("approve", rid, f"{env.code()} {pushed(env, rid)['match']}")  # a space accepted too
    assert ok.returncode == 0, ok.stderr
    assert env.owner("revoke", "db").returncode == 0
    assert env.owner("unlock").returncode == 0


def test_an_approved_root_request_runs_its_argv_exactly_once(env):
    mark = env.root / "ran"
    rid = request(env, "@root", "--reason", "count", "--", "/bin/sh", "-c", f"id -u >> {mark}")
    early = env.agent("elevate", rid)
    assert early.returncode == 3 and not mark.exists()
    approved = env.agent("approve", rid, env.code() + pushed(env, rid)["match"])
    assert approved.returncode == 0, approved.stderr
    first = env.agent("elevate", rid)
    assert first.returncode == 0, first.stderr
    second = env.agent("elevate", rid)
    assert second.returncode == 3
    assert mark.read_text() == "0\n"  # once, as root
    runs = [r for r in audit(env, "elevate") if r.get("id") == rid and r["result"] == "run"]
    assert len(runs) == 1 and runs[0]["argv"] == ["/bin/sh", "-c", f"id -u >> {mark}"]
    root_runs = events(env, "elevate", wait_for=1)
    assert any(f"id -u >> {mark}" in e["text"] for e in root_runs)  # pushed to the owner


def test_the_agent_cannot_read_the_channel_a_match_or_the_pending_list(env):
    rid = request(env, "db")
    match = pushed(env, rid)["match"]
    for path in (env.state / "notify.json", env.state / "requests" / rid[1:], inbox(env)):
        read = env.run_as(env.agent_name, "/bin/cat", str(path))
        assert read.returncode != 0 and read.stdout == b""
    assert env.run_as(env.agent_name, "/bin/ls", str(env.state / "requests")).returncode != 0
    for verb in (("pending",), ("pending", "--json"), ("notify", "show"), ("deny", rid)):
        result = env.agent(*verb)
        assert result.returncode == 1 and result.stdout == b"", verb
    # around the front door: sudo has no line for the owner's programs, broker no verb for them
    direct = env.run_as(env.agent_name, "/usr/bin/sudo", "-n", "-u", env.owner_name, str(env.libexec / "pending"))
    assert direct.returncode == 1 and direct.stdout == b""
    via_broker = env.run_as(env.agent_name, "/usr/bin/sudo", "-n", "-u", env.owner_name,
                            str(env.libexec / "broker"), "pending")
    assert via_broker.returncode == 2 and via_broker.stdout == b""
    listed = env.owner("pending", "--json")
    assert listed.returncode == 0
    assert rid in listed.stdout.decode() and '"match"' not in listed.stdout.decode()
    assert match.encode() not in b"".join(r.get("reason", "").encode() for r in audit(env, "request"))
    assert all("match" not in r for r in audit(env))  # the audit log is the owner's, but never needs it


def test_no_notification_ever_carries_a_secret_value(env):
    rid = request(env, "api", "--reason", "read it")
    assert env.agent("approve", rid, env.code() + pushed(env, rid)["match"]).returncode == 0
    assert env.agent("get", "api").stdout == VALUES["api"]
    assert env.agent("get", "cfg").stdout == VALUES["cfg"]
    assert env.agent("revoke", "api").returncode == 0
    events(env, "revoke", wait_for=1)
    assert events(env, "grant", wait_for=1)
    raw = inbox(env).read_bytes()
    for value in VALUES.values():
        assert value not in raw


def test_owner_approves_by_id_at_their_terminal_with_a_code_alone(env):
    pexpect = pytest.importorskip("pexpect")
    rid = request(env, "db", "--reason", "terminal")
    listing = pexpect.spawn("runuser", ["-u", env.owner_name, "--", str(env.door), "pending"], timeout=30,
                            encoding="utf-8", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb"})
    listing.expect_exact(rid)
    listing.expect_exact("db (restricted, 15m)")
    listing.expect_exact("reason: terminal")
    listing.expect(pexpect.EOF)
    child = pexpect.spawn("runuser", ["-u", env.owner_name, "--", str(env.door), "approve", rid], timeout=30,
                          encoding="utf-8", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb"})
    child.expect_exact(f"code for {rid} (db (restricted, 15m)): ")
    child.sendline(env.code())
    child.expect_exact("db: granted for 15m")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert env.agent("get", "db").stdout == VALUES["db"]
    assert env.owner("revoke", "db").returncode == 0
    gone = env.owner("deny", request(env, "db"))
    assert gone.returncode == 0


# -- a channel that hangs ------------------------------------------------------------------------

def test_a_hanging_channel_holds_the_agents_request_at_most_the_bound(fresh):
    set_command_channel(fresh, "/bin/sleep 600")
    result = fresh.agent("request", "db", timeout=HANG_DETECTOR)
    assert result.returncode == 0, result.stderr
    assert b"could not be notified" in result.stderr
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection in the kernel, never answers the TLS handshake
    try:
        port = listener.getsockname()[1]
        assert fresh.owner("notify", "set", input=f"https://127.0.0.1:{port}/x\n".encode()).returncode == 0
        result = fresh.agent("request", "db", timeout=HANG_DETECTOR)
        assert result.returncode == 0 and b"could not be notified" in result.stderr
        # a pushed event (a grant) never holds the agent at all
        code = fresh.code()
        rid = result.stdout.decode().strip()
        done = fresh.owner("approve", rid, input=f"{code}\n".encode(), timeout=HANG_DETECTOR)
        assert done.returncode == 0, done.stderr
    finally:
        listener.close()
    failed = [r for r in audit(fresh, "notify") if r.get("result") == "failed"]
    assert any("timed out" in r["error"] for r in failed)


# -- https with a test CA ------------------------------------------------------------------------

def make_ca(where: Path) -> "tuple[Path, Path, Path]":
    openssl = "/usr/bin/openssl"
    if not os.path.exists(openssl):
        pytest.skip("needs the openssl CLI for a test CA")
    ext = where / "leaf.ext"
    ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "authorityKeyIdentifier=keyid,issuer\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n")
    steps = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=clawgate test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
         "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext"],
    ]
    for argv in steps:
        subprocess.run(argv, cwd=where, check=True, capture_output=True)
    (where / "ca.pem").chmod(0o644)
    return where / "ca.pem", where / "leaf.pem", where / "leaf.key"


class Receiver:
    """A loopback https server that keeps every POST body."""

    def __init__(self, cert: Path, key: Path) -> None:
        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append((self.path, self.headers.get("X-Clawgate-Event"),
                               self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_https_channel_checks_the_certificate_and_carries_the_match(fresh):
    ca, cert, key = make_ca(fresh.root)
    receiver = Receiver(cert, key)
    try:
        url = f"https://localhost:{receiver.port}/topic-secret"
        untrusted = fresh.owner("notify", "set", input=f"{url}\n".encode())
        assert untrusted.returncode == 0
        test = fresh.owner("notify", "test")
        assert test.returncode == 1 and receiver.bodies == []  # the system store does not know our CA
        assert any("CERTIFICATE_VERIFY_FAILED" in r.get("error", "") for r in audit(fresh, "notify"))
        assert fresh.owner("notify", "set", "--ca", str(ca), input=f"{url}\n".encode()).returncode == 0
        assert fresh.owner("notify", "test").returncode == 0
        shown = fresh.owner("notify", "show")
        assert b"topic-secret" in shown.stdout and b"with its own CA" in shown.stdout
        rid = request(fresh, "db", "--reason", "over https")
        path, kind, body = receiver.bodies[-1]
        assert (path, kind) == ("/topic-secret", "request")
        text = body.decode()
        assert rid in text and "db (restricted, 15m)" in text and "over https" in text
        match = text.split("Match ")[1][:2]
        assert fresh.agent("approve", rid, fresh.code() + match).returncode == 0
        assert fresh.agent("get", "db").stdout == VALUES["db"]
        assert all(VALUES["db"] not in b for _, _, b in receiver.bodies)
        # the channel is in no argv: nothing the agent could read in /proc names it
        assert fresh.run_as(fresh.agent_name, "/bin/cat", str(fresh.state / "notify.json")).returncode != 0
    finally:
        receiver.close()


# -- the root seed -------------------------------------------------------------------------------

def test_once_a_root_seed_exists_only_its_codes_open_root(fresh):
    root_seed = totp.Params(totp.new_secret())
    enrolled = fresh.owner("enroll", "--root", "--import",
                           input=f"{totp.to_base32(root_seed.secret)}\n{code_of(fresh, root_seed)}\n".encode())
    assert enrolled.returncode == 0, enrolled.stderr
    assert b"root seed enrolled" in enrolled.stdout
    main_code = fresh.code()
    for args in (("elevate", main_code, "--", "/usr/bin/true"), ("approve", "@root", main_code)):
        result = fresh.agent(*args)
        assert (result.returncode, result.stderr) == (1, DENIED), args
    rid = request(fresh, "@root", "--", "/usr/bin/id", "-u")
    assert fresh.agent("approve", rid, main_code).returncode == 1
    secret_rid = request(fresh, "db")
    assert fresh.agent("approve", secret_rid, code_of(fresh, root_seed)).returncode == 1  # root codes open root only
    assert fresh.agent("approve", rid, code_of(fresh, root_seed)).returncode == 0
    ran = fresh.agent("elevate", rid)
    assert (ran.returncode, ran.stdout) == (0, b"0\n"), ran.stderr
    opened = fresh.agent("elevate", code_of(fresh, root_seed), "--", "/usr/bin/id", "-u")
    assert (opened.returncode, opened.stdout) == (0, b"0\n"), opened.stderr  # no channel: as before
    assert fresh.agent("approve", secret_rid, fresh.code()).returncode == 0  # the main seed still opens secrets
    again = fresh.owner("enroll", "--root", "--import", input=b"x\n")
    assert again.returncode == 2


def test_doctor_names_a_channel_or_a_request_the_agent_could_read(env):
    rid = request(env, "db")
    for path in (env.state / "notify.json", env.state / "requests" / rid[1:]):
        env.state.chmod(0o711)
        if path.parent != env.state:
            path.parent.chmod(0o711)
        path.chmod(0o644)
        try:
            result = env.doctor()
        finally:
            path.chmod(0o600)
            path.parent.chmod(0o700)
            env.state.chmod(0o700)
        out = result.stdout.decode()
        assert result.returncode == 1
        assert any(line.startswith("FAIL  agent reach:") and str(path.parent if path.parent != env.state else path)
                   in line for line in out.splitlines()), out
    assert env.doctor().returncode == 0


def test_the_tail_of_a_long_root_command_is_shown_whole_everywhere_the_owner_looks(env):
    """A word past 256 characters was cut with '...': `; touch /root/x` at its end went unseen."""
    pexpect = pytest.importorskip("pexpect")
    hidden = "; touch /root/clawgate-hidden-tail"
    rid = request(env, "@root", "--reason", "ok\rfine", "--", "/bin/sh", "-c", "echo " + "A" * 300 + hidden)
    assert hidden in pushed(env, rid)["text"]
    listing = env.owner("pending")
    assert listing.returncode == 0 and hidden.encode() in listing.stdout, listing.stdout
    child = pexpect.spawn("runuser", ["-u", env.owner_name, "--", str(env.door), "approve", rid], timeout=30,
                          encoding="utf-8", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb"})
    child.expect_exact(f"code for {rid} (")
    child.expect_exact(hidden)
    child.sendcontrol("c")
    child.expect(pexpect.EOF)
    # the reason is logged raw (bounded at request time) and escaped once, when shown
    shown = env.owner("audit", "show").stdout.decode()
    assert "ok\\x0dfine" in shown and "ok\\\\x0dfine" not in shown, shown[-2000:]
    assert env.owner("deny", rid).returncode == 0


# -- a process limit the agent sets on its sudo (invariant 11: nothing makes the push fail quietly) --

def test_a_process_limit_can_neither_silence_the_lockout_push_nor_pass_unnoticed(env):
    """`prlimit --nproc=2:2 sudo -u OWNER approve` after 5 wrong codes: the push of the lockout
    forked in vain and nothing said so. A hard limit is refused before the gate (no code read, no
    count); a lowered soft limit is lifted to the hard one, and the lockout reaches the channel."""
    assert env.owner("unlock").returncode == 0
    sudo = ["/usr/bin/sudo", "-n", "-u", env.owner_name, str(env.libexec / "approve"), "db"]
    for limit in ("--nproc=2:2", "--nproc=1:1"):
        size = (env.state / "audit.log").stat().st_size
        refused = env.run_as(env.agent_name, "prlimit", limit, *sudo, input=b"000000\n", timeout=HANG_DETECTOR)
        assert refused.returncode == 6 and b"process-count limit" in refused.stderr, refused.stderr
        assert (env.state / "audit.log").stat().st_size == size and failures(env) == 0
    lockouts = len(events(env, "lockout"))
    for _ in range(6):  # the sixth wrong code locks the agent out
        wrong = env.run_as(env.agent_name, "prlimit", "--nproc=2:", *sudo,
                           input=f"{wrong_code([env.code()])}\n".encode(), timeout=HANG_DETECTOR)
        env.last_step -= 1
        assert wrong.returncode == 1, wrong.stderr
    assert audit(env, "lockout")
    assert len(events(env, "lockout", wait_for=lockouts + 1)) == lockouts + 1
    assert env.owner("unlock").returncode == 0
    grants = len(events(env, "grant"))
    rid = request(env, "db")
    approved = env.run_as(env.agent_name, "prlimit", "--nproc=2:", *sudo[:-1], rid,
                          input=f"{env.code()} {pushed(env, rid)['match']}\n".encode(), timeout=HANG_DETECTOR)
    assert approved.returncode == 0, approved.stderr
    assert len(events(env, "grant", wait_for=grants + 1)) == grants + 1  # the grant push arrives too
    assert env.owner("revoke", "db").returncode == 0
    # elevate: root lifts the limit it inherited (its owner-side child then pushes the root command),
    # or, without CAP_SYS_RESOURCE (a container), refuses before anything, the request still unspent
    rid = request(env, "@root", "--", "/usr/bin/true")
    assert env.agent("approve", rid, f"{env.code()}{pushed(env, rid)['match']}").returncode == 0
    runs = len(events(env, "elevate"))
    ran = env.run_as(env.agent_name, "prlimit", "--nproc=3:3", "/usr/bin/sudo", "-n", str(env.libexec / "elevate"), rid,
                     timeout=HANG_DETECTOR)
    if ran.returncode == 6:
        assert b"process-count limit" in ran.stderr, ran.stderr
        assert len(events(env, "elevate")) == runs
        ran = env.agent("elevate", rid)
    assert ran.returncode == 0, ran.stderr
    assert len(events(env, "elevate", wait_for=runs + 1)) == runs + 1
    assert not [r for r in audit(env, "notify") if r.get("result") == "failed"]
    # run (as the agent, its own limits): a fork it cannot make, ours or sudo's (which of them fails
    # depends on how many processes the owner runs just then), is one line, never a traceback
    limited = env.run_as(env.agent_name, "prlimit", "--nproc=2:2", str(env.door), "run", "--env", "K=cfg", "--",
                         "/bin/true", timeout=HANG_DETECTOR)
    assert limited.returncode != 0 and b"Traceback" not in limited.stderr, limited.stderr
    assert limited.stderr.count(b"\n") <= 1, limited.stderr


def test_notify_set_ca_neither_hangs_on_a_planted_fifo_nor_follows_a_planted_link(env):
    """The owner names a CA file in a place the agent can write: a FIFO there hung `notify set`
    forever, a symlink was followed. Each is refused at once (exit 2), the channel unchanged."""
    ca = make_ca(env.root)[0]
    plant = (f"cd {env.agent_home} && mkfifo ca.fifo && ln -s {ca} ca.link && mkdir -p d && ln -s {env.agent_home} d/up"
             f" && head -c 300000 /dev/zero | tr '\\0' A > big.pem && chmod 644 big.pem")
    assert env.run_as(env.agent_name, "/bin/sh", "-c", plant).returncode == 0
    before = (env.state / "notify.json").read_bytes()
    for name, words in (("ca.fifo", b"not a regular file"), ("ca.link", b"symbolic link"),
                        ("d/up/ca.pem", b"symbolic link another user could change"), ("big.pem", b"larger than")):
        started = time.monotonic()
        result = env.owner("notify", "set", "--ca", str(env.agent_home / name), input=b"https://example.org/x\n",
                           timeout=20)
        assert result.returncode == 2 and words in result.stderr, (name, result.stderr)
        assert time.monotonic() - started < 10
    assert (env.state / "notify.json").read_bytes() == before
    assert b"Traceback" not in result.stderr


def test_blank_rendering_characters_reach_neither_pending_nor_the_channel_raw(env):
    """Printable yet drawn blank (U+3164, U+2800) or over the character before (U+0338): a reason
    or an argv word padded with them shows the owner something else than what runs."""
    pad = "\u3164\u2800" * 40
    rid = request(env, "@root", "--reason", f"routine{pad}update", "--", "/usr/bin/id", f"-u{pad}", "x=\u0338y")
    event = pushed(env, rid)
    shown = env.owner("pending")
    assert shown.returncode == 0, shown.stderr
    for text in (event["text"], event["what"], shown.stdout.decode()):
        assert not set(text) & {"\u3164", "\u2800", "\u0338"}, text
        assert "\\u3164\\u2800" in text and "\\u0338" in text
    assert env.owner("deny", rid).returncode == 0
