"""man/clawgate.1 and man/clawgate.conf.5: every verb of the one help table and every key the config
reader takes has its entry, and man renders both without a warning."""

import ast
import os
import re
import shutil
import subprocess

import pytest

from installtree import REPO
from clawgate import helptext

PAGE = REPO / "man" / "clawgate.1"
CONF_PAGE = REPO / "man" / "clawgate.conf.5"
FLAG = re.compile(r"--[a-z][a-z-]*")


def rendered(page) -> str:
    """The page as a reader sees it: plain text, no overstrike, one long line per paragraph."""
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (apt-get install groff-base; .ci/run installs it)")
    result = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=400n", str(page)],
                            capture_output=True, env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"})
    assert result.returncode == 0, result.stderr
    # groff writes - as U+2010 (hyphen) or U+2212 (minus); a reader types an ASCII -.
    return result.stdout.decode().replace("\u2010", "-").replace("\u2212", "-")


def config_keys() -> "set[tuple[str, str]]":
    """(section, key) of every key lib/clawgate/config.py reads, found in its source, plus the
    [service] keys that doctor reads from the section config.py hands over whole."""
    source = (REPO / "lib" / "clawgate" / "config.py").read_text()
    keys = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("get", "_value"):
            literals = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            if len(literals) >= 2:
                keys.add((literals[0], literals[1]))
    from clawgate import config
    keys |= {("ttl", tier) for tier in config.MAX_TTL}
    doctor = (REPO / "bin" / "doctor").read_text()
    keys |= {("service", key) for key in re.findall(r'cfg\.service\.get\("([a-z_]+)"', doctor)}
    return keys


def test_the_config_source_is_read_as_expected():
    """The key finder itself: if config.py's shape changed, the next test would check nothing."""
    keys = config_keys()
    assert {("clawgate", "owner"), ("clawgate", "agent_user"), ("clawgate", "state_dir"), ("clawgate", "store"),
            ("ttl", "root"), ("keychain", "path"), ("keychain", "security"), ("service", "manager")} <= keys


def test_every_config_key_has_its_entry_in_its_section_of_clawgate_conf_5():
    text = rendered(CONF_PAGE)
    sections = re.split(r"^   \[([a-z]+)\]$", text, flags=re.M)
    documented = {sections[i]: sections[i + 1] for i in range(1, len(sections), 2)}
    for section, key in sorted(config_keys()):
        assert section in documented, f"[{section}] has no subsection in clawgate.conf(5)"
        assert re.search(rf"^       {key} = ", documented[section], re.M), f"[{section}] {key} is not documented"


def test_every_verb_of_the_help_table_has_its_entry_in_clawgate_1():
    text = rendered(PAGE)
    commands = text.split("\nCOMMANDS\n", 1)[1].split("\nEXIT STATUS\n", 1)[0]
    for topic in helptext.HELP:
        assert re.search(rf"^       {re.escape(topic)}(\s|$)", commands, re.M), f"{topic} has no entry in clawgate(1)"
    assert set(helptext.VERBS) <= {topic.split()[0] for topic in helptext.HELP}


@pytest.mark.parametrize("topic", sorted(helptext.HELP))
def test_every_flag_of_the_help_table_is_in_clawgate_1(topic):
    text = rendered(PAGE)
    for flag in FLAG.findall(helptext.HELP[topic]):
        assert flag in text, f"{topic}: {flag} is not in clawgate(1)"


def test_clawgate_1_has_the_exit_codes_the_version_and_the_installed_files():
    text = rendered(PAGE)
    status = text.split("\nEXIT STATUS\n", 1)[1].split("\nENVIRONMENT\n", 1)[0]
    for code, words in enumerate(["ok", "denied", "usage", "approval required", "no such secret", "locked out",
                                  "unsafe or incomplete installation"]):
        assert re.search(rf"^       {code}\s+{words}", status, re.M), f"exit {code} ({words})"
    assert "--version" in text
    files = text.split("\nFILES\n", 1)[1].split("\nEXAMPLES\n", 1)[0]
    for path in ("PREFIX/bin/clawgate", "PREFIX/libexec/clawgate/", "PREFIX/etc/clawgate/clawgate.conf",
                 "/var/lib/clawgate", "/etc/sudoers.d/clawgate-AGENT", "PREFIX/share/man/man1/clawgate.1",
                 "PREFIX/share/bash-completion/completions/clawgate", "PREFIX/share/zsh/site-functions/_clawgate"):
        assert path in files, path
    for section in ("SEE ALSO", "ENVIRONMENT", "SYNOPSIS"):
        assert f"\n{section}\n" in text


@pytest.mark.parametrize("page", [PAGE, CONF_PAGE], ids=lambda page: page.name)
def test_man_renders_the_page_without_a_warning(page):
    if not shutil.which("man"):
        pytest.skip("man is not installed (apt-get install man-db; .ci/run installs it)")
    result = subprocess.run(["man", "--warnings=w,all", "-l", str(page)], capture_output=True,
                            env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "MANPAGER": "cat", "MANWIDTH": "80"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert b"clawgate" in result.stdout


@pytest.mark.parametrize("page", [PAGE, CONF_PAGE], ids=lambda page: page.name)
def test_mandoc_lint_finds_nothing(page):
    if not shutil.which("mandoc"):
        pytest.skip("mandoc is not installed (groff's check above covers the page)")
    result = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", str(page)], capture_output=True)
    assert result.stdout + result.stderr == b""
