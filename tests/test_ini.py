"""The one INI reader (config.read_ini) against configparser, which DESIGN.md names as the format.

read_ini must read as configparser reads, or refuse: a config that configparser would read one
way must never be read another way by clawgate. (Moved from test_lean.py with lean.py's reader.)
"""

import configparser
import os
import pwd
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


# -- config.load: checked and read through one descriptor ----------------------------------------

CONFIG = "[clawgate]\nowner = {owner}\nagent_user = {agent}\nstate_dir = /var/lib/clawgate\n"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")


def _config(tmp_path, owner="nobody", agent="daemon", uid=None):
    path = tmp_path / "clawgate.conf"
    path.write_text(CONFIG.format(owner=owner, agent=agent))
    path.chmod(0o644)
    if uid is not None:
        os.chown(path, uid, 0)
    return path


def _refused(path) -> str:
    with pytest.raises(ClawgateError) as refused:
        config_mod.load(str(path))
    assert refused.value.code == UNSAFE
    return refused.value.message


@needs_root
def test_a_config_owned_by_root_or_the_owner_it_names_is_read(tmp_path):
    assert config_mod.load(str(_config(tmp_path, uid=0))).owner.name == "nobody"
    path = _config(tmp_path, uid=pwd.getpwnam("nobody").pw_uid)
    assert config_mod.load(str(path)).agent.name == "daemon"


@needs_root
def test_a_config_owned_by_anyone_else_is_refused_even_the_one_who_runs(tmp_path):
    path = _config(tmp_path, uid=pwd.getpwnam("daemon").pw_uid)  # the agent's own config
    assert "owned by uid" in _refused(path)
    os.chown(path, 54321, 0)
    assert "owned by uid 54321" in _refused(path)


def test_a_config_writable_by_others_or_not_a_file_is_refused(tmp_path):
    path = _config(tmp_path)
    path.chmod(0o666)
    assert "writable by others" in _refused(path)
    link = tmp_path / "link.conf"
    link.symlink_to(path)
    path.chmod(0o644)
    assert "cannot open safely" in _refused(link)
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo, 0o644)
    assert "not a regular file" in _refused(fifo)  # and the open did not hang
    assert "missing" in _refused(tmp_path / "nothing.conf")
