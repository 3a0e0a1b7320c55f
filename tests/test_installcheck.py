"""lib/clawgate/installcheck.py: install.sh's Python, shared with doctor (one chain check, one INI
reader). install.sh runs it as a script from the source tree with -I, before anything is installed."""

import grp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clawgate import installcheck

SCRIPT = Path(__file__).resolve().parent.parent / "lib" / "clawgate" / "installcheck.py"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def run(*args, input=""):
    return subprocess.run([sys.executable, "-I", "-B", str(SCRIPT), *args], input=input, capture_output=True,
                          text=True)


@pytest.fixture
def safe_dir(tmp_path):
    # tmp_path's own parents (/tmp is 1777) are not a safe chain: build one under a 0755 root-owned dir.
    top = tmp_path / "top"
    top.mkdir(mode=0o755)
    return top


def _problems_below(path, top, **kw):
    return [p for p in installcheck.chain_problems(str(path), (os.geteuid(),), **kw) if p.startswith(str(top))]


def test_a_safe_chain_has_no_problems(safe_dir):
    (safe_dir / "a").mkdir(mode=0o755)
    assert _problems_below(safe_dir / "a", safe_dir) == []


def test_a_link_a_loose_mode_and_a_missing_part_are_each_a_problem(safe_dir):
    (safe_dir / "real").mkdir(mode=0o755)
    (safe_dir / "link").symlink_to(safe_dir / "real")
    assert _problems_below(safe_dir / "link", safe_dir) == [f"{safe_dir}/link: is a symbolic link"]
    (safe_dir / "real").chmod(0o775)
    assert _problems_below(safe_dir / "real", safe_dir) == [
        f"{safe_dir}/real: writable by group or others (mode 0775)"]
    missing = safe_dir / "nothing" / "here"
    assert _problems_below(missing, safe_dir, missing_ok=True) == []
    assert _problems_below(missing, safe_dir)[0].startswith(f"{missing}: ")


@needs_root
def test_a_part_owned_by_someone_else_is_a_problem(safe_dir):
    (safe_dir / "theirs").mkdir(mode=0o755)
    os.chown(safe_dir / "theirs", 65534, 65534)
    assert _problems_below(safe_dir / "theirs", safe_dir) == [f"{safe_dir}/theirs: owned by nobody"]


@pytest.mark.root  # the chain passes only root's directories: a user's own temp dir is already a problem
def test_the_chain_command_prints_problems_and_exits_1(safe_dir):
    (safe_dir / "open").mkdir()
    (safe_dir / "open").chmod(0o777)
    result = run("chain", str(safe_dir / "open"))
    assert result.returncode == 1 and f"{safe_dir}/open: writable by group or others (mode 0777)" in result.stdout


def test_keep_carries_only_the_owners_sections_through_the_one_ini_reader(tmp_path):
    conf = tmp_path / "clawgate.conf"
    conf.write_text("[clawgate]\nowner = a\n[ttl]\ncontrolled = 1h\n[keychain]\npath = /k\n[service]\nmanager = none\n")
    result = run("keep", str(conf))
    assert result.returncode == 0
    assert result.stdout == "\n[ttl]\ncontrolled = 1h\n\n[keychain]\npath = /k\n"


@pytest.mark.parametrize("text", ["[ttl]\ncontrolled = 1h\n  continued\n", "\xff", "[ttl\n"])
def test_keep_carries_nothing_from_a_config_it_cannot_read(tmp_path, text):
    conf = tmp_path / "clawgate.conf"
    conf.write_bytes(text.encode("latin-1"))
    assert run("keep", str(conf)).stdout == ""
    assert run("keep", str(tmp_path / "missing.conf")).stdout == ""


def test_manifest_refuses_what_install_sh_does_not_make():
    good = "owner alice\nagent openclaw\nuser openclaw\nsudoers /etc/sudoers.d/clawgate-openclaw\n" \
           "state /var/lib/clawgate\nhome /opt/openclaw\ndir /opt/cg/bin\n"
    assert installcheck.manifest_problems(good, "/opt/cg", "openclaw-gateway.service") == []
    bad = good + "user alice\nsudoers /etc/sudoers\nstate /etc\ndir /\nsomething else\n"
    assert installcheck.manifest_problems(bad, "/opt/cg", "openclaw-gateway.service") == [
        "user alice", "sudoers /etc/sudoers", "state /etc", "dir /", "something else"]


def test_render_service_quotes_for_systemd_and_escapes_for_launchd():
    argv = ["/usr/bin/openclaw", "gateway", "a b", "100%", "<x>"]
    systemd = installcheck.render_service("systemd", "ExecStart=@EXEC_START@\nUser=@AGENT@", "oc", "g", "/h", argv)
    assert systemd == 'ExecStart=/usr/bin/openclaw gateway "a b" "100%%" "<x>"\nUser=oc'
    plist = installcheck.render_service("launchd", "@PROGRAM_ARGUMENTS@", "oc", "g", "/h", argv)
    assert "<string>&lt;x&gt;</string>" in plist


def test_bad_arguments_are_exit_2_without_a_traceback():
    for args in ([], ["no-such-command"], ["chain"], ["free-id", "x", "y"], ["chain", "/", "no-such-user-zz"]):
        result = run(*args)
        assert result.returncode == 2, (args, result)
        assert "Traceback" not in result.stderr


def test_free_id_and_ordinary_dir():
    assert run("free-id", "401", "403", input="a 401\nb 402\n").stdout == "403\n"
    assert run("ordinary-dir", "/usr/local/x").returncode == 1
    assert run("ordinary-dir", "/opt/openclaw").returncode == 0


@pytest.mark.root
def test_give_leaves_out_a_link_to_a_third_users_file_and_copies_a_multi_linked_one(tmp_path):
    """Where no kernel rule stops it (macOS has no protected_hardlinks), the agent could link root's
    file into the tree it hands back: the owner must get neither the file nor a copy of it."""
    import pwd as pwd_mod

    from clawgate import installcheck

    nobody = pwd_mod.getpwnam("nobody")
    tree, elsewhere = tmp_path / "tree", tmp_path / "elsewhere"
    tree.mkdir()
    elsewhere.mkdir()
    (elsewhere / "root-only").write_text("root's")
    os.chmod(elsewhere / "root-only", 0o600)
    os.link(elsewhere / "root-only", tree / "planted")
    (tree / "mine").write_text("agent's")
    os.link(tree / "mine", elsewhere / "kept-by-agent")
    for path in (tree, tree / "mine"):
        os.chown(path, 4242, 4242)  # the agent's
    tmp_path.chmod(0o755)
    assert installcheck.cmd_give(str(tree), "nobody", grp.getgrgid(nobody.pw_gid).gr_name) == 0
    assert not (tree / "planted").exists() and (elsewhere / "root-only").stat().st_uid == 0
    st = (tree / "mine").stat()
    assert (st.st_uid, st.st_nlink, (tree / "mine").read_text()) == (nobody.pw_uid, 1, "agent's")
    assert (elsewhere / "kept-by-agent").stat().st_uid == 4242


@pytest.mark.root
def test_give_does_not_copy_a_huge_sparse_file_with_other_links(tmp_path):
    """A sparse terabyte the agent links elsewhere would fill the disk in the middle of --uninstall."""
    import pwd as pwd_mod

    nobody = pwd_mod.getpwnam("nobody")
    tree = tmp_path / "tree"
    tree.mkdir()
    with open(tree / "huge", "wb") as handle:
        handle.truncate(1 << 40)
    os.link(tree / "huge", tmp_path / "agents-link")
    tmp_path.chmod(0o755)
    assert installcheck.cmd_give(str(tree), "nobody", grp.getgrgid(nobody.pw_gid).gr_name) == 0
    assert not (tree / "huge").exists() and (tmp_path / "agents-link").stat().st_size == 1 << 40
