"""The one INI reader (config.read_ini) against configparser, which DESIGN.md names as the format.

read_ini must read as configparser reads, or refuse: a config that configparser would read one
way must never be read another way by clawgate. (Moved from test_lean.py with lean.py's reader.)
"""

import configparser
import random

import pytest

from clawgate import config as config_mod
from clawgate.config import read_ini
from clawgate.errors import UNSAFE, ClawgateError


# -- read_ini ------------------------------------------------------------------------------------

INSTALLED = """# clawgate configuration, written by install.sh (root 0644). Rerun install.sh to change it.
# Edits to [ttl] and [keychain] are kept across runs; a cap may be shortened, never lengthened.
[clawgate]
owner = alice
agent_user = openclaw
state_dir = /var/lib/clawgate
store = file

[ttl]
controlled = 4h
restricted = 15m
root = 30m

[service]
manager = systemd
path = /etc/systemd/system/openclaw-gateway.service
"""

INI_TEXTS = [
    INSTALLED,
    INSTALLED.replace("\n", "\r\n"),
    "[a]\nk=v\n", "[a]\nk: v\n", "[a]\nK = V\n", "[a]\nk = v = w\n", "[a]\nk = v: w\n", "[a]\nk: v = w\n",
    "[a]\nk =\n", "[a]\nk = \n", "[a]\nk = a # not a comment\n", "[a]\n; comment\n# comment\nk = v\n",
    "[a]\n   # indented comment\nk = v\n", "\n\n[a]\n\n\nk = v\n\n", "[a]\n[b]\nk = v\n", "[a b]\nk = v\n",
    "[ a ]\nk = v\n", "[a]\nk = %(x)s\n", "[a]\nk = v\n[a]\nj = w\n", "[a]\nk = 1\nk = 2\n", "[a]\nk = 1\nK = 2\n",
    "k = v\n", "[a]\njunk\n", "[a]\n= v\n", "[a]\n : v\n", "[a]\nk = v\n  continued\n", "[a]\nk = v\n\n  continued\n",
    "  [a]\nk = v\n", "[a]\n  k = v\n", "[DEFAULT]\nk = v\n[a]\nj = w\n", "[a] trailing\nk = v\n", "[a]]\nk = v\n",
    "[]\nk = v\n", "[a\nk = v\n", "[a]\nk\t=\tv\t\n", "[a]\nk = v\x0c\n", "[a]\nk = é\n", "\ufeff[a]\nk = v\n",
    "[a]\n[=x\n", "[a]\nk = v\r\nj = w\r\n", "[a]\nk = v\rj = w\r", "", "# only a comment\n",
]


def _configparser(text: str):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _normalised(text: str) -> str:
    # config.load opens the file in universal-newline mode, as configparser's read_file would.
    return text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.parametrize("text", INI_TEXTS, ids=range(len(INI_TEXTS)))
def test_read_ini_reads_as_configparser_does_or_refuses(text):
    text = _normalised(text)
    try:
        ours = read_ini(text)
    except ValueError:
        return  # refusing is always allowed: stricter than configparser, never different
    assert ours == _configparser(text)


def test_read_ini_refuses_what_configparser_refuses():
    for text in INI_TEXTS:
        text = _normalised(text)
        try:
            _configparser(text)
        except configparser.Error:
            with pytest.raises(ValueError):
                read_ini(text)


def test_read_ini_refuses_what_a_person_might_misread():
    for text in ["[a]\nk = v\n  continued\n", "[DEFAULT]\nk = v\n", "[a] trailing\n", "[a]\n  k = v\n",
                 "[a]]\nk = v\n"]:
        with pytest.raises(ValueError):
            read_ini(text)


def test_read_ini_accepts_what_install_sh_writes():
    assert read_ini(INSTALLED) == _configparser(INSTALLED)
    assert read_ini(INSTALLED)["clawgate"]["owner"] == "alice"


def test_read_ini_agrees_with_configparser_on_random_files():
    rng = random.Random(11)
    fragments = ["[clawgate]", "[ttl]", "[DEFAULT]", "[x y]", "owner = alice", "Owner: bob", "root = 30m",
                 "k = v = w", "k:", "= v", "# c", "; c", "  indented = 1", "\t[ttl]", "", "   ", "junk",
                 "[a]]", "[b] t", "key=value", "KEY = dup", "owner = dup", "x: y: z", "é = ü"]
    for _ in range(4000):
        text = "\n".join(rng.choice(fragments) for _ in range(rng.randint(0, 7))) + "\n"
        try:
            expected = _configparser(text)
        except configparser.Error:
            expected = None
        try:
            ours = read_ini(text)
        except ValueError:
            continue  # refused: allowed whatever configparser thinks
        assert expected is not None and ours == expected, text


def test_a_config_read_ini_refuses_is_exit_6(tmp_path):
    path = tmp_path / "clawgate.conf"
    path.write_text("[clawgate]\nowner = root\n  continued\n")
    path.chmod(0o644)
    with pytest.raises(ClawgateError) as refused:
        config_mod.load(str(path))
    assert refused.value.code == UNSAFE
    assert "not a valid config (line 3: indented" in refused.value.message
