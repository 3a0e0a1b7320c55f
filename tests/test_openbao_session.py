"""The owner's OpenBao session (store = openbao; hosted by the proxy service): through the real
install.sh, the proxy as its unit runs it, real users and sudo, and a real OpenBao dev server.

What it must hold: a `get` asks through it (and goes to OpenBao itself when it is gone); it is a
connection, not a cache; it answers a value or a tier by a valid name and nothing else (never
the seed); the agent cannot talk to it, even with the socket opened to it; a broker believes
only the owner's session; OpenBao's refusal through it is the same exit 6 line; it ends with the
proxy. Its speed is `make bench`'s (the openbao rows), never asserted here.
"""

import os
import shutil
import socket
import textwrap
import threading
from pathlib import Path

import pytest

import proxykit
from baoserver import DevServer, readable_ca
from installtree import REPO
from rootenv import RUNUSER as RUNUSER_PATH, RootEnv

pytestmark = pytest.mark.root
NAME = "openclaw/session-key"
VALUE = b"session-value-\x01\xfe-77"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    server = DevServer(tmp_path_factory.mktemp("bao"))
    env = None
    ca = readable_ca(server)
    try:
        prefix = f"clawgate/session-{os.getpid()}"
        owner = server.owner(prefix)
        env = RootEnv(install_args=["--store", "openbao", "--openbao-address", server.address, "--openbao-ca",
                                    str(ca), "--openbao-role-id", owner.role_id, "--openbao-prefix", prefix],
                      install_input=f"{owner.secret_id}\n".encode(), proxy=True)
        env.enroll_seed()
        env.set_secret(NAME, VALUE, tier="open")
        env.start_proxy()
        proxykit_wait_for(env.state / "openbao.sock")
        yield server, env, ca, prefix
    finally:
        if env is not None:
            env.close()
        shutil.rmtree(ca.parent, ignore_errors=True)
        server.stop()


def proxykit_wait_for(path: Path, timeout: float = 15, gone: bool = False) -> None:
    """Until the session's socket is there (or, gone=True, no longer there)."""
    import time

    end = time.monotonic() + timeout
    while path.exists() == gone:
        assert time.monotonic() < end, f"the session socket at {path} is {'still' if gone else 'not'} there"
        time.sleep(0.05)


def stop_proxy(env: RootEnv) -> None:
    """The proxy stopped, and the session with it (it goes when the front's pipe closes)."""
    env.stop_proxy()
    proxykit_wait_for(env.state / "openbao.sock", gone=True)


def as_user(env: RootEnv, user: str, script: str, *args: str):
    """A Python program as `user` (no sudo): what that user's own process can do."""
    return env.run_as(user, "/usr/bin/python3", "-I", "-c", textwrap.dedent(script), *args)


ASK = """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sys.argv[1])
    except OSError as err:
        print("connect:", type(err).__name__); raise SystemExit(0)
    got = b""
    try:
        s.sendall(sys.argv[2].encode("latin-1").replace(b"|", b"\\n").replace(b"~", b"\\0"))
        s.shutdown(socket.SHUT_WR)
        while True:
            part = s.recv(65536)
            if not part:
                break
            got += part
    except OSError as err:
        print("io:", type(err).__name__); raise SystemExit(0)
    sys.stdout.buffer.write(b"answer:" + got)
"""


def ask_raw(env: RootEnv, user: str, questions: str):
    """Questions (`|` for a newline, `~` for a NUL) sent as they are to the session socket, as `user`."""
    return as_user(env, user, ASK, str(env.state / "openbao.sock"), questions)


# -- it is used, and it is a connection, not a cache ---------------------------------------------
def test_a_get_asks_through_the_session_and_goes_to_openbao_itself_when_it_is_gone(host):
    """The session loaded the CA when it started: with the CA file moved away, a broker that talks
    to OpenBao itself cannot verify it, so a `get` that still works went through the session."""
    server, env, ca, _prefix = host
    aside = ca.with_name("ca.aside")
    ca.rename(aside)
    try:
        got = env.agent("get", NAME)
        assert (got.returncode, got.stdout) == (0, VALUE), got.stderr + proxykit.journal(env.proxy_process)
        stop_proxy(env)  # the session goes with the proxy, and takes its socket
        gone = env.agent("get", NAME)
        assert gone.returncode == 6 and b"CA file" in gone.stderr and gone.stdout == b"", gone.stderr
    finally:
        aside.rename(ca)
        if env.proxy_process is None:
            env.start_proxy()
            proxykit_wait_for(env.state / "openbao.sock")
    direct = env.agent("get", NAME)
    assert (direct.returncode, direct.stdout) == (0, VALUE), direct.stderr


def test_a_value_changed_in_openbao_is_served_at_once_through_the_session(host):
    """Another host (here: the root token, straight to OpenBao) changes the value and then the tier:
    the next `get` through the session sees each at once."""
    import base64

    server, env, _ca, prefix = host
    env.set_secret("fleet/rotated", b"before", tier="open")
    assert env.agent("get", "fleet/rotated").stdout == b"before"
    server.api("POST", f"secret/data/{prefix}/secrets/fleet%25rotated",
               {"data": {"value": base64.b64encode(b"after").decode()}})
    assert env.agent("get", "fleet/rotated").stdout == b"after"
    server.api("DELETE", f"secret/metadata/{prefix}/tiers/fleet%25rotated")  # no tier record: restricted
    assert env.agent("get", "fleet/rotated").returncode == 3


# -- what it answers --------------------------------------------------------------------------------
def test_it_answers_a_value_and_a_tier_by_valid_name_on_one_connection(host):
    _server, env, _ca, _prefix = host
    got = ask_raw(env, env.owner_name, f"tier {NAME}|value {NAME}|")
    assert got.stdout == b"answer:found 5\nopen\nfound %d\n" % len(VALUE) + VALUE, got.stdout + got.stderr


@pytest.mark.parametrize("question", ["seed|", "value ../x|", "value /etc/passwd|", "token x|", "value a~b|",
                                      "tier a b|", "value " + "a" * 200 + "|"])
def test_it_answers_nothing_but_a_value_or_a_tier_by_valid_name(host, question):
    _server, env, _ca, _prefix = host
    got = ask_raw(env, env.owner_name, question)
    assert got.stdout == b"answer:", got.stdout + got.stderr  # closed, unanswered


def test_the_seed_is_not_a_secret_name_it_can_be_asked_for(host):
    """`totp/seed` is a valid secret name, and the seed's record is PREFIX/totp/seed: asked as a
    value it is looked up under secrets/, where nothing is."""
    _server, env, _ca, _prefix = host
    got = ask_raw(env, env.owner_name, "value totp/seed|tier totp/seed|")
    assert got.stdout == b"answer:none\nnone\n", got.stdout + got.stderr


# -- who may talk to it -------------------------------------------------------------------------------
def test_the_agent_cannot_reach_the_session(host):
    _server, env, _ca, _prefix = host
    got = ask_raw(env, env.agent_name, f"value {NAME}|")
    assert got.stdout == b"connect: PermissionError\n", got.stdout + got.stderr


def test_the_session_answers_the_owner_only_even_with_its_socket_opened_to_the_agent(host):
    """The state directory keeps the agent out; SO_PEERCRED is the second wall: with the directory
    and the socket opened to everyone, the agent's question is closed unanswered."""
    _server, env, _ca, _prefix = host
    sock = env.state / "openbao.sock"
    modes = env.state.stat().st_mode & 0o777, sock.stat().st_mode & 0o777
    env.state.chmod(0o711)
    sock.chmod(0o666)
    try:
        got = ask_raw(env, env.agent_name, f"value {NAME}|")
    finally:
        env.state.chmod(modes[0])
        sock.chmod(modes[1])
    assert VALUE not in got.stdout
    assert got.stdout in (b"answer:", b"io: ConnectionResetError\n", b"io: BrokenPipeError\n"), got.stdout + got.stderr


def test_a_broker_believes_only_a_session_the_owner_runs(host):
    """A socket at the session's path served by someone else (root here: only root could put one
    in the owner's 0700 directory) is not asked: the broker goes to OpenBao itself."""
    _server, env, _ca, _prefix = host
    sock = env.state / "openbao.sock"
    real = sock.with_name("openbao.sock.real")
    sock.rename(real)
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(str(sock))
    sock.chmod(0o666)  # the owner's broker can connect: only what it then believes is left to decide
    fake.listen(8)
    asked = []

    def serve() -> None:
        while True:
            try:
                conn, _ = fake.accept()
            except OSError:
                return
            with conn:
                try:
                    asked.append(conn.recv(200))
                    conn.sendall(b"found 7\nforged!")
                except OSError:  # the broker hung up on us: what it should do
                    pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        got = env.agent("get", NAME)
    finally:
        fake.close()
        sock.unlink()
        real.rename(sock)
    assert (got.returncode, got.stdout) == (0, VALUE), got.stdout + got.stderr
    assert not any(asked)  # not even asked: the peer's uid was looked at first


# -- failing closed through it ----------------------------------------------------------------------
def test_openbaos_refusal_through_the_session_is_its_exit_6_line(host):
    """A value OpenBao holds damaged: the session's store refuses it, and the broker prints that
    line (one line, exit 6), as it would have talking to OpenBao itself."""
    server, env, _ca, prefix = host
    env.set_secret("fleet/damaged", b"x", tier="open")
    server.api("POST", f"secret/data/{prefix}/secrets/fleet%25damaged", {"data": {"value": "%%% not base64"}})
    got = env.agent("get", "fleet/damaged")
    assert got.returncode == 6 and got.stdout == b"", got.stderr
    assert got.stderr.count(b"\n") == 1 and b"damaged (not base64)" in got.stderr, got.stderr
    assert b"session" not in got.stderr  # OpenBao's answer, not the session's trouble
    again = ask_raw(env, env.owner_name, "value fleet/damaged|")
    assert again.stdout.startswith(b"answer:fail 6 "), again.stdout  # and the connection lived on to say it


def test_the_session_is_the_proxys_child_and_leaves_no_socket_behind(host):
    _server, env, _ca, _prefix = host
    assert len(proxykit.tree(env.proxy_process.pid)) >= 2  # runuser, the front, and the session
    assert b"OpenBao session on" in proxykit.journal(env.proxy_process)


def test_brokers_that_stall_without_asking_do_not_hold_up_the_next_one(host):
    """The agent can stop its own sudo's broker after it connected. Ten such brokers (here: the
    owner's connections that never ask) must not stand between the next `get` and its answer:
    with the CA file moved away it can only be the session's answer, and it comes."""
    import subprocess

    from rootenv import RUNUSER

    _server, env, ca, _prefix = host
    stall = textwrap.dedent("""
        import socket, sys, time
        held = []
        for _ in range(10):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sys.argv[1])
            held.append(s)
        print("ready", flush=True)
        time.sleep(60)
    """)
    stalled = subprocess.Popen([RUNUSER, "-u", env.owner_name, "--", "/usr/bin/python3", "-I", "-c", stall,
                                str(env.state / "openbao.sock")], stdout=subprocess.PIPE)
    aside = ca.with_name("ca.aside")
    try:
        assert stalled.stdout.readline() == b"ready\n"
        ca.rename(aside)
        got = env.agent("get", NAME)
    finally:
        stalled.kill()
        stalled.wait()
        if aside.exists():
            aside.rename(ca)
    assert (got.returncode, got.stdout) == (0, VALUE), got.stderr


def test_doctor_says_whether_the_session_answers(host):
    _server, env, _ca, _prefix = host
    lines = env.doctor().stdout.decode().splitlines()
    assert any(line.startswith("ok    openbao session: ") for line in lines), lines
    assert not [line for line in lines if line.startswith(("FAIL", "warn"))], lines  # its socket is no stranger
    guide = env.prefix / "share" / "doc" / "clawgate" / "OPENBAO.md"  # what doctor's OpenBao fixes point to
    assert guide.read_bytes() == (REPO / "docs" / "OPENBAO.md").read_bytes()
    stop_proxy(env)
    try:
        lines = env.doctor().stdout.decode().splitlines()
    finally:
        env.start_proxy()
        proxykit_wait_for(env.state / "openbao.sock")
    said = next(line for line in lines if line.startswith("skip  openbao session: "))
    assert "each get talks to OpenBao itself" in said and "clawgate proxy" in said, said


def test_a_ca_file_another_user_could_change_is_not_trusted(host):
    """Whoever can change the CA file can make any server OpenBao (and read the AppRole login): a
    CA the agent owns, or one anybody may write, is refused on every call, and doctor says where it
    must live. (The session read it when it started: each broker reads it again.)"""
    import pwd

    _server, env, ca, _prefix = host
    stop_proxy(env)
    try:
        for change, undo in ((lambda: os.chown(ca, pwd.getpwnam(env.agent_name).pw_uid, -1), lambda: os.chown(ca, 0, -1)),
                             (lambda: ca.chmod(0o666), lambda: ca.chmod(0o644)),
                             (lambda: ca.parent.chmod(0o777), lambda: ca.parent.chmod(0o755))):
            change()
            try:
                got = env.agent("get", NAME)
                lines = env.doctor().stdout.decode().splitlines()
            finally:
                undo()
            assert got.returncode == 6 and b"will not trust the CA file" in got.stderr and got.stdout == b"", got.stderr
            assert got.stderr.count(b"\n") == 1
            fail = next(line for line in lines if line.startswith("FAIL  openbao reachable:"))
            assert "will not trust the CA file" in fail and "only root or" in fail, fail
        trusted = env.agent("get", NAME)
        assert (trusted.returncode, trusted.stdout) == (0, VALUE), trusted.stderr
    finally:
        env.start_proxy()
        proxykit_wait_for(env.state / "openbao.sock")


def session_pid(env: RootEnv) -> int:
    """The process listening on the session's socket (its inode, found among /proc's descriptors)."""
    where = str(env.state / "openbao.sock")
    inodes = {f"socket:[{line.split()[6]}]" for line in Path("/proc/net/unix").read_text().splitlines()[1:]
              if line.split()[-1] == where}
    for pid in proxykit.tree(env.proxy_process.pid):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            if os.readlink(fd) in inodes:
                return pid
    raise AssertionError("no process holds the session's socket")


def test_a_long_lived_caller_keeps_asking_the_session_after_it_hung_up_on_an_idle_connection(host):
    """The session hangs up on a connection that asks nothing for 2 s; a caller that lives on (the
    proxy's workers) opens another and is answered there, not by talking to OpenBao itself (which,
    with the CA file moved away, it could not)."""
    _server, env, ca, _prefix = host
    program = textwrap.dedent("""
        import sys, time
        sys.path.insert(0, sys.argv[1])
        from clawgate import config
        from clawgate.store import open_store
        store = open_store(config.load(sys.argv[2]))
        first = store.get(sys.argv[3])
        time.sleep(2.5)  # past the session's 2 s: it has hung up
        print(first == store.get(sys.argv[3]) and "ssl" not in sys.modules)
    """)
    aside = ca.with_name("ca.aside")
    ca.rename(aside)
    try:
        got = env.run_as(env.owner_name, "/usr/bin/python3", "-I", "-c", program, str(env.libexec / "lib"),
                         str(env.config_path), NAME)
    finally:
        aside.rename(ca)
    assert got.stdout == b"True\n", got.stdout + got.stderr


def test_a_session_that_stops_answering_is_not_waited_for_twice_the_broker_asks_openbao_itself(host):
    """A stuck session (stopped here) costs one wait, then the read goes to OpenBao directly, as it
    would with no session: the answer is the same."""
    import signal

    _server, env, _ca, _prefix = host
    stuck = session_pid(env)
    os.kill(stuck, signal.SIGSTOP)
    try:
        got = env.agent("get", NAME)
    finally:
        os.kill(stuck, signal.SIGCONT)
    assert (got.returncode, got.stdout) == (0, VALUE), got.stderr


def test_a_second_proxy_on_another_port_leaves_the_running_session_alone(host):
    """The port changed by a rerun while the old proxy still runs by hand, and the owner starts the
    new one: it serves without a session of its own, and stopping it leaves the first one's socket."""
    import re

    _server, env, _ca, _prefix = host
    sock = env.state / "openbao.sock"
    before = sock.stat().st_ino
    conf = env.config_path.read_text()
    port = proxykit.free_port()
    env.config_path.write_text(re.sub(r"(?m)^port = \d+$", f"port = {port}", conf, count=1))
    try:
        second = proxykit.start([RUNUSER_PATH, "-u", env.owner_name, "--", str(env.libexec / "proxy")], port)
        try:
            proxykit_wait_for_text(second, b"already answers on")
        finally:
            proxykit.stop(second)
    finally:
        env.config_path.write_text(conf)
    assert sock.stat().st_ino == before
    got = ask_raw(env, env.owner_name, f"tier {NAME}|")
    assert got.stdout == b"answer:found 5\nopen\n", got.stdout


def proxykit_wait_for_text(process, text: bytes, timeout: float = 15) -> None:
    import time

    end = time.monotonic() + timeout
    while text not in proxykit.journal(process):
        assert time.monotonic() < end, proxykit.journal(process)
        time.sleep(0.05)
