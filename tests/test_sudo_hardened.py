"""Hardened sudo hosts: requiretty, use_pty and sudo's I/O log (log_input, log_output).

A host file in /etc/sudoers.d sets them the way hardening guides do; the agent's get and resolve
must still work without a terminal and stay byte-exact from one, sudo's I/O log must never hold a
value, a name asked for or a relayed code, and elevate's root command must stay logged because the
host asked for it. doctor reads the effective policy and names the line that breaks this.

The host file binds its Defaults to this test's own users (Defaults:AGENT,OWNER and
Defaults>OWNER), not to everyone: other suites share this machine's sudo, and a global
requiretty would stop theirs. A user-bound Defaults is applied after a global one (sudoers(5)),
so it is the harder case for clawgate's command-bound exemptions, not the easier one.
Every host file is checked with visudo -cf under a name sudo skips before it goes live, and is
removed when the test ends, failed or not.
"""

import contextlib
import gzip
import json
import os
import pty
import random
import string
import subprocess
from pathlib import Path

import pytest

from rootenv import SUDOERS_DIR, TEST_PATH, RootEnv, relay_while_sudo_is_made_to_kill_it, run
from clawgate import sudolist

VALUE = b"hardened \t value\r\nwith \xff\xfe bytes and a trailing newline\n"
RESOLVE_VALUE = "resolved-hardened-value-7f3a"
RESTRICTED_VALUE = b"restricted-hardened-value-41c9"
ROOT_SET_VALUE = b"stored-by-root-through-sudo-93d2"


@contextlib.contextmanager
def host_file(text: str):
    """text live in /etc/sudoers.d under a random name sorting after clawgate's, gone afterwards."""
    name = "zz-hardened-" + "".join(random.choices(string.ascii_lowercase, k=8))
    live, staged = SUDOERS_DIR / name, SUDOERS_DIR / f".{name}.tmp"  # sudo skips a name with a dot
    try:
        staged.write_text(text)
        staged.chmod(0o440)
        checked = run(["visudo", "-cf", str(staged)])
        assert checked.returncode == 0, checked.stderr.decode() + checked.stdout.decode()
        os.rename(staged, live)
        yield live
    finally:
        for path in (staged, live):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def replaced(path: Path, text: str):
    """The installed sudoers file with other text for a while (checked first), then the original."""
    original = path.read_bytes()
    staged = path.with_name(f".{path.name}.test")
    try:
        staged.write_text(text)
        staged.chmod(0o440)
        assert run(["visudo", "-cf", str(staged)]).returncode == 0
        os.rename(staged, path)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        staged.write_bytes(original)
        staged.chmod(0o440)
        os.rename(staged, path)


@pytest.fixture(scope="module")
def env():
    with RootEnv() as root_env:
        root_env.enroll_seed()
        root_env.set_secret("hardened/value", VALUE, tier="open")
        root_env.set_secret("hardened/resolve-id", RESOLVE_VALUE.encode(), tier="open")
        root_env.set_secret("hardened/restricted", RESTRICTED_VALUE, tier="restricted")
        iolog = root_env.root / "sudo-io"
        root_env.iolog = iolog
        root_env.relayed = []
        policy = (f"Defaults:{root_env.agent_name}, {root_env.owner_name} requiretty, use_pty, log_input, log_output, "
                  f"iolog_dir={iolog}\n"
                  f"Defaults>{root_env.owner_name} log_input, log_output, iolog_dir={iolog}\n")  # root's get
        with host_file(policy):
            yield root_env


def detached(argv, input: bytes = b"") -> subprocess.CompletedProcess:
    """argv in a new session: no controlling terminal, as the gateway's service runs."""
    return subprocess.run(argv, input=input, capture_output=True, env={"PATH": TEST_PATH, "LANG": "C.UTF-8"},
                          cwd="/", timeout=60, start_new_session=True)


def agent_detached(env, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
    return detached(["runuser", "-u", env.agent_name, "--", str(env.door), *args], input=input)


def on_a_terminal(argv) -> bytes:
    """Everything argv writes when its stdin, stdout and controlling terminal are a fresh pty."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, {"PATH": TEST_PATH, "LANG": "C.UTF-8", "TERM": "dumb"})
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child side closed
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out


def io_log_bytes(env) -> bytes:
    """Every file under the I/O log directory, gzip members decompressed, concatenated."""
    found = b""
    for top, _dirs, files in os.walk(env.iolog):
        for name in files:
            data = Path(top, name).read_bytes()
            found += data
            if data[:2] == b"\x1f\x8b":
                found += gzip.decompress(data)
    return found


def relay(env, name: str) -> None:
    """The agent relays a fresh code to approve (never logged); env.relayed keeps every code relayed."""
    code = env.code()
    env.relayed.append(code)
    opened = agent_detached(env, "approve", name, code)
    assert opened.returncode == 0, opened.stderr.decode()


def open_root_session(env) -> None:
    if agent_detached(env, "elevate", "session", "--", "/usr/bin/true").returncode != 0:
        relay(env, "@root")


def sessions_logged(env) -> int:
    return sum("log" in files for _top, _dirs, files in os.walk(env.iolog))


# -- the agent has no terminal --------------------------------------------------------------------

@pytest.mark.root
def test_agent_get_works_without_a_tty_and_is_byte_exact(env):
    result = agent_detached(env, "get", "hardened/value")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == VALUE


@pytest.mark.root
def test_resolve_works_without_a_tty(env):
    request = {"protocolVersion": 1, "provider": "clawgate", "ids": ["hardened/resolve-id"]}
    result = agent_detached(env, "resolve", input=json.dumps(request).encode())
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["values"] == {"hardened/resolve-id": RESOLVE_VALUE}


@pytest.mark.root
def test_elevate_works_without_a_tty(env):
    open_root_session(env)
    result = agent_detached(env, "elevate", "session", "--", "/usr/bin/id", "-u")
    assert (result.returncode, result.stdout) == (0, b"0\n"), result.stderr.decode()


@pytest.mark.root
def test_under_use_pty_sigalrm_to_sudo_cannot_kill_the_gates_work_half_way(env):
    """use_pty: sudo kills its command's whole process group; the gate's own session is not in it."""
    relay_while_sudo_is_made_to_kill_it(env, "hardened/restricted", env.code(), on_a_terminal=True)
    result = agent_detached(env, "get", "hardened/restricted")
    assert result.returncode == 0 and result.stdout == RESTRICTED_VALUE, result.stderr.decode()
    env.owner("revoke", "hardened/restricted")


@pytest.mark.root
def test_under_use_pty_sigalrm_to_sudo_cannot_kill_elevates_owner_side_half_way(env):
    """elevate CODE: the root parent is what sudo kills; the owner's side that checks the code and
    opens the session has a session of its own (privdrop), and finishes, records and all."""
    env.owner("revoke", "@root")
    relay_while_sudo_is_made_to_kill_it(env, "@root", env.code(), on_a_terminal=True)
    result = agent_detached(env, "elevate", "session", "--", "/usr/bin/id", "-u")
    assert (result.returncode, result.stdout) == (0, b"0\n"), result.stderr.decode()


# -- use_pty: from a terminal --------------------------------------------------------------------

@pytest.mark.root
def test_get_from_a_terminal_into_a_pipe_is_byte_exact(env):
    pipeline = f"{env.door} get hardened/value | od -An -v -tx1"
    out = on_a_terminal(["/usr/sbin/runuser", "-u", env.agent_name, "--", "/bin/sh", "-c", pipeline])
    assert bytes.fromhex(out.decode().replace("\r", " ").replace("\n", " ")) == VALUE


@pytest.mark.root
def test_get_onto_a_terminal_shows_what_cat_would(env):
    """sudo puts the command on a pty of its own (use_pty): the terminal must see the same bytes."""
    reference = env.root / "reference"
    reference.write_bytes(VALUE)
    shown = on_a_terminal(["/usr/sbin/runuser", "-u", env.agent_name, "--", str(env.door), "get", "hardened/value"])
    assert b"with \xff\xfe bytes" in shown and shown == on_a_terminal(["/bin/cat", str(reference)])


# -- sudo's I/O log ------------------------------------------------------------------------------

@pytest.mark.root
def test_no_value_id_or_relayed_code_reaches_the_io_log(env):
    relay(env, "hardened/restricted")
    assert agent_detached(env, "get", "hardened/restricted").stdout == RESTRICTED_VALUE
    assert agent_detached(env, "get", "hardened/value").stdout == VALUE
    request = {"protocolVersion": 1, "provider": "clawgate", "ids": ["hardened/resolve-id"]}
    assert RESOLVE_VALUE.encode() in agent_detached(env, "resolve", input=json.dumps(request).encode()).stdout
    on_a_terminal(["/usr/sbin/runuser", "-u", env.agent_name, "--", str(env.door), "get", "hardened/value"])
    assert run([str(env.door), "get", "hardened/value"]).stdout == VALUE  # root's get: sudo -u OWNER broker
    stored = run([str(env.door), "secrets", "set", "hardened/set-by-root", "--raw"], input=ROOT_SET_VALUE)
    assert stored.returncode == 0, stored.stderr.decode()  # root's secrets set: sudo -u OWNER secrets
    # The host's logging is on: the elevate session below must be there, or this test proves nothing.
    open_root_session(env)
    assert agent_detached(env, "elevate", "session", "--", "/bin/echo", "logged-root-command").returncode == 0
    logged = io_log_bytes(env)
    assert b"logged-root-command" in logged
    for kept in (VALUE, b"with \xff\xfe bytes and a trailing", RESTRICTED_VALUE, ROOT_SET_VALUE, RESOLVE_VALUE.encode(),
                 b"hardened/", b"resolve-id", *(code.encode() for code in env.relayed)):  # names: the broker's argv
        assert kept not in logged, kept


@pytest.mark.root
def test_no_relayed_code_reaches_sudos_command_log(env):
    """sudo logs every command line (syslog, `Defaults logfile`): a code given to `approve X CODE`
    goes to approve's standard input through the front door, never into its argv."""
    logfile = env.root / "sudo-commands.log"
    with host_file(f"Defaults:{env.agent_name} logfile={logfile}, loglinelen=0\n"):
        codes = [env.code(), env.code()]
        for name, code in zip(("hardened/restricted", "@root"), codes):
            relayed = agent_detached(env, "approve", name, code, "--ttl", "1m")
            assert relayed.returncode == 0, relayed.stderr.decode()
        rid = agent_detached(env, "request", "hardened/restricted").stdout.decode().strip()
        codes.append(env.code())
        by_id = agent_detached(env, "approve", rid, codes[-1])
        assert by_id.returncode == 0, by_id.stderr.decode()
        assert agent_detached(env, "get", "hardened/restricted").stdout == RESTRICTED_VALUE
    logged = logfile.read_text()
    assert f"approve {rid}" in logged and "approve @root" in logged  # the log is on: it saw them
    for code in codes:
        assert code not in logged, logged


@pytest.mark.root
def test_a_later_host_line_naming_the_broker_cannot_log_the_agents_values(env):
    """A host's Defaults!broker line after clawgate's wins over clawgate's Defaults, not over the tags."""
    before = sessions_logged(env)
    with host_file(f"Defaults!{env.libexec}/broker, {env.libexec}/approve log_input, log_output\n"):
        got = agent_detached(env, "get", "hardened/value")
    assert got.stdout == VALUE, got.stderr.decode()
    assert sessions_logged(env) == before and VALUE not in io_log_bytes(env)


@pytest.mark.root
def test_elevate_is_still_logged_when_the_host_asks(env):
    open_root_session(env)
    before = sessions_logged(env)
    result = agent_detached(env, "elevate", "session", "--", "/bin/echo", "root-output-kept")
    assert result.returncode == 0, result.stderr.decode()
    assert sessions_logged(env) == before + 1
    logged = io_log_bytes(env)
    assert b"root-output-kept" in logged  # the root command's stdout, as the host asked
    assert f"{env.libexec}/elevate session -- /bin/echo root-output-kept".encode() in logged


# -- doctor reads the effective policy -----------------------------------------------------------

def sudo_logging_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stdout.decode().splitlines() if " sudo logging:" in line]
    assert len(lines) == 1, result.stdout.decode()
    return lines[0]


@pytest.mark.root
def test_doctor_passes_on_the_hardened_host(env):
    result = env.doctor()
    assert result.returncode == 0, result.stdout.decode()
    assert sudo_logging_line(result).startswith("ok    sudo logging:")


@pytest.mark.root
def test_doctor_names_a_host_line_that_logs_the_broker(env):
    line = f"Defaults!{env.libexec}/broker log_output"
    with host_file(line + "\n"):
        result = env.doctor()
    assert result.returncode == 1
    assert sudo_logging_line(result).startswith("FAIL  sudo logging:")
    assert line in sudo_logging_line(result)


@pytest.mark.root
def test_doctor_fails_once_clawgate_exemption_is_gone(env):
    """The installed file without its Defaults lines and tags: the host's log_output wins."""
    text = env.sudoers.read_text()
    bare = "\n".join(line.replace("NOLOG_INPUT: NOLOG_OUTPUT: ", "") for line in text.splitlines()
                     if not line.startswith("Defaults")) + "\n"
    with replaced(env.sudoers, bare):
        result = env.doctor()
        leaked = agent_detached(env, "get", "hardened/value")
    assert result.returncode == 1
    failure = sudo_logging_line(result)
    assert failure.startswith("FAIL  sudo logging:") and "/etc/sudoers.d/zz-hardened-" in failure, failure
    assert "requiretty would stop the agent's" in failure
    assert b"must have a tty" in leaked.stderr  # what the exemption is there for


@pytest.mark.root
def test_doctor_names_requiretty_in_the_agents_way(env):
    line = f"Defaults!{env.libexec}/elevate requiretty"
    with host_file(line + "\n"):
        result = env.doctor()
    failure = sudo_logging_line(result)
    assert result.returncode == 1 and "requiretty would stop the agent's elevate" in failure and line in failure


# -- the policy arithmetic, without root ---------------------------------------------------------

LISTING = """Matching Defaults entries for oc on vm:
    env_reset, use_pty, log_output, log_ttyin,
    iolog_dir=/var/log/sudo-io

Runas and Command-specific defaults for oc:
    Defaults>alice log_stdin    Defaults!/p/libexec/clawgate/broker !log_output,
    !log_input, !requiretty
    Defaults!/p/libexec/clawgate/broker, /p/libexec/clawgate/approve,
    /p/libexec/clawgate/revoke log_stdout

User oc may run the following commands on vm:
    (alice) NOPASSWD: NOLOG_INPUT: NOLOG_OUTPUT: /p/libexec/clawgate/broker,
        /p/libexec/clawgate/approve
    (root) NOPASSWD: /p/libexec/clawgate/elevate
"""


def test_a_nolog_tag_beats_every_defaults_line():
    settings = sudolist.sudo_settings(LISTING, "alice", "/p/libexec/clawgate/approve")
    assert not [flag for flag, (on, _) in settings.items() if on]


def test_a_later_command_defaults_line_beats_an_earlier_one_and_is_named():
    untagged = LISTING.replace("NOLOG_INPUT: NOLOG_OUTPUT: ", "")
    settings = sudolist.sudo_settings(untagged, "alice", "/p/libexec/clawgate/broker")
    assert settings["log_stdout"][0] and "/p/libexec/clawgate/revoke log_stdout" in settings["log_stdout"][1]
    assert not settings["log_ttyout"][0] and not settings["log_stdin"][0] and not settings["requiretty"][0]


def test_run_as_and_user_defaults_apply_where_no_command_line_answers():
    settings = sudolist.sudo_settings(LISTING.replace("NOLOG_INPUT: NOLOG_OUTPUT: ", ""), "alice",
                                    "/p/libexec/clawgate/revoke")
    assert settings["log_stdin"] == (True, "Defaults>alice log_stdin")
    assert settings["log_ttyout"][0] and settings["log_ttyin"][0]
    assert sudolist.sudo_settings(LISTING, "root", "/p/libexec/clawgate/elevate")["log_ttyout"][0]


def test_a_later_tag_in_a_rule_replaces_an_earlier_one():
    listing = LISTING.replace("/p/libexec/clawgate/broker,\n        /p/libexec/clawgate/approve",
                              "/p/libexec/clawgate/broker,\n        LOG_OUTPUT: /p/libexec/clawgate/approve")
    assert not sudolist.sudo_settings(listing, "alice", "/p/libexec/clawgate/broker")["log_stdout"][0]
    settings = sudolist.sudo_settings(listing, "alice", "/p/libexec/clawgate/approve")
    assert settings["log_stdout"][0] and not settings["log_stdin"][0]


def test_parse_sudo_list_drops_the_log_tags():
    assert ("alice", "/p/libexec/clawgate/approve") in sudolist.parse_sudo_list(LISTING)
