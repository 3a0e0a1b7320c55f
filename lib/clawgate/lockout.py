"""The growing lockout for codes relayed by the agent. Pure: time is a parameter.

After FREE_FAILURES wrong codes, each further one locks the agent out for
BASE_LOCKOUT doubling per failure, up to MAX_LOCKOUT. The count forgets one
failure per DECAY seconds without a failure, so an owner's occasional typo
costs nothing; a success never resets it (otherwise every approval the owner
gives would hand the agent a fresh set of free guesses). Only the owner's
`clawgate unlock` clears it. README.md derives the yearly bound; the test
suite checks it by driving this module through a simulated year.
"""

from typing import NamedTuple

FREE_FAILURES = 5
BASE_LOCKOUT = 60
MAX_LOCKOUT = 7 * 24 * 3600
DECAY = 3 * 24 * 3600


class State(NamedTuple):
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


def failures_now(state: State, now: float) -> int:
    if state.failures <= 0:
        return 0
    forgotten = int(max(0.0, now - state.last_failure) // DECAY)
    return max(0, state.failures - forgotten)


def lockout_for(failures: int) -> int:
    if failures <= FREE_FAILURES:
        return 0
    return min(MAX_LOCKOUT, BASE_LOCKOUT << min(failures - FREE_FAILURES - 1, 40))


def is_locked(state: State, now: float) -> bool:
    return now < state.locked_until


def after_failure(state: State, now: float) -> State:
    failures = failures_now(state, now) + 1
    lockout = lockout_for(failures)
    return State(failures, now, now + lockout if lockout else 0.0)
