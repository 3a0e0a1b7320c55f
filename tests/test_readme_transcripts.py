"""The README's owner and agent transcripts, run for real and compared line by line.

Each `alice$ CMD` or `openclaw$ CMD` line of the two console blocks runs as the owner or the agent
(through the real front door and the real sudo, installed by the real install.sh); what it prints
(stdout then stderr) must be the lines under it. The only differences allowed are what must vary
from run to run, each a placeholder the README may use:

- `alice`, `openclaw`, `host`: the owner's, the agent's and the machine's names;
- a 6-digit code: the code the test hands out (the same README code is the same real code);
- `HH:MM:SS UTC` times, and the base32 seed inside `secret=` (enrolment);
- the installer's change count (which the options and what already exists decide), shown as 70;
- the front door's path under the test's throwaway PREFIX, which the installer prints (no default
  PATH finds it there), shown as `clawgate`;
- a line `...` : any number of lines (an excerpt: the installer's plan, the QR code);
- `(exit N...)`, on its own line or after an output line: the command's exit status (default 0);
- `# comment` after a command, and text after two or more spaces following `CMD`: not run.

The install runs as RootEnv does it (a throwaway prefix, state and agent home), so the plan and
paths it prints are the `...` of the transcript; the change count is the real one.
"""

import re
import shutil
from pathlib import Path

import pytest

from clawgate import totp
from installtree import REPO
from rootenv import RootEnv

pexpect = pytest.importorskip("pexpect")

PROMPT = re.compile(r"^(alice|openclaw)\$ (.*)$")
EXIT_LINE = re.compile(r"^\(exit (\d+)\b.*\)$")
EXIT_SUFFIX = re.compile(r"^(.*?)\s{2,}\(exit (\d+)\b.*\)$")
TIME = re.compile(r"\b\d\d:\d\d:\d\d UTC\b")
CODE = re.compile(r"\b\d{6}\b")
EXAMPLE_SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
VALUES = {"github/token": b"ghp_abc123", "bank/password": b"hunter2", "openai/api-key": b"sk-readme-0123456789"}


def transcript(heading: str) -> "list[tuple[str, str, list[str], int]]":
    """(who, command, expected lines, expected exit) for each prompt line of the section's console block."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    steps: list = []
    for line in block.splitlines():
        prompt = PROMPT.match(line)
        if prompt:
            command = re.split(r"\s{2,}#|\s#\s", prompt.group(2))[0].strip()
            steps.append([prompt.group(1), command, [], 0])
            continue
        exit_line = EXIT_LINE.match(line)
        suffix = EXIT_SUFFIX.match(line)
        if exit_line:
            steps[-1][3] = int(exit_line.group(1))
        elif suffix:
            steps[-1][2].append(suffix.group(1))
            steps[-1][3] = int(suffix.group(2))
        else:
            steps[-1][2].append(line)
    return [tuple(step) for step in steps]


def matches(expected: "list[str]", actual: "list[str]") -> bool:
    """expected, where `...` stands for any run of lines, equals actual."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


class Session:
    """The README's world: alice, openclaw and host are the throwaway owner, agent and this machine."""

    def __init__(self, env: RootEnv, workdir: Path) -> None:
        self.env, self.workdir, self.codes = env, workdir, {}

    def code_for(self, readme_code: str) -> str:
        if readme_code not in self.codes:
            self.codes[readme_code] = self.env.code()
        return self.codes[readme_code]

    def normalise(self, text: str) -> "list[str]":
        for real, shown in ((self.env.owner_name, "alice"), (self.env.agent_name, "openclaw")):
            text = text.replace(real, shown)
        for readme_code, real in self.codes.items():
            text = text.replace(real, readme_code)
        if self.env.seed is not None:  # the README shows one example seed, whole and grouped
            real = totp.to_base32(self.env.seed.secret)
            text = text.replace(real, EXAMPLE_SEED)
            text = text.replace(" ".join(real[i:i + 4] for i in range(0, len(real), 4)),
                                " ".join(EXAMPLE_SEED[i:i + 4] for i in range(0, len(EXAMPLE_SEED), 4)))
        text = re.sub(r"\x1b\[[0-9;]*m", "", TIME.sub("HH:MM:SS UTC", text))
        text = re.sub(r"%40[^?]+\?", "%40host?", text)
        text = re.sub(r"\(\d+ changes\)", "(70 changes)", text)  # the install's options and what exists decide it
        # The installer names the front door by its path when a default PATH would not find it (the
        # test's PREFIX): shown as `clawgate`, its column of comments moved back by the difference.
        door = str(self.env.door)
        text = re.sub(re.escape(door) + r"(.*?) {%d}(  \()" % (len(door) - len("clawgate")), r"clawgate\1\2", text)
        text = text.replace(door, "clawgate")
        return [line.rstrip() for line in text.replace("\r\n", "\n").splitlines()]

    def run(self, who: str, command: str, expected: "list[str]") -> "tuple[int, str]":
        env = self.env
        if command.startswith("sudo ./install.sh"):
            result = env.install()
            return result.returncode, result.stdout.decode() + result.stderr.decode()
        if command == "clawgate enroll":
            return self.enroll(expected)
        command = CODE.sub(lambda m: self.code_for(m.group(0)), command)
        user = env.owner_name if who == "alice" else env.agent_name
        value = next((v for name, v in VALUES.items() if f"secrets set {name}" in command), b"")
        result = env.run_as(user, "/usr/bin/env", "-i", f"PATH={env.door.parent}:/usr/bin:/bin", "LANG=C.UTF-8",
                            "/bin/sh", "-c", f"cd {self.workdir} && {{ {command}\n}} 2>&1", input=value)
        return result.returncode, result.stdout.decode() + result.stderr.decode()

    def enroll(self, expected: "list[str]") -> "tuple[int, str]":
        """At a terminal, as a person: read the secret off the URI, type the current code."""
        status, shown, code = self.env.enroll_at_a_terminal()
        readme_code = next(CODE.search(line) for line in expected if "to confirm: " in line)
        if readme_code:
            self.codes[readme_code.group(0)] = code
        return status, shown


@pytest.mark.root
def test_the_readme_transcripts_are_what_clawgate_prints():
    owner_flow, agent_flow = transcript("The owner's flow"), transcript("The agent's flow")
    assert owner_flow[0][1].startswith("sudo ./install.sh") and any(c == "clawgate status" for _, c, _, _ in agent_flow)
    with RootEnv(install=False) as env:
        workdir = env.root / "alice"  # where alice keeps key.txt
        workdir.mkdir()
        shutil.chown(workdir, env.owner_name)
        (workdir / "key.txt").write_bytes(VALUES["openai/api-key"] + b"\n")
        session = Session(env, workdir)
        differences = []
        for who, command, expected, status in owner_flow + agent_flow:
            code, output = session.run(who, command, expected)
            actual = session.normalise(output)
            expected = [TIME.sub("HH:MM:SS UTC", line) for line in expected]
            if (code, matches(expected, actual)) != (status, True):
                differences.append(f"{who}$ {command}\nREADME:\n" + "\n".join(expected) + f"\n(exit {status})"
                                   "\nreal:\n" + "\n".join(actual) + f"\n(exit {code})")
        assert not differences, "\n\n".join(differences)


def test_the_transcript_reader_takes_exits_comments_and_excerpts():
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and matches(["..."], [])
    assert not matches(["a", "...", "d"], ["a", "b"]) and not matches(["a"], ["a", "b"])
    steps = transcript("The agent's flow")
    assert all(who in ("alice", "openclaw") for who, _, _, _ in steps)
    assert any(status == 3 for _, _, _, status in steps) and any(status == 1 for _, _, _, status in steps)
    assert not any("#" in command for _, command, _, _ in steps)
