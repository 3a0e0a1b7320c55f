"""install.sh puts the manual pages and shell completions where man and the shells find them (and
the OpenBao guide beside them), lists them in the manifest, and --uninstall removes them; a
manifest naming any other file is refused."""

import os
import shutil
import stat

import pytest

from installtree import REPO
from rootenv import TEST_PATH, RootEnv, run
from test_completion import BASH_DRIVER, ZSH_DRIVER
from clawgate import installcheck

root = pytest.mark.root
SERVICE = "openclaw-gateway.service"


def shared(prefix) -> "dict[str, str]":
    return {installed: source for source, installed in installcheck.shared_files(str(prefix))}


def test_the_five_files_go_below_prefix_share():
    assert sorted(shared("/usr/local")) == [
        "/usr/local/share/bash-completion/completions/clawgate", "/usr/local/share/doc/clawgate/OPENBAO.md",
        "/usr/local/share/man/man1/clawgate.1", "/usr/local/share/man/man5/clawgate.conf.5",
        "/usr/local/share/zsh/site-functions/_clawgate"]
    for source in shared("/usr/local").values():
        assert (REPO / source).is_file(), source


def test_the_manifest_allows_exactly_those_files():
    base = "owner alice\nagent openclaw\n"
    good = base + "".join(f"file {path}\n" for path in shared("/opt/cg"))
    assert installcheck.manifest_problems(good, "/opt/cg", SERVICE) == []
    planted = ["/etc/passwd", "/opt/cg/bin/clawgate", "/opt/cg/share/man/man1/../../../../../etc/shadow",
               "/usr/local/share/man/man1/clawgate.1", "/opt/cg/share/man/man1/other.1", ""]
    bad = base + "".join(f"file {path}\n" for path in planted)
    assert installcheck.manifest_problems(bad, "/opt/cg", SERVICE) == [f"file {path}" for path in planted]


@root
def test_installed_pages_and_completions_work_and_uninstall_removes_them():
    with RootEnv() as env:
        files = shared(env.prefix)
        manifest = (env.prefix / "etc" / "clawgate" / "install.manifest").read_text().splitlines()
        for installed, source in files.items():
            st = os.lstat(installed)
            assert (stat.S_ISREG(st.st_mode), st.st_uid, stat.S_IMODE(st.st_mode)) == (True, 0, 0o644), installed
            assert open(installed, "rb").read() == (REPO / source).read_bytes()
            assert f"file {installed}" in manifest

        share = env.prefix / "share"
        page = run(["man", "-M", str(share / "man"), "clawgate"], env={"MANPAGER": "cat", "MANWIDTH": "80"})
        assert page.returncode == 0 and page.stderr == b"", page.stderr
        assert b"clawgate - TOTP-gated secrets" in page.stdout.replace(b"\xe2\x80\x90", b"-")
        conf = run(["man", "-M", str(share / "man"), "5", "clawgate.conf"], env={"MANPAGER": "cat"})
        assert conf.returncode == 0 and b"[ttl]" in conf.stdout, conf.stderr
        # With PREFIX/bin on the PATH and no MANPATH, man finds the page beside it by itself.
        found = run(["man", "-w", "clawgate"], env={"PATH": f"{env.prefix}/bin:{TEST_PATH}"})
        assert found.stdout.decode().strip() == str(share / "man" / "man1" / "clawgate.1"), found

        env.enroll_seed()
        env.set_secret("github/token", b"x", tier="open")
        path = {"PATH": f"{env.prefix}/bin:{TEST_PATH}"}
        bash_file = str(share / "bash-completion" / "completions" / "clawgate")

        def bash_completes(user, line):
            result = env.run_as(user, "bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "_", bash_file, line, env=path)
            assert result.returncode == 0 and result.stderr == b"", result.stderr
            return result.stdout.decode().splitlines()

        assert bash_completes(env.owner_name, "get ") == ["github/token"]
        assert bash_completes(env.owner_name, "sec") == ["secrets"]
        assert bash_completes(env.agent_name, "get ") == []  # never the agent's sudo
        assert bash_completes(env.agent_name, "revoke ") == ["@root"]
        if shutil.which("zsh"):
            zsh = env.run_as(env.owner_name, "zsh", "-f", "-c", ZSH_DRIVER, "_", str(share / "zsh" / "site-functions"),
                             "get ", env=path)
            assert zsh.stdout.decode().splitlines() == ["github/token"], zsh.stderr

        again = env.install()
        assert again.returncode == 0 and b"nothing to do" in again.stdout, again.stdout

        removed = env.uninstall(purge=True)
        assert removed.returncode == 0, removed.stderr
        out = removed.stdout.decode()
        for installed in files:
            assert f"remove {installed}" in out
            assert not os.path.lexists(installed)
        assert not share.exists()  # the directories it made for them went too


@root
def test_a_fresh_dry_run_shows_the_pages_and_completions_and_makes_none():
    with RootEnv(install=False) as env:
        plan = env.install("--dry-run")
        assert plan.returncode == 0, plan.stderr
        out = plan.stdout.decode()
        for installed in shared(env.prefix):
            assert f"would: install {installed} (root:root 0644)" in out
            assert not os.path.lexists(installed)


@root
def test_uninstall_refuses_a_manifest_that_names_another_file():
    """Whoever could add a line would have --uninstall delete any file as root."""
    with RootEnv() as env:
        victim = env.root / "victim"
        victim.write_text("keep me")
        manifest = env.prefix / "etc" / "clawgate" / "install.manifest"
        original = manifest.read_text()
        manifest.write_text(original + f"file {victim}\n")
        refused = env.uninstall(purge=False)
        assert refused.returncode == 6, refused.stdout + refused.stderr
        assert f"file {victim}".encode() in refused.stderr
        assert victim.read_text() == "keep me"
        assert env.door.exists()  # nothing at all was removed
        manifest.write_text(original)


def test_the_darwin_plan_installs_them_below_usr_local_share_each_step_once():
    from test_install_darwin import darwin_plan

    code, out, err = darwin_plan()
    assert code == 0, err
    steps = [line for line in out.splitlines() if line.startswith("would: ") and "/usr/local/share" in line]
    assert len(steps) == len(set(steps))
    for installed in shared("/usr/local"):
        assert f"would: install {installed} (root:wheel 0644)" in steps
