"""The agent's lockout (lib/clawgate/lockout.py, applied by gate.check) and DESIGN's yearly bound.

DESIGN: with the defaults, a year of non-stop guessing by the agent must succeed with probability
below 0.1%. A guess wins with probability at most 3/10^6 (three codes are accepted: the previous,
current and next step), so the agent must get fewer than 333 guesses in 365 days whatever it does.
The tests drive the real policy, and the real gate with an injected clock, through a simulated
year for many attacker strategies, and compute the exact optimum over all strategies.
"""

import math
import time

import pytest

from coretools import audit_records, context, one_line_error, status, wrong_code_at
from clawgate import gate, lockout, totp
from clawgate.errors import ClawgateError

DAY = 24 * 3600
YEAR = 365 * DAY
P_GUESS = 3e-6  # three accepted codes in 10^6
BOUND = 333     # guesses: 333 x 3e-6 = 0.0999%, so the agent must get fewer


# -- the policy itself ---------------------------------------------------------------------------
def test_policy_constants_are_the_documented_ones():
    assert (lockout.FREE_FAILURES, lockout.BASE_LOCKOUT) == (5, 60)
    assert (lockout.MAX_LOCKOUT, lockout.DECAY) == (7 * DAY, 3 * DAY)


def test_five_free_failures_then_60s_doubling_up_to_seven_days():
    lockouts = [lockout.lockout_for(failures) for failures in range(1, 41)]
    assert lockouts[:5] == [0] * 5
    assert lockouts[5:19] == [60 * 2 ** i for i in range(14)]  # 1 min ... 5.7 days
    assert lockouts[19:] == [7 * DAY] * 21


def test_greedy_guessing_settles_at_one_guess_per_5_7_days():
    state, now = lockout.State(), 0.0
    for _ in range(60):
        assert not lockout.is_locked(state, now)
        state = lockout.after_failure(state, now)
        now = max(now + 1, state.locked_until)  # next guess the moment the lockout ends
    # At 19 failures the lockout (60 s << 13 = 5.7 days) outlasts a decay period, so each
    # wait forgets one failure and the next guess adds one back.
    assert state.failures == 19 and state.locked_until - state.last_failure == 60 * 2 ** 13


def test_a_failure_is_forgotten_per_three_quiet_days():
    state = lockout.State(failures=8, last_failure=0.0, locked_until=0.0)
    assert lockout.failures_now(state, 3 * DAY - 1) == 8
    assert lockout.failures_now(state, 3 * DAY) == 7
    assert lockout.failures_now(state, 9 * DAY) == 5
    assert lockout.failures_now(state, 365 * DAY) == 0


def test_a_lockout_is_refused_until_its_last_second():
    state = lockout.after_failure(lockout.State(5, 0.0, 0.0), 100.0)
    assert state.locked_until == 160.0
    assert lockout.is_locked(state, 159.999) and not lockout.is_locked(state, 160.0)


# -- a simulated year ----------------------------------------------------------------------------
class Limiter:
    """The pure policy, applied the way gate.check applies it to the agent."""

    def __init__(self) -> None:
        self.state = lockout.State()

    def attempt(self, now: float):
        if lockout.is_locked(self.state, now):
            return "locked", self.state.locked_until
        self.state = lockout.after_failure(self.state, now)
        return "denied", self.state.locked_until


class RealGate:
    """gate.check itself, as the agent, with wrong codes, on a staged install; time is injected."""

    def __init__(self, tree) -> None:
        self.ctx = context(tree, "agent")
        self.params = tree.seed
        self.start = time.time() + DAY  # every simulated step is later than anything enroll spent

    def attempt(self, now: float):
        when = self.start + now
        with pytest.raises(ClawgateError) as err:
            gate.check(self.ctx, wrong_code_at(self.params, when), purpose="year", now=when)
        assert err.value.code in (1, 5), err.value.message
        until = gate.load_state(self.ctx).lock.locked_until
        return ("denied" if err.value.code == 1 else "locked"), (until - self.start if until else 0.0)


def drive(target, strategy) -> int:
    """Guesses (attempts that were not refused as locked) the strategy gets in a year."""
    now, guesses = 0.0, 0
    while now < YEAR:
        result, until = target.attempt(now)
        guesses += result == "denied"
        now = strategy(now, result, until, guesses)
    return guesses


def greedy():
    """Guess every second, skipping straight to the end of each lockout (the message says when)."""
    return lambda now, result, until, guesses: max(now + 1, until)


def schedule(period, size=1):
    """Blind: `size` attempts a second apart at the start of every `period`, whatever the answers.

    Attempts that fall inside a lockout are refused and change nothing
    (test_a_locked_attempt_changes_nothing... proves it), so the driver jumps to the
    first scheduled attempt at or after the lockout's end: the year comes out the same.
    """
    def strategy(now, result, until, guesses):
        t = max(now + 1, until)
        cycle, offset = divmod(t, period)
        at = math.ceil(offset)
        return cycle * period + at if at < size else (cycle + 1) * period
    return strategy


def bursts(size, pause):
    """`size` guesses as fast as lockouts allow, then `pause` before the next burst."""
    def strategy(now, result, until, guesses):
        return max(now + (pause if guesses % size == 0 else 1), until)
    return strategy


def ramp(count, period):
    """Greedy for `count` guesses, then one guess per `period`: the shape of the optimum."""
    return lambda now, result, until, guesses: max(now + (1 if guesses < count else period), until)


STRATEGIES = {"greedy": greedy}
STRATEGIES.update({f"every {interval}s": (lambda i=interval: schedule(i)) for interval in sorted(
    {1, 10, 30, 60, 300, 3600, 6 * 3600, DAY, 2 * DAY, 3 * DAY - 1, 3 * DAY, 3 * DAY + 1, 4 * DAY,
     5 * DAY, 6 * DAY, 7 * DAY, 14 * DAY, 30 * DAY}
    | {round(60 * 1.37 ** k) for k in range(34)})})
for size in (2, 3, 5, 6, 8, 10, 20, 50):
    for pause in (60, 3600, DAY, 3 * DAY, 3 * DAY + 1, 4 * DAY, 7 * DAY):
        STRATEGIES[f"bursts of {size} every {pause}s"] = lambda s=size, p=pause: bursts(s, p)
        STRATEGIES[f"blind bursts of {size} every {pause}s"] = lambda s=size, p=pause: schedule(p, s)
STRATEGIES.update({f"ramp to {count} then every {period}s": (lambda c=count, p=period: ramp(c, p))
                   for count in range(0, 26) for period in (DAY, 3 * DAY, 3 * DAY + 1, 6 * DAY)})


def optimum() -> int:
    """The most guesses any strategy gets in a year, by dynamic programming over the real policy.

    After a guess, the state is (failures, time of that guess); for equal failures an earlier
    time dominates. From a state the only next times worth trying are the end of the lockout
    and whole multiples of DECAY after the guess (waiting longer without forgetting one more
    failure gains nothing). Failures and lockouts come from lockout.after_failure itself.
    """
    frontier = {1: lockout.after_failure(lockout.State(), 0.0)}  # first guess at t=0
    guesses = 1
    while True:
        reachable = {}
        for state in frontier.values():
            candidates = {max(state.last_failure, state.locked_until)}
            candidates |= {state.last_failure + k * lockout.DECAY for k in range(1, state.failures + 1)}
            for when in candidates:
                if when >= YEAR or lockout.is_locked(state, when):
                    continue
                nxt = lockout.after_failure(state, when)
                if nxt.failures not in reachable or nxt.last_failure < reachable[nxt.failures].last_failure:
                    reachable[nxt.failures] = nxt
        if not reachable:
            return guesses
        frontier, guesses = reachable, guesses + 1


def test_a_year_of_guessing_stays_below_one_in_a_thousand(capsys):
    results = {name: drive(Limiter(), make()) for name, make in STRATEGIES.items()}
    worst_name = max(results, key=results.get)
    best_possible = optimum()
    with capsys.disabled():
        print(f"\nlockout: {len(results)} strategies; worst '{worst_name}': {results[worst_name]} guesses"
              f" ({results[worst_name] * P_GUESS:.4%}); greedy {results['greedy']};"
              f" optimum over all strategies {best_possible} guesses ({best_possible * P_GUESS:.4%})")
    assert all(count < BOUND for count in results.values()), results
    assert best_possible < BOUND
    assert max(results.values()) <= best_possible  # the optimum really bounds every strategy tried
    assert best_possible * P_GUESS < 0.001


@pytest.mark.parametrize("name", ["greedy", f"every {DAY}s", f"every {3 * DAY}s",
                                  f"blind bursts of 6 every {3 * DAY}s", f"ramp to 17 then every {3 * DAY}s"])
def test_the_real_gate_gives_the_same_year(tree, name):
    """The simulation above is the real thing: gate.check with an injected clock agrees with it."""
    real = drive(RealGate(tree), STRATEGIES[name]())
    assert real == drive(Limiter(), STRATEGIES[name]())
    assert real < BOUND
    denials = [r for r in audit_records(tree) if r.get("purpose") == "year" and r["result"] == "denied"]
    assert len(denials) == real  # every guess is on the record


# -- the gate, in-process with an injected clock ---------------------------------------------------
def _lock_out(ctx, params, now):
    for _ in range(lockout.FREE_FAILURES + 1):
        with pytest.raises(ClawgateError) as err:
            gate.check(ctx, wrong_code_at(params, now), purpose="t", now=now)
        assert err.value.code == 1
    assert lockout.is_locked(gate.load_state(ctx).lock, now)


def test_a_locked_attempt_changes_nothing_and_does_not_spend_a_valid_code(tree):
    agent, owner = context(tree, "agent"), context(tree, "owner")
    now = time.time() + 10 * DAY
    _lock_out(agent, tree.seed, now)
    before = (tree.state / "totp.json").read_bytes()
    valid = totp.code_at(tree.seed, now)
    for code in (valid, wrong_code_at(tree.seed, now)):
        with pytest.raises(ClawgateError) as err:
            gate.check(agent, code, purpose="t", now=now + 1)
        assert err.value.code == 5 and "locked out until" in err.value.message
    assert (tree.state / "totp.json").read_bytes() == before
    gate.unlock(owner)
    assert gate.check(agent, valid, purpose="t", now=now + 2) == totp.step_at(now)


def test_success_never_resets_the_count(tree):
    agent = context(tree, "agent")
    now = time.time() + 10 * DAY
    for _ in range(lockout.FREE_FAILURES):
        with pytest.raises(ClawgateError):
            gate.check(agent, wrong_code_at(tree.seed, now), purpose="t", now=now)
    gate.check(agent, totp.code_at(tree.seed, now), purpose="t", now=now)
    with pytest.raises(ClawgateError):
        gate.check(agent, wrong_code_at(tree.seed, now), purpose="t", now=now + 1)
    assert lockout.is_locked(gate.load_state(agent).lock, now + 1)


def test_owner_failures_do_not_count_and_the_owner_passes_a_lockout(tree):
    agent, owner = context(tree, "agent"), context(tree, "owner")
    now = time.time() + 10 * DAY
    for _ in range(50):
        with pytest.raises(ClawgateError) as err:
            gate.check(owner, wrong_code_at(tree.seed, now), purpose="t", now=now)
        assert err.value.code == 1
    assert gate.load_state(owner).lock == lockout.State()
    _lock_out(agent, tree.seed, now)
    assert gate.check(owner, totp.code_at(tree.seed, now), purpose="t", now=now) == totp.step_at(now)
    assert lockout.is_locked(gate.load_state(agent).lock, now)  # the owner's success unlocks nothing


# -- the programs --------------------------------------------------------------------------------
def _agent_guesses_wrong(tree, times):
    for _ in range(times):
        result = tree.as_agent("totp-validate", input=wrong_code_at(tree.seed, time.time()).encode() + b"\n")
        assert one_line_error(result, 1) == "clawgate: code denied\n"


def test_agent_is_locked_out_after_five_free_failures(tree):
    tree.set_secret("k", b"v")
    _agent_guesses_wrong(tree, 5)
    assert status(tree)["locked_until"] is None and status(tree)["failures"] == 5
    _agent_guesses_wrong(tree, 1)
    report = status(tree)
    assert report["locked_until"] is not None and report["failures"] == 6
    for prog, args, stdin in [("totp-validate", (), b""), ("approve", ("k", "000000"), b""),
                              ("approve", ("k",), b"")]:
        err = one_line_error(tree.as_agent(prog, *args, input=stdin), 5)
        assert f"locked out until {report['locked_until']}" in err and "clawgate unlock" in err
    assert any(r["event"] == "lockout" for r in audit_records(tree))


def test_valid_code_from_agent_during_lockout_gets_exit_5_grants_nothing_and_is_not_spent(tree):
    tree.set_secret("k", b"v")
    _agent_guesses_wrong(tree, 6)
    code = tree.code()
    one_line_error(tree.as_agent("approve", "k", code), 5)
    assert not (tree.state / "grants" / "k").exists()
    one_line_error(tree.as_agent("broker", "get", "k"), 3)
    assert [r["result"] for r in audit_records(tree) if r["event"] == "code"][-1] == "locked"
    assert tree.run("totp-validate", "--unlock").returncode == 0
    result = tree.as_agent("approve", "k", code)  # the same code: it was never spent
    assert result.returncode == 0, result.stderr
    assert tree.as_agent("broker", "get", "k").stdout == b"v"


def test_owner_can_approve_during_the_agents_lockout(tree):
    tree.set_secret("k", b"v")
    _agent_guesses_wrong(tree, 6)
    result = tree.owner_approve("k", tree.code())
    assert result.returncode == 0, result.stderr
    assert tree.as_agent("broker", "get", "k").stdout == b"v"
    assert status(tree)["locked_until"] is not None  # still locked: success resets nothing


def test_owner_wrong_codes_do_not_count(tree):
    for _ in range(8):
        result = tree.run("totp-validate", input=wrong_code_at(tree.seed, time.time()).encode() + b"\n")
        one_line_error(result, 1)
    assert status(tree)["failures"] == 0 and status(tree)["locked_until"] is None
    tree.set_secret("k", b"v")
    assert tree.as_agent("approve", "k", tree.code()).returncode == 0


def test_unlock_clears_the_lockout_and_only_the_owner_may_run_it(tree):
    _agent_guesses_wrong(tree, 6)
    err = one_line_error(tree.as_agent("totp-validate", "--unlock"), 1)
    assert "only the owner" in err
    assert status(tree)["locked_until"] is not None
    result = tree.run("totp-validate", "--unlock")
    assert result.returncode == 0 and b"6 recent wrong codes forgotten" in result.stdout
    assert status(tree)["locked_until"] is None and status(tree)["failures"] == 0
    assert [r["event"] for r in audit_records(tree)][-1] == "unlock"
    assert tree.as_agent("totp-validate", input=tree.code().encode() + b"\n").returncode == 0
