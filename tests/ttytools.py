"""Driving a clawgate program on a real terminal (pexpect): what the prompt tests share."""

import io

import pytest

pexpect = pytest.importorskip("pexpect")


def spawn(tree, prog, *args, as_agent=False):
    """PROG of the tree on a pty; child.logfile_read holds everything the terminal showed."""
    child = pexpect.spawn(str(tree.libexec / prog), list(args), env=tree.env(as_agent), timeout=20,
                          encoding="utf-8", codec_errors="replace", dimensions=(60, 200))
    child.logfile_read = io.StringIO()
    return child


def finish(child):
    """The exit status, once the program has ended."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def enter_twice(child, name, first, second=None):
    """Answer `secrets set NAME`'s two hidden prompts, checking that neither echoes."""
    for prompt, text in ((f"value for {name}: ", first), ("again, to confirm: ", first if second is None else second)):
        child.expect_exact(prompt)
        assert child.waitnoecho(timeout=10), "the terminal still echoes"
        child.sendline(text)
