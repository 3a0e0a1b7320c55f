"""completion/clawgate.bash and completion/_clawgate, driven for real: the verbs and each verb's
flags equal the one help table's, and secret names are offered to the owner only, by running the
owner's own `clawgate list --json` and nothing else."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from installtree import REPO
from clawgate import helptext

BASH_COMPLETION = REPO / "completion" / "clawgate.bash"
ZSH_COMPLETION = REPO / "completion" / "_clawgate"
FLAG = re.compile(r"--[a-z][a-z-]*")

# Sources the file and completes the words in $1 (the last one being completed, maybe empty).
BASH_DRIVER = r'''
source "$1"
read -ra COMP_WORDS <<<"clawgate $2"
[[ $2 == *" " || -z $2 ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_clawgate
[[ ${#COMPREPLY[@]} -eq 0 ]] || printf '%s\n' "${COMPREPLY[@]}"
'''

# zsh's completion builtins exist only inside a completion widget: compadd, _files and _normal are
# stood in for by functions that print what the real ones would be given. zsh filters by prefix.
ZSH_DRIVER = r'''
compadd() { while [[ $# -gt 0 && $1 != -- ]]; do shift; done; shift; (( $# == 0 )) || print -rl -- "$@"; }
_files() { print -r -- "<files>"; }
_normal() { print -r -- "<command>"; }
fpath=($1 $fpath)
autoload -Uz _clawgate
words=(${(z)2}); [[ $2 == *' ' || -z $2 ]] && words+=('')
words=(clawgate "${(@)words}")
CURRENT=${#words}
_clawgate
'''


def complete_bash(line: str, path: Path = BASH_COMPLETION, env=None) -> "list[str]":
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "_", str(path), line],
                            capture_output=True, env=env or {"PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    return result.stdout.decode().splitlines()


def complete_zsh(line: str, directory: Path = ZSH_COMPLETION.parent, env=None) -> "list[str]":
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed (apt-get install zsh; .ci/run installs it)")
    result = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "_", str(directory), line],
                            capture_output=True, env=env or {"PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.stderr == b"", result.stderr
    current = line.split(" ")[-1]
    return [word for word in result.stdout.decode().splitlines() if word.startswith(current)]


SHELLS = {"bash": complete_bash, "zsh": complete_zsh}


def where_flags_go(topic: str) -> str:
    """The words before a flag of the help topic: `secrets set`, `audit show`, `notify set`, `list`."""
    return {"audit": "audit show", "notify": "notify set"}.get(topic, topic)


def completion_topics() -> "list[str]":
    # `secrets init` is the installer's own step (install.sh runs it), never typed by a person.
    return sorted(topic for topic in helptext.HELP if topic not in ("secrets", "secrets init"))


@pytest.mark.parametrize("shell", SHELLS)
def test_the_verbs_are_the_help_tables(shell):
    assert sorted(SHELLS[shell]("")) == sorted(helptext.VERBS + ["--help", "--version"])
    assert SHELLS[shell]("se") == ["secrets"]


@pytest.mark.parametrize("shell", SHELLS)
def test_the_secrets_verbs_are_the_help_tables(shell):
    table = {topic.split()[1] for topic in helptext.HELP if topic.startswith("secrets ")} - {"init"}
    assert set(SHELLS[shell]("secrets ")) == table
    assert set(SHELLS[shell]("help secrets ")) == table
    assert set(SHELLS[shell]("help ")) == set(helptext.VERBS)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_route_verbs_are_the_help_tables(shell):
    table = {topic.split()[1] for topic in helptext.HELP if topic.startswith("route ")}
    assert set(SHELLS[shell]("route ")) == table
    assert set(SHELLS[shell]("help route ")) == table


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("topic", completion_topics())
def test_each_verbs_flags_are_the_help_tables(shell, topic):
    wanted = set(FLAG.findall(helptext.HELP[topic])) | {"--help"}
    assert set(SHELLS[shell](where_flags_go(topic) + " -")) == wanted


@pytest.mark.parametrize("shell", SHELLS)
def test_tiers_and_fixed_words(shell):
    complete = SHELLS[shell]
    assert set(complete("secrets set x --tier ")) == {"open", "controlled", "restricted"}
    assert set(complete("secrets tier x ")) == {"open", "controlled", "restricted"}
    assert complete("elevate ") == ["session"]
    assert set(complete("notify ")) == {"set", "test", "show", "off"}
    assert set(complete("audit ")) == {"show", "verify"}
    assert complete("revoke ") == ["@root"]  # not the owner here: no names


def test_bash_completes_a_command_after_the_double_dash():
    assert "apt-get" in complete_bash("elevate session -- apt-g") or not shutil.which("apt-get")
    assert "sh" in complete_bash("run --env A=b -- s")


def test_zsh_hands_the_command_after_the_double_dash_to_zsh():
    assert complete_zsh("elevate session -- ") == ["<command>"]


# -- secret names: the owner's only -----------------------------------------------------------

def fake_install(tmp_path: Path, owner: str) -> Path:
    """PREFIX/bin/clawgate that answers `list --json` and notes every run, beside a config naming owner."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "etc" / "clawgate").mkdir(parents=True)
    (prefix / "etc" / "clawgate" / "clawgate.conf").write_text(
        f"[clawgate]\nowner = {owner}\nagent_user = openclaw\nstate_dir = /var/lib/clawgate\n")
    door = prefix / "bin" / "clawgate"
    door.write_text(f"#!/bin/sh\necho \"$*\" >>{tmp_path}/ran\n"
                    "echo '[{\"name\": \"github/token\", \"tier\": \"open\"}, {\"name\": \"db.pass\", \"tier\": null}]'\n")
    door.chmod(0o755)
    return prefix


def me() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


@pytest.mark.parametrize("shell", SHELLS)
def test_the_owner_is_offered_the_secret_names(shell, tmp_path):
    prefix = fake_install(tmp_path, owner=me())
    env = {"PATH": f"{prefix}/bin:/usr/bin:/bin"}
    complete = SHELLS[shell]
    assert sorted(complete("get ", env=env)) == ["db.pass", "github/token"]
    assert complete("get gi", env=env) == ["github/token"]
    assert sorted(complete("approve ", env=env)) == ["@root", "db.pass", "github/token"]
    assert sorted(complete("secrets rm ", env=env)) == ["db.pass", "github/token"]
    assert sorted(complete("route add x --secret ", env=env)) == ["db.pass", "github/token"]
    assert (tmp_path / "ran").read_text().splitlines() == ["list --json"] * 5


@pytest.mark.parametrize("shell", SHELLS)
def test_anyone_else_is_offered_no_names_and_nothing_is_run(shell, tmp_path):
    """The agent's `list` would go through sudo: completion must not start it, nor anything else."""
    prefix = fake_install(tmp_path, owner="someone-else")
    env = {"PATH": f"{prefix}/bin:/usr/bin:/bin"}
    complete = SHELLS[shell]
    assert complete("get ", env=env) == []
    assert complete("revoke ", env=env) == ["@root"]
    assert complete("secrets set ", env=env) == []
    assert complete("route add x --secret ", env=env) == []
    assert not (tmp_path / "ran").exists()


def test_the_files_register_themselves_for_clawgate():
    """bash: the `complete` line; zsh: the #compdef line that compinit reads from the fpath."""
    bash = subprocess.run(["bash", "--norc", "-c", 'source "$1"; complete -p clawgate', "_", str(BASH_COMPLETION)],
                          capture_output=True)
    assert bash.stdout.decode().strip() == "complete -F _clawgate clawgate"
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed (apt-get install zsh; .ci/run installs it)")
    zsh = subprocess.run(["zsh", "-f", "-c", 'fpath=($1 $fpath); autoload -Uz compinit; compinit -u -D; '
                          'print -r -- $_comps[clawgate]', "_", str(ZSH_COMPLETION.parent)],
                         capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert zsh.stdout.decode().strip() == "_clawgate", zsh.stderr
