"""Invariant 7: no secret value in argv (what ps shows), the audit log, error messages or a
traceback; the TOTP seed likewise (enroll hands the otpauth URI to qrencode on stdin)."""

import os
import subprocess
import time

import pytest

from coretools import one_line_error, wrong_code_at
from installtree import load_program
from clawgate import cli, totp

CANARY = b"LEAK-CANARY-" + os.urandom(8).hex().encode()


def _all_argv():
    """Every process's argv as the kernel shows it to ps."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    found.append(handle.read())
            except OSError:
                pass
    return found


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to read argv")


def test_value_never_in_output_messages_or_the_audit_log(tree, tmp_path):
    value = CANARY + b"\x00\xff binary tail \n"
    outputs = []

    def run(*args, agent=False, stdin=b""):
        result = tree.run(*args, as_agent=agent, input=stdin)
        outputs.append((args, result))
        return result

    run("secrets", "set", "k", "--raw", stdin=value)
    run("broker", "get", "k", agent=True)                                     # denied: approval required
    run("approve", "k", wrong_code_at(tree.seed, time.time()), agent=True)    # denied code
    run("approve", "k", tree.code(), "--ttl", "99h", agent=True)              # granted, cut
    served = tree.as_agent("broker", "get", "k")
    assert served.stdout == value and served.stderr == b""
    for args in (("broker", "list"), ("broker", "list", "--json"), ("broker", "status", "--json"),
                 ("secrets", "list", "--json"), ("secrets", "tier", "k", "controlled"), ("audit", "show"),
                 ("audit", "show", "--json"), ("audit", "verify"), ("revoke", "k"), ("broker", "get", "nope")):
        run(*args, agent=args[0] in ("broker", "revoke"))
    source = tmp_path / "imported"
    source.write_bytes(value)
    run("secrets", "import", "--shred", str(source))
    run("secrets", "set", "huge", stdin=CANARY * (2 ** 20 // len(CANARY) + 1))    # refused: too large
    run("secrets", "set", "k", "--raw", "--force", stdin=value)                      # overwrite
    run("secrets", "rm", "k", "--force")
    for args, result in outputs:
        assert CANARY not in result.stdout + result.stderr, args
        assert b"Traceback" not in result.stderr, args
    log = (tree.state / "audit.log").read_bytes()
    assert CANARY not in log and b"LEAK-CANARY" not in log
    assert b'"event":"get"' in log and b'"event":"import"' in log  # the log did record those actions


@needs_proc
def test_value_not_in_any_argv_while_the_broker_serves_it(tree):
    value = CANARY * (2 ** 19 // len(CANARY))  # far more than a pipe holds: the broker blocks mid-write
    tree.set_secret("big", value, tier="open")
    proc = subprocess.Popen([str(tree.libexec / "broker"), "get", "big"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=tree.env(as_agent=True))
    try:
        first = os.read(proc.stdout.fileno(), len(CANARY))  # it is serving now, stuck on the full pipe
        assert first == CANARY
        assert not any(CANARY in argv for argv in _all_argv())
    finally:
        rest, _ = proc.communicate(timeout=60)
    assert first + rest == value


@needs_proc
def test_value_not_in_any_argv_while_secrets_set_reads_it(tree):
    proc = subprocess.Popen([str(tree.libexec / "secrets"), "set", "k", "--raw"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tree.env(as_agent=False))
    try:
        proc.stdin.write(CANARY)
        proc.stdin.flush()
        deadline = time.time() + 10  # until it sits in read(2) holding the value
        while time.time() < deadline and "pipe" not in open(f"/proc/{proc.pid}/wchan").read():
            time.sleep(0.02)
        assert not any(CANARY in argv for argv in _all_argv())
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize("error", [RuntimeError, KeyError, ValueError, UnicodeError, AssertionError])
def test_an_unexpected_exception_carrying_a_value_prints_one_line_and_no_traceback(capsys, error):
    def main(argv):
        raise error(CANARY.decode())

    with pytest.raises(SystemExit) as exited:
        cli.run(main)
    captured = capsys.readouterr()
    assert exited.value.code == 6
    assert captured.err == f"clawgate: internal error ({error.__name__}); nothing was changed\n"
    assert CANARY.decode() not in captured.out + captured.err


def test_enroll_gives_the_seed_to_qrencode_on_stdin_never_in_argv(monkeypatch):
    enroll = load_program("enroll")
    calls = []
    monkeypatch.setattr(enroll.shutil, "which", lambda *a, **k: "/usr/bin/qrencode")
    monkeypatch.setattr(enroll.subprocess, "run", lambda argv, **kw: calls.append((argv, kw)))
    params = totp.Params(totp.new_secret())
    uri = totp.uri(params, "alice@host")
    enroll.show_qr(uri)
    (argv, kw), = calls
    assert argv == ["/usr/bin/qrencode", "-t", "UTF8"]  # not a terminal: no colour escapes
    assert kw["input"] == uri.encode()
    assert not any(totp.to_base32(params.secret) in arg for arg in argv)


def test_seed_never_in_the_audit_log_or_a_denial(tree):
    b32 = totp.to_base32(tree.seed.secret).encode()
    for _ in range(3):
        one_line_error(tree.as_agent("totp-validate", input=wrong_code_at(tree.seed, time.time()).encode()), 1)
    log = (tree.state / "audit.log").read_bytes()
    assert b32 not in log and tree.seed.secret.hex().encode() not in log
