"""What install.sh says: it asks only when it has something to do, its plan is one column, and a
dry run by someone other than root names what it could not compare instead of guessing."""

import io
import re

import pytest

from rootenv import INSTALL, RootEnv, run

pexpect = pytest.importorskip("pexpect")

PRESS = "Press RETURN to continue or any other key to abort: "


def at_terminal(env: RootEnv, *extra: str):
    argv = [a for a in env.install_argv(*extra) if a != "--yes"]
    child = pexpect.spawn(argv[0], argv[1:], timeout=120, encoding="utf-8", dimensions=(60, 200))
    child.logfile_read = io.StringIO()
    return child


def plan_rows(output: str) -> "list[str]":
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "This script will install clawgate" in line) + 1
    return [line for line in lines[start:] if line.startswith("    ") and ":" in line][:8]


@pytest.mark.root
def test_a_second_run_at_a_terminal_says_nothing_to_do_without_asking():
    with RootEnv() as env:
        child = at_terminal(env)
        child.expect(pexpect.EOF)
        child.close()
        shown = child.logfile_read.getvalue()
        assert child.exitstatus == 0, shown
        assert "already installed as asked; nothing to do" in shown
        assert PRESS not in shown and "==> Installing" not in shown


@pytest.mark.root
def test_a_first_run_at_a_terminal_asks_and_any_other_key_changes_nothing():
    with RootEnv(install=False) as env:
        child = at_terminal(env)
        child.expect_exact(PRESS)
        child.send("n")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus != 0
        assert "aborted; nothing was changed" in child.logfile_read.getvalue()
        assert not env.prefix.exists() and not env.sudoers.exists()

        child = at_terminal(env)
        child.expect_exact(PRESS)
        child.send("\r")
        child.expect(r"Installation successful \(\d+ changes\)")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0 and env.sudoers.exists()


@pytest.mark.root
def test_the_plan_is_one_column_whatever_the_names():
    with RootEnv(install=False, service=True) as env:
        result = run(env.install_argv("--dry-run"), input=None)
        rows = plan_rows(result.stdout.decode())
        assert len(rows) == 8 and "service (as the agent)" in rows[-1], result.stdout.decode()
        columns = {re.match(r"    .*?:\s+", row).end() for row in rows}
        assert len(columns) == 1, "\n".join(rows)


@pytest.mark.root
def test_a_dry_run_without_root_names_the_sudoers_file_it_cannot_compare():
    with RootEnv() as env:
        user_path = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # Debian's for a user: no sbin, so no visudo
        # From a copy the owner can read: the checkout may be root's alone (sudo make test under /root).
        result = env.run_as(env.owner_name, *env.install_argv("--dry-run", installer=env.readable_installer()),
                            env=user_path)
        out, err = result.stdout.decode(), result.stderr.decode()
        assert result.returncode == 0, out + err
        assert f"replace {env.sudoers}" not in out
        assert f"not compared without root: {env.sudoers} (readable by root only)" in out
        assert "runuser" not in err
        assert re.search(r"dry run: 0 changes would be made \(and maybe \d+ more\); nothing was changed", out), out
        as_root = run(env.install_argv("--dry-run"), input=None).stdout.decode()
        assert "dry run: 0 changes would be made; nothing was changed" in as_root


@pytest.mark.parametrize("port", ["22", "0", "65536", "80x"])
def test_a_proxy_port_the_owner_cannot_listen_on_is_refused_before_anything(port):
    """The proxy runs as the owner: below 1024 it could never bind, and the install would claim a
    service that cannot start. Checked before any change, even before root is asked for."""
    result = run(["bash", str(INSTALL), "--dry-run", "--owner", "nobody", "--proxy-port", port], input=None)
    assert result.returncode == 2 and result.stdout == b"", result
    assert result.stderr.decode().count("\n") == 1 and "--proxy-port must be a number from 1024 to 65535" in \
        result.stderr.decode()


@pytest.mark.root
def test_next_steps_name_the_front_door_by_its_path_when_no_default_path_finds_it():
    """A --prefix whose bin is not on a default PATH (the login shell's, sudo's secure_path): the
    next steps give PREFIX/bin/clawgate, on the first run and on a rerun, with the column held."""
    with RootEnv(install=False) as env:
        for _first_then_rerun in (1, 2):
            got = env.install()
            out = got.stdout.decode()
            assert got.returncode == 0, got.stderr
            steps = out.split("==> Next steps\n", 1)[1].splitlines()[:3]
            door = str(env.door)
            assert [s.split(": ", 1)[1].split("  ")[0].strip() for s in steps] == [
                f"{door} enroll", f"{door} secrets set NAME --tier T", f"sudo {door} doctor"], steps
            assert len({s.index("  (") for s in steps}) == 1, steps  # one column for the comments
            assert not any(" clawgate " in s.split("  (")[0] for s in steps), steps
