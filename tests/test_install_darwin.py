"""The macOS install as a Mac user meets it, shown as a `--target-os darwin --dry-run` plan.

No Mac runs here: dscl, launchctl, xcode-select and the /usr/bin/python3 shim are the fakes in
tests/fakes/ (never installed), each printing what Apple's tools print. launchd/load-job, the
script install.sh runs to (re)load the daemon, runs for real against the fake launchctl.
"""

import os
import plistlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from installtree import REPO
from rootenv import INSTALL, run

FAKES = REPO / "tests" / "fakes"
LOAD_JOB = REPO / "launchd" / "load-job"
PLIST = "/Library/LaunchDaemons/ai.openclaw.gateway.plist"
MANIFEST = "/usr/local/etc/clawgate/install.manifest"
SYSTEM_PATH = ["/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]


def darwin_plan(*extra, gateway="/opt/homebrew/bin/openclaw gateway", **fake_env):
    argv = ["bash", str(INSTALL), "--dry-run", "--target-os", "darwin", "--owner", "alice",
            "--gateway-command", gateway, *extra]
    env = {"CLAWGATE_DSCL": str(FAKES / "dscl"), "CLAWGATE_XCODE_SELECT": str(FAKES / "xcode-select")}
    env.update(fake_env)
    result = run(argv, env=env)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def plist_of(out):
    text = re.search(rf"^--- begin {PLIST}\n(.*?)^--- end {PLIST}$", out, re.S | re.M).group(1)
    return plistlib.loads(text.encode())


# -- 1. the service finds node ---------------------------------------------------------------------

def test_plist_path_names_the_gateway_dir_the_real_node_dir_homebrew_and_the_system(tmp_path):
    """npm's and Homebrew's openclaw is `#!/usr/bin/env node`; launchd's own PATH has no node."""
    bindir, nodedir = tmp_path / "bin", tmp_path / "Cellar" / "node" / "22" / "bin"
    bindir.mkdir()
    nodedir.mkdir(parents=True)
    (bindir / "openclaw").write_text("#!/usr/bin/env node\n")
    (nodedir / "node").write_text("#!/bin/sh\n")
    for program in (bindir / "openclaw", nodedir / "node"):
        program.chmod(0o755)
    (bindir / "node").symlink_to(nodedir / "node")
    code, out, err = darwin_plan(gateway=f"{bindir}/openclaw gateway --port 18789")
    assert code == 0, err
    env = plist_of(out)["EnvironmentVariables"]
    assert env["PATH"].split(":") == [str(bindir), str(nodedir)] + SYSTEM_PATH
    assert env["OPENCLAW_SERVICE_REPAIR_POLICY"] == "external"
    assert env["HOME"] == "/opt/openclaw"


def test_plist_path_without_a_node_beside_it_still_has_homebrew_and_the_system():
    code, out, err = darwin_plan()
    assert code == 0, err
    env = plist_of(out)["EnvironmentVariables"]
    assert env["PATH"].split(":") == SYSTEM_PATH  # /opt/homebrew/bin is the gateway's own directory


# -- 2. the Command Line Tools and the python3 shim ------------------------------------------------

@pytest.mark.parametrize("developer, told", [
    ("none", "xcode-select --install"),
    ("unlicensed", "sudo xcodebuild -license accept"),
    ("clt13", "Python 3.8; clawgate needs 3.9 or later"),
])
def test_without_usable_developer_tools_the_plan_stops_first_and_says_the_fix(developer, told):
    code, out, err = darwin_plan("--python", str(FAKES / "python3"), CLAWGATE_FAKE_DEVELOPER=developer)
    assert code == 6, out + err
    assert told in err
    assert "would:" not in out and "system directory" not in err
    assert err.count("\n") == 1 or developer == "none"  # one line of ours (the shim's own dialog text aside)


def test_with_the_command_line_tools_14_the_plan_goes_through():
    code, out, err = darwin_plan("--python", str(FAKES / "python3"), CLAWGATE_FAKE_DEVELOPER="clt14")
    assert code == 0, err
    assert "would: create the hidden user openclaw" in out


def test_an_interpreter_that_cannot_run_the_helper_stops_with_that_reason():
    """canonical() used to ignore its helper's failure: the run ended on '--agent-home : a system directory'."""
    argv = ["bash", str(INSTALL), "--dry-run", "--owner", "nobody", "--python", str(FAKES / "python3")]
    result = run(argv, env={"CLAWGATE_FAKE_DEVELOPER": "none"})
    assert result.returncode == 6
    assert b"cannot run the installer's helper" in result.stderr
    assert b"system directory" not in result.stderr


# -- 3. a reinstall survives launchd's drain -------------------------------------------------------

def load_job(tmp_path, *args, **hooks):
    state = tmp_path / "launchd"
    state.mkdir(exist_ok=True)
    env = {"CLAWGATE_LAUNCHCTL": str(FAKES / "launchctl"), "CLAWGATE_FAKE_LAUNCHCTL_STATE": str(state)}
    env.update({f"CLAWGATE_FAKE_LAUNCHCTL_{key.upper()}": str(value) for key, value in hooks.items()})
    result = run([str(LOAD_JOB), *args, "ai.openclaw.gateway", PLIST], env=env)
    log = (state / "log").read_text().splitlines() if (state / "log").exists() else []
    return result, [line.split()[1] for line in log], state


def test_reload_waits_for_the_old_job_to_drain_then_enables_and_bootstraps(tmp_path):
    (tmp_path / "launchd").mkdir()
    (tmp_path / "launchd" / "loaded").touch()  # the job of the install before
    result, verbs, state = load_job(tmp_path, drain=3)
    assert result.returncode == 0, result.stderr
    assert verbs == ["bootout", "print", "print", "print", "print", "enable", "bootstrap"]
    assert (state / "loaded").exists()


def test_bootstrap_failing_with_5_is_retried_once(tmp_path):
    (tmp_path / "launchd").mkdir()
    (tmp_path / "launchd" / "loaded").touch()
    result, verbs, state = load_job(tmp_path, race=1)
    assert result.returncode == 0, result.stderr
    assert verbs.count("bootstrap") == 2 and verbs.index("enable") < verbs.index("bootstrap")
    assert b"trying once more" in result.stderr
    assert (state / "loaded").exists()


def test_bootstrap_is_retried_only_once(tmp_path):
    (tmp_path / "launchd").mkdir()
    (tmp_path / "launchd" / "loaded").touch()
    result, verbs, state = load_job(tmp_path, race=2)
    assert result.returncode == 5
    assert verbs.count("bootstrap") == 2
    assert b"Bootstrap failed: 5: Input/output error" in result.stderr
    assert not (state / "loaded").exists()


def test_first_load_of_a_job_never_loaded_needs_no_retry(tmp_path):
    result, verbs, _ = load_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert verbs == ["bootout", "print", "enable", "bootstrap"]


def test_the_plan_shows_the_reload_steps_from_load_job_itself(tmp_path):
    code, out, err = darwin_plan()
    assert code == 0, err
    steps = [line for line in out.splitlines() if line.startswith("would: ") and "launchctl" in line
             and "ai.clawgate.proxy" not in line][1:]
    assert steps == [
        "would: launchctl bootout system/ai.openclaw.gateway",
        "would: wait until launchctl print system/ai.openclaw.gateway no longer finds it (at most 10 s)",
        "would: launchctl enable system/ai.openclaw.gateway",
        f"would: launchctl bootstrap system {PLIST}",
    ]
    result, verbs, _ = load_job(tmp_path, "--dry-run")
    assert result.returncode == 0 and verbs == []  # a dry run asks launchctl nothing


# -- 4. dscl refused by TCC: before any change; the user listed before the first dscl -create -------

@pytest.mark.root  # the probe writes (a no-op), so it is asked only as root
def test_a_dscl_refusal_stops_the_install_before_any_change(tmp_path):
    log = tmp_path / "dscl.log"
    code, out, err = darwin_plan(CLAWGATE_FAKE_DSCL_TCC="deny", CLAWGATE_FAKE_DSCL_LOG=str(log))
    assert code == 1, out + err
    assert "Full Disk Access" in err and "nothing was changed" in err
    assert "would:" not in out
    calls = log.read_text().splitlines()
    assert calls == ["dscl . -read /Users/nobody NFSHomeDirectory",
                     "dscl . -change /Users/nobody NFSHomeDirectory /var/empty /var/empty"]


@pytest.mark.root
def test_the_probe_passes_when_dscl_may_write(tmp_path):
    log = tmp_path / "dscl.log"
    code, out, err = darwin_plan(CLAWGATE_FAKE_DSCL_LOG=str(log))
    assert code == 0, err
    assert "dscl . -change /Users/nobody NFSHomeDirectory /var/empty /var/empty" in log.read_text()
    assert not [line for line in log.read_text().splitlines() if " -create " in line]  # a dry run creates nothing


def test_the_user_is_listed_in_the_manifest_before_the_first_dscl_create():
    code, out, err = darwin_plan()
    assert code == 0, err
    lines = out.splitlines()
    listed = lines.index(f"would: list user openclaw in {MANIFEST}")
    first_create = next(i for i, line in enumerate(lines) if line.startswith("would: dscl . -create"))
    assert listed < first_create


def test_the_dscl_commands_shown_are_the_ones_create_user_darwin_runs():
    """One code path prints or runs each: the shown list once lacked RealName, which the code set."""
    code, out, err = darwin_plan()
    assert code == 0, err
    shown = [line[len("would: dscl . -create "):] for line in out.splitlines()
             if line.startswith("would: dscl . -create ")]
    assert shown == [
        "/Groups/openclaw", "/Groups/openclaw PrimaryGroupID 405", "/Groups/openclaw Password *",
        "/Users/openclaw", "/Users/openclaw UniqueID 405", "/Users/openclaw PrimaryGroupID 405",
        "/Users/openclaw UserShell /bin/zsh", "/Users/openclaw NFSHomeDirectory /opt/openclaw",
        '/Users/openclaw RealName "OpenClaw agent (clawgate)"', "/Users/openclaw IsHidden 1",
        "/Users/openclaw Password *",
    ]


# -- 5. an interpreter refused for its ownership says why ------------------------------------------

@pytest.mark.root
def test_an_interpreter_owned_by_a_user_is_refused_with_the_reason():
    """Homebrew's python3 lives in a directory its user owns: code there would run as root."""
    top = Path(tempfile.mkdtemp(prefix="clawgate-brew-", dir="/opt"))
    try:
        bindir = top / "bin"
        bindir.mkdir()
        (bindir / "python3").symlink_to(shutil.which("python3") or "/usr/bin/python3")
        os.chown(bindir, 65534, -1)
        argv = ["bash", str(INSTALL), "--dry-run", "--owner", "nobody", "--no-service",
                "--python", str(bindir / "python3")]
        result = run(argv)
        assert result.returncode == 6, result.stdout + result.stderr
        assert b"runs elevate as root" in result.stderr and b"must be root's alone" in result.stderr
        assert f"{bindir}: owned by".encode() in result.stderr
    finally:
        shutil.rmtree(top)


def test_the_fakes_are_never_installed():
    code, out, err = darwin_plan()
    assert code == 0, err
    assert "tests/fakes" not in out
    assert subprocess.run(["grep", "-rl", "tests/fakes", str(REPO / "install.sh"), str(LOAD_JOB)],
                          capture_output=True).stdout == b""


# -- the agent-blind proxy as a LaunchDaemon ------------------------------------------------------

PROXY_PLIST = "/Library/LaunchDaemons/ai.clawgate.proxy.plist"


def test_the_proxy_is_a_launchdaemon_run_as_the_owner_and_loaded_in_the_plan():
    code, out, err = darwin_plan("--proxy-port", "9123")
    assert code == 0, err
    text = re.search(rf"^--- begin {PROXY_PLIST}\n(.*?)^--- end {PROXY_PLIST}$", out, re.S | re.M).group(1)
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == "ai.clawgate.proxy" and plist["UserName"] == "alice"
    assert plist["ProgramArguments"] == ["/usr/local/libexec/clawgate/proxy"]
    assert f"would: install {PROXY_PLIST} (root:wheel 0644)" in out or f"{PROXY_PLIST}" in out
    assert "launchctl bootstrap system " + PROXY_PLIST in out
    assert "port = 9123" in out


def test_no_proxy_installs_no_launchdaemon_for_it():
    code, out, err = darwin_plan("--no-proxy")
    assert code == 0, err
    assert PROXY_PLIST not in out.split("--- end")[-1]
    assert "service = none" in out
