"""`clawgate run`: secrets reach CMD's environment, never an argv, and leave its output only as `[redacted:NAME]`.

The command is driven through the staged install as the owner (the agent path is
the same code behind `sudo -n -u OWNER broker get`, exercised in test_openclaw_root.py).
"""

import base64
import hashlib
import json
import random
import signal
import sys
from urllib.parse import quote, quote_plus

import pytest

from clawgate.redact import Redactor, forms

PY = sys.executable
# Every kind of character: URL-encoding changes it, base64 has + and / in it.
VALUE = b"tok/3n+key=&?% with space~\xc3\xa9!"
OTHER = b"second-secret-4c5d6e"


@pytest.fixture
def stocked(tree):
    tree.set_secret("api/key", VALUE, "open")
    tree.set_secret("other", OTHER, "open")
    tree.set_secret("locked", b"locked-value-123", "restricted")
    return tree


def run(tree, *args, **kw):
    return tree.run("run", *args, **kw)


def script(body: str) -> list:
    return ["--", PY, "-c", body]


def encodings(value: bytes) -> list:
    b64 = base64.b64encode(value)
    return [value, b64, b64.rstrip(b"="), base64.urlsafe_b64encode(value),
            quote(value, safe="").encode(), quote_plus(value, safe="").encode(),
            quote(value, safe="").lower().encode()]


# A child that writes each form of $K one byte per write() on both streams, then exits 7.
ONE_BYTE_WRITER = r"""
import base64, os, sys
from urllib.parse import quote, quote_plus
v = os.environb[b"K"]
b64 = base64.b64encode(v)
forms = [v, b64, b64.rstrip(b"="), base64.urlsafe_b64encode(v), quote(v, safe="").encode(),
         quote_plus(v, safe="").encode(), quote(v, safe="").lower().encode(),
         base64.b64encode(b"user:" + v)]
for fd in (1, 2):
    for form in forms:
        for byte in b"<" + form + b">\n":
            os.write(fd, bytes([byte]))
sys.exit(7)
"""


def test_values_split_across_one_byte_writes_are_redacted_on_both_streams(stocked):
    result = run(stocked, "--env", "K=api/key", *script(ONE_BYTE_WRITER))
    assert result.returncode == 7
    for stream in (result.stdout, result.stderr):
        lines = stream.splitlines()
        assert len(lines) == 8
        for line in lines[:7]:
            assert line == b"<[redacted:api/key]>", line
        # basic auth: the token's bits inside base64("user:" + token) are gone too
        assert b"[redacted:api/key]" in lines[7]
        for form in encodings(VALUE):
            assert form not in stream


def test_exit_status_passes_through(stocked):
    assert run(stocked, *script("import sys; sys.exit(7)")).returncode == 7
    assert run(stocked, *script("pass")).returncode == 0
    assert run(stocked, "--", "false").returncode == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV])
def test_death_by_signal_passes_through(stocked, sig):
    result = run(stocked, *script(f"import os; os.kill(os.getpid(), {int(sig)})"))
    assert result.returncode == -sig


def test_sigterm_to_run_reaches_the_command(stocked, tmp_path):
    """run forwards SIGTERM to CMD, which may handle it; then CMD's status passes through."""
    body = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
            "os.kill(os.getppid(), signal.SIGTERM)\n"
            "time.sleep(30)\n")
    assert run(stocked, *script(body)).returncode == 42


def test_the_environment_carries_the_exact_bytes(stocked, tree):
    stocked.set_secret("raw", b"\x01\xff\xfe not utf-8 \n", "open")
    body = "import hashlib, os; print(hashlib.sha256(os.environb[b'R']).hexdigest())"
    result = run(stocked, "--env", "R=raw", *script(body))
    assert result.stdout.decode().strip() == hashlib.sha256(b"\x01\xff\xfe not utf-8 \n").hexdigest()


def test_values_never_appear_in_any_argv(stocked):
    """CMD prints (in hex, which run does not redact) its own and run's argv: no value in either."""
    body = ("import os\n"
            "for pid in ('self', str(os.getppid())):\n"
            "    print(open(f'/proc/{pid}/cmdline', 'rb').read().hex())\n")
    result = run(stocked, "--env", "A=api/key", "--env", "B=other", *script(body))
    assert result.returncode == 0, result.stderr
    argvs = [bytes.fromhex(line) for line in result.stdout.decode().split()]
    assert len(argvs) == 2 and b"run" in argvs[1]
    for argv in argvs:
        assert VALUE not in argv and OTHER not in argv


def test_two_secrets_are_told_apart(stocked):
    body = "import os; print(os.environ['A'], os.environ['B'], os.environ['C'])"
    result = run(stocked, "--env", "A=api/key", "--env", "B=other", "--env", "C=other", *script(body))
    assert result.stdout == b"[redacted:api/key] [redacted:other] [redacted:other]\n"


def test_large_interleaved_output_is_relayed_whole(stocked):
    """1 MiB on each stream at once: no deadlock, nothing lost, every value caught."""
    body = ("import os\n"
            "v = os.environb[b'K']\n"
            "chunk = b'x' * 1000 + v + b'y' * 1000 + b'\\n'\n"
            "for _ in range(500):\n"
            "    os.write(1, chunk); os.write(2, chunk)\n")
    result = run(stocked, "--env", "K=api/key", *script(body))
    assert result.returncode == 0
    expected = (b"x" * 1000 + b"[redacted:api/key]" + b"y" * 1000 + b"\n") * 500
    assert result.stdout == expected and result.stderr == expected


def test_stdin_reaches_the_command(stocked):
    result = run(stocked, *script("import sys; sys.stdout.write(sys.stdin.read().upper())"), input=b"hello")
    assert result.stdout == b"HELLO"


def test_the_command_is_an_argv_not_a_shell_line(stocked, tmp_path):
    marker = tmp_path / "pwned"
    result = run(stocked, "--", "echo", f"$(touch {marker})", ";", "touch", str(marker))
    assert result.returncode == 0
    assert not marker.exists()
    assert result.stdout == f"$(touch {marker}) ; touch {marker}\n".encode()


# -- refusals: CMD never starts -------------------------------------------------------------------

def test_a_secret_without_a_grant_stops_before_the_command(stocked, tmp_path):
    marker = tmp_path / "ran"
    result = run(stocked, "--env", "A=api/key", "--env", "L=locked", "--", "touch", str(marker))
    assert result.returncode == 3
    assert result.stderr.startswith(b"clawgate: locked: approval required (restricted")
    assert not marker.exists()


def test_a_granted_secret_is_served(stocked):
    assert stocked.owner_approve("locked", stocked.code()).returncode == 0
    result = run(stocked, "--env", "L=locked", *script("import os; print(os.environ['L'])"))
    assert result.stdout == b"[redacted:locked]\n"


def test_a_missing_secret_exits_4(stocked, tmp_path):
    marker = tmp_path / "ran"
    result = run(stocked, "--env", "A=nope", "--", "touch", str(marker))
    assert result.returncode == 4 and not marker.exists()


@pytest.mark.parametrize("args", [
    [],
    ["--"],
    ["--env", "A=api/key"],
    ["--env", "A=api/key", "true"],
    ["--env", "A=api/key", "--"],
    ["--env", "1A=api/key", "--", "true"],
    ["--env", "A-B=api/key", "--", "true"],
    ["--env", "=api/key", "--", "true"],
    ["--env", "A", "--", "true"],
    ["--env", "A=../totp-seed", "--", "true"],
    ["--env", "A=@root", "--", "true"],
    ["--env", "A=api/key", "--env", "A=other", "--", "true"],
    ["--env"],
    ["--bogus", "--", "true"],
])
def test_usage_errors_exit_2(stocked, args):
    result = run(stocked, *args)
    assert result.returncode == 2
    assert result.stdout == b"" and result.stderr.startswith(b"clawgate: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_value_with_a_nul_byte_cannot_be_an_environment_variable(stocked):
    stocked.set_secret("nul", b"a\x00b", "open")
    result = run(stocked, "--env", "N=nul", "--", "true")
    assert result.returncode == 2 and b"NUL" in result.stderr and b"Traceback" not in result.stderr


def test_a_missing_command_exits_127_and_a_directory_126(stocked, tmp_path):
    assert run(stocked, "--", str(tmp_path / "nothing")).returncode == 127
    assert run(stocked, "--", str(tmp_path)).returncode == 126


# -- the redactor itself ------------------------------------------------------------------------------

def redact_in_pieces(secrets, stream: bytes, sizes) -> bytes:
    redactor = Redactor(secrets)
    out, at = [], 0
    for size in sizes:
        out.append(redactor.feed(stream[at:at + size]))
        at += size
    out.append(redactor.feed(stream[at:]))
    out.append(redactor.finish())
    return b"".join(out)


def test_any_split_gives_the_same_output_as_no_split():
    """Random streams made of values, their forms, their prefixes and noise, cut at random."""
    secrets = [("a", VALUE), ("b", b"hunter2hunter2"), ("c", b"hunter2")]
    pieces = [VALUE, b"hunter", b"2", b"x", b"\n", VALUE[:7], base64.b64encode(VALUE)[:-3]]
    for _name, value in secrets:
        pieces += forms(value)
    rnd = random.Random(6)
    for _ in range(1500):
        stream = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12)))
        whole = redact_in_pieces(secrets, stream, [])
        cuts = [rnd.randint(1, 9) for _ in range(len(stream))]
        assert redact_in_pieces(secrets, stream, cuts) == whole, stream
        for _name, value in secrets:
            assert value not in whole


def test_every_form_is_redacted_byte_by_byte():
    for form in forms(VALUE):
        stream = b"before " + form + b" after"
        assert redact_in_pieces([("k", VALUE)], stream, [1] * len(stream)) == b"before [redacted:k] after"


def test_the_longest_form_wins():
    redactor = Redactor([("short", b"hunter2"), ("long", b"hunter2hunter2")])
    assert redactor.feed(b"hunter2hunter2!") + redactor.finish() == b"[redacted:long]!"


def test_only_a_possible_start_of_a_value_is_held_back():
    redactor = Redactor([("k", b"secret-value")])
    assert redactor.feed(b"plain text, secret") == b"plain text, "
    assert redactor.feed(b"-val") == b""
    assert redactor.feed(b"id") == b"secret-valid"
    assert redactor.finish() == b""


def test_a_prefix_left_at_the_end_is_flushed():
    redactor = Redactor([("k", b"secret-value")])
    assert redactor.feed(b"x secret-va") == b"x "
    assert redactor.finish() == b"secret-va"


def test_no_secrets_means_no_delay():
    assert Redactor([]).feed(b"anything") == b"anything"
    assert Redactor([("empty", b"")]).feed(b"anything") == b"anything"


def test_json_escaped_value_in_logs():
    """A value printed inside JSON with no escaping needed is still caught."""
    stream = json.dumps({"key": "hunter2hunter2"}).encode()
    assert b"hunter2" not in Redactor([("k", b"hunter2hunter2")]).feed(stream)


def test_a_whitespace_padded_value_is_caught_stripped():
    redactor = Redactor([("k", b"padded-value\n")])
    assert redactor.feed(b"[padded-value]") + redactor.finish() == b"[[redacted:k]]"



def test_hex_forms_in_both_cases_are_forms():
    """xxd -p and od print a value as hex; the proxy's scrubber uses the same forms."""
    hexed = VALUE.hex()
    for form in (hexed, hexed.upper(), VALUE.hex(" "), VALUE.hex(" ").upper()):
        assert form.encode() in forms(VALUE)
        assert Redactor([("k", VALUE)]).feed(b"<" + form.encode() + b">") + b"" != b"<" + form.encode() + b">"
