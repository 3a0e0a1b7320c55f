"""Requests and number matching on a staged install (no root needed): the odds, the parsing,
the bounds, and that a code relayed without the right match is counted like a wrong code."""

import json
import os
import time
from pathlib import Path

import pytest

from coretools import context, one_line_error, wrong_code_at
from test_lockout import P_GUESS, optimum
from clawgate import context as context_mod
from clawgate import gate, names, notify, requests, totp
from clawgate.errors import ClawgateError

P_MATCH = 1 / 100  # the 2-digit match a relayed code must carry


@pytest.fixture
def channel_tree(tree):
    tree.set_secret("db", b"value-of-db", tier="restricted")
    notify.save(tree.config(), {"kind": "command", "argv": ["/bin/true"], "env": {}})
    return tree


def new_request(tree, name="db", now=None):
    ctx = context(tree, "agent")
    return requests.create(ctx, name, None, "why", None, now or time.time())


def test_a_year_of_guessing_code_and_match_succeeds_with_odds_of_4_in_a_million(capsys):
    best = optimum()  # the lockout is unchanged: the same 138 guesses a year at most
    per_guess = P_GUESS * P_MATCH
    with capsys.disabled():
        print(f"\nnumber matching: {best} guesses/year x {per_guess:.0e} = {best * per_guess:.2e} a year")
    assert best == 138 and best * per_guess < 5e-6


def relayed_request(tree):
    """The agent's context, a fresh request, now, the right code and a match that is not the request's."""
    request = new_request(tree)
    now = time.time()
    return context(tree, "agent"), request, now, totp.code_at(tree.seed, now), f"{(int(request.match) + 1) % 100:02d}"


def test_a_wrong_or_missing_match_is_counted_exactly_like_a_wrong_code(channel_tree):
    tree = channel_tree
    ctx, request, now, right, wrong_match = relayed_request(tree)
    attempts = [right + wrong_match, right, f"{right} {wrong_match}", wrong_code_at(tree.seed, now) + request.match]
    for count, relayed in enumerate(attempts, 1):
        with pytest.raises(ClawgateError) as err:
            requests.approve(ctx, request.id, relayed, now)
        assert (err.value.code, err.value.message) == (1, gate.DENIED_MESSAGE)
        assert gate.load_state(ctx).lock.failures == count
    for _ in range(2):  # the sixth failure locks out: then even the right code + match gets exit 5
        with pytest.raises(ClawgateError):
            requests.approve(ctx, request.id, right, now)
    with pytest.raises(ClawgateError) as err:
        requests.approve(ctx, request.id, right + request.match, now)
    assert err.value.code == 5
    gate.unlock(context(tree, "owner"))
    later = now + 30  # the right code was spent by the first refused match (see the next test)
    assert "granted" in requests.approve(ctx, request.id, f"{totp.code_at(tree.seed, later)}-{request.match}", later)


def test_a_valid_code_relayed_with_a_wrong_match_is_spent_so_it_gets_one_try_at_a_match(channel_tree):
    """Otherwise the agent could try the owner's code with match after match (five free guesses:
    a 5% chance of turning the owner's approval of one request into another)."""
    tree = channel_tree
    ctx, request, now, right, wrong_match = relayed_request(tree)
    with pytest.raises(ClawgateError):
        requests.approve(ctx, request.id, right + wrong_match, now)
    with pytest.raises(ClawgateError) as err:
        requests.approve(ctx, request.id, right + request.match, now)
    assert (err.value.code, err.value.message) == (1, gate.DENIED_MESSAGE)
    assert gate.load_state(ctx).lock.failures == 2


def test_request_ids_never_collide_with_a_secret_name_or_root():
    rid = "@" + "k3x9qa"
    assert requests.is_id(rid) and not names.is_valid(rid) and rid != names.ROOT
    assert not requests.is_id(names.ROOT) and not requests.is_id("k3x9qa") and not requests.is_id("@k3x9q0")


@pytest.mark.parametrize("text, expected", [
    ("48291647", ("482916", "47")), ("482916 47", ("482916", "47")), ("482916-47", ("482916", "47")),
    ("482916", ("482916", None)), ("482916_47", ("482916_47", None)), ("4829164", ("4829164", None)),
    ("482916  47", ("482916  47", None)), ("４８２９１６４７", ("４８２９１６４７", None)),
])
def test_code_and_match_are_split_only_in_the_documented_forms(text, expected):
    assert requests.split_relayed(text, 6) == expected


@pytest.mark.parametrize("line", ["", "http://ntfy.sh/x", "relative/cmd arg", "notify-send hi", "https://",
                                  "/bin/echo 'unclosed", "/bin/echo a\x1bb", "1BAD=x /bin/true", "X=1"])
def test_a_channel_line_is_an_https_url_or_an_absolute_command(line):
    with pytest.raises(ClawgateError) as err:
        notify.parse_line(line)
    assert err.value.code == 2


def test_a_command_channel_keeps_its_tokens_in_the_environment_not_the_argv():
    channel = notify.parse_line("TOKEN='s3 cret' CHAT=42 /usr/bin/python3 -c 'print(1)'")
    assert channel == {"kind": "command", "argv": ["/usr/bin/python3", "-c", "print(1)"],
                       "env": {"TOKEN": "s3 cret", "CHAT": "42"}}
    assert "s3 cret" not in notify.describe(channel)


def test_caller_text_is_escaped_and_bounded_in_what_the_owner_reads():
    assert notify.plain("a\nb\x1b[31m\\x0a") == "a\\x0ab\\x1b[31m\\\\x0a"
    assert notify.plain("x" * 500).endswith("...") and len(notify.plain("x" * 500)) == notify.MAX_FIELD + 3
    assert notify.argv_text(["/bin/sh", "-c", "echo $HOME\n"]) == "/bin/sh -c 'echo $HOME\\x0a'"


def test_a_long_root_command_is_shown_whole_to_the_owner(channel_tree):
    """Each word was cut at 256 characters: the tail `; touch /root/x` never reached the owner."""
    argv = ["/bin/sh", "-c", "echo " + "A" * 300 + "; touch /root/x\x1b"]
    request = requests.create(context(channel_tree, "agent"), names.ROOT, None, "why", argv, time.time())
    assert request.what().endswith("; touch /root/x\\x1b'") and "..." not in request.what()
    assert "; touch /root/x" in notify.text_for("elevate", {"result": "run", "argv": argv, "caller": "a"})


def test_a_request_reason_is_logged_raw_and_escaped_once_when_shown(channel_tree):
    requests.create(context(channel_tree, "agent"), "db", None, "ok\rfine", None, time.time())
    record = [json.loads(line) for line in (channel_tree.state / "audit.log").read_bytes().splitlines()][-1]
    assert record["event"] == "request" and record["reason"] == "ok\rfine"
    shown = channel_tree.run("audit", "show").stdout.decode()
    assert "ok\\x0dfine" in shown and "ok\\\\x0dfine" not in shown


def test_the_events_pushed_are_decided_in_one_place():
    assert context_mod._PUSHED == frozenset(notify.PUSHED)


def test_events_flow_one_way_the_channel_knows_nothing_of_the_context():
    """The domain emits, the channel delivers: notify imports no context (not even for typing)
    and writes no audit record; a failed delivery is recorded by Context.undelivered alone."""
    import ast

    tree = ast.parse(open(notify.__file__).read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and "context" in name}, imported
    assert ".audit(" not in open(notify.__file__).read()
    recorders = [path.name for path in Path(context_mod.__file__).parent.glob("*.py")
                 if 'result="failed", notified=' in path.read_text()]
    assert recorders == ["context.py"]


def test_a_flood_of_requests_is_capped(channel_tree):
    for _ in range(requests.MAX_PENDING):
        assert channel_tree.as_agent("broker", "request", "db").returncode == 0
    flood = channel_tree.as_agent("broker", "request", "db")
    assert "too many pending requests" in one_line_error(flood, 1)
    assert len(os.listdir(channel_tree.state / "requests")) == requests.MAX_PENDING


def test_a_request_expires_and_then_approves_nothing(channel_tree):
    request = new_request(channel_tree, now=time.time() - requests.LIFETIME - 1)
    ctx = context(channel_tree, "agent")
    with pytest.raises(ClawgateError) as err:
        requests.approve(ctx, request.id, "00000000", time.time())
    assert err.value.code == 3
    assert gate.load_state(ctx).lock.failures == 0  # nothing was checked, nothing counted


def test_a_damaged_or_planted_request_approves_nothing(channel_tree):
    request = new_request(channel_tree)
    path = channel_tree.state / "requests" / request.id[1:]
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, id="@zzzzzz")))
    with pytest.raises(ClawgateError) as err:
        requests.approve(context(channel_tree, "agent"), request.id, "00000000", time.time())
    assert err.value.code == 3
    path.unlink()
    os.symlink("/etc/passwd", path)
    with pytest.raises(ClawgateError) as err:
        requests.approve(context(channel_tree, "agent"), request.id, "00000000", time.time())
    assert err.value.code == 6


def test_a_linked_requests_directory_is_refused(channel_tree, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir(mode=0o700)
    (channel_tree.state / "requests").symlink_to(other)
    assert one_line_error(channel_tree.as_agent("broker", "request", "db"), 6)


def test_approve_id_takes_no_ttl_and_the_owner_never_gives_the_code_in_argv(channel_tree):
    request = new_request(channel_tree)
    one_line_error(channel_tree.as_agent("approve", request.id, "12345678", "--ttl", "1m"), 2)
    assert "not as an argument" in one_line_error(channel_tree.run("approve", request.id, "123456"), 2)


def test_request_usage_errors(channel_tree):
    for args in (["@root"], ["@root", "--ttl", "1m", "--", "/bin/true"], ["db", "--", "/bin/true"],
                 ["../x"], ["db", "--reason", "x" * 201]):
        one_line_error(channel_tree.as_agent("broker", "request", *args), 2)
    one_line_error(channel_tree.as_agent("broker", "request", "missing"), 4)


def test_every_channel_example_in_the_readme_is_a_valid_channel():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("Examples (each is the line given to `notify set`):\n\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip().split("  # ")[0] for line in block.splitlines()]
    assert len(lines) == 4
    kinds = [notify.parse_line(line)["kind"] for line in lines]
    assert kinds == ["url", "command", "command", "command"]
    assert not any("notify-send" in line for line in lines)  # it takes the text (the match) as an argument
    for line in lines[1:3]:  # the tokens travel in the environment, never in the argv
        channel = notify.parse_line(line)
        assert all(value not in " ".join(channel["argv"]) for value in channel["env"].values())


def test_only_the_owner_lists_denies_or_sees_the_channel(channel_tree):
    request = new_request(channel_tree)
    for prog, args in (("pending", []), ("pending", ["--json"]), ("pending", ["deny", request.id]),
                       ("notify", ["show"]), ("notify", ["off"]), ("notify", ["test"])):
        result = channel_tree.as_agent(prog, *args)
        assert "only the owner" in one_line_error(result, 1) and result.stdout == b""
    assert (channel_tree.state / "notify.json").exists()
    assert (channel_tree.state / "requests" / request.id[1:]).exists()


def received(inbox):
    return [json.loads(line) for line in inbox.read_text().splitlines() if line.strip()] if inbox.exists() else []


def test_lockouts_and_seed_changes_are_pushed_to_the_owner(tree, tmp_path):
    import time as clock

    inbox = tmp_path / "inbox"
    notify.save(tree.config(), {"kind": "command", "argv": ["/bin/sh", "-c", f"cat >> {inbox}; echo >> {inbox}"],
                                "env": {}})
    tree.set_secret("db", b"value-of-db", tier="restricted")
    for _ in range(6):
        assert tree.as_agent("approve", "db", wrong_code_at(tree.seed, clock.time())).returncode in (1, 5)
    root_seed = totp.Params(totp.new_secret())
    step = max(totp.step_at(clock.time(), 30), tree.last_step + 1)
    code = totp.hotp(root_seed.secret, step, 6, "SHA1")
    if step > totp.step_at(clock.time(), 30) + 1:
        pytest.skip("no unspent step for the root seed right now")
    enrolled = tree.run("enroll", "--root", "--import", input=f"{totp.to_base32(root_seed.secret)}\n{code}\n".encode())
    assert enrolled.returncode == 0, enrolled.stderr
    deadline = clock.time() + 20
    while clock.time() < deadline:
        kinds = [event["event"] for event in received(inbox)]
        if {"lockout", "enroll"} <= set(kinds):
            break
        clock.sleep(0.1)
    texts = {event["event"]: event["text"] for event in received(inbox)}
    assert "the agent is locked out until" in texts["lockout"]
    assert "root seed enrolled" in texts["enroll"]


def test_a_push_whose_fork_fails_is_audited_not_swallowed(channel_tree, monkeypatch):
    """A fork the caller made fail (RLIMIT_NPROC, a full process table) leaves a `notify failed`
    record naming the event: the owner finds in the log why the lockout never arrived."""
    ctx = context(channel_tree, "agent")

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    ctx.audit("lockout", until="later", failures=6)
    assert not ctx.deliver(notify.event("test", "sent while forks fail"))
    records = [json.loads(line) for line in (channel_tree.state / "audit.log").read_bytes().splitlines()]
    failed = [(r["notified"], r["error"]) for r in records if r["event"] == "notify" and r["result"] == "failed"]
    assert failed == [("lockout", "cannot start the delivery: Resource temporarily unavailable"),
                      ("test", "cannot start the delivery: Resource temporarily unavailable")]
