"""The README's fleet recipe, run as written: the real `bao` CLI against a real OpenBao dev
server, the real install.sh on two hosts, one enrolment at a terminal, one code for both.

The recipe's shell block runs in one bash with `set -e -o pipefail`. What must differ here is
substituted, and only that: the server's address and CA file, the hosts' addresses in the CIDR
bindings (this machine's loopback for 10.0.0.0/8), and `ssh hostN sudo ./install.sh --owner alice
--yes` by this machine's install.sh with each host's throwaway owner, agent, prefix and state (the
RootEnv arguments). "The same for host2" is host1's command with host2 in it. The dev server
starts with neither a KV mount nor AppRole, so the recipe's own commands make them.
"""

import os
import re
import shlex
import shutil
import subprocess

import pytest

from baoserver import DevServer, bao_binary, readable_ca
from installtree import REPO
from rootenv import RootEnv

pytestmark = pytest.mark.root
pexpect = pytest.importorskip("pexpect")


def recipe() -> "tuple[str, str]":
    """(the shell block, the HCL block) of the README's fleet section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## A fleet on OpenBao", 1)[1].split("\n## ", 1)[0]
    shell = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    hcl = re.search(r"```hcl\n(.*?)```", section, re.S).group(1)
    return shell, hcl


def commands(shell: str) -> "list[str]":
    """Logical lines (continuations joined), comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", "", shell)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    server = DevServer(tmp_path_factory.mktemp("bao"))
    hosts = []
    ca = readable_ca(server)
    shared = ca.parent  # the admin's working directory too: the policy file is written there
    try:
        server.api("DELETE", "sys/mounts/secret")  # the recipe makes these itself
        server.api("DELETE", "sys/auth/approle")
        hosts = [RootEnv(install=False), RootEnv(install=False)]
        yield server, ca, shared, hosts
    finally:
        for env in hosts:
            env.close()
        shutil.rmtree(shared, ignore_errors=True)
        server.stop()


def test_the_readme_fleet_recipe_runs_as_written_and_one_code_serves_both_hosts_once(fleet):
    server, ca, shared, (host1, host2) = fleet
    shell, hcl = recipe()
    steps = commands(shell)
    install = next(i for i, line in enumerate(steps) if "ssh host1 sudo ./install.sh --owner alice --yes" in line)
    assert steps[install + 1].strip() == "alice@host1$ clawgate enroll", steps  # then enrol, once
    host2_step = steps[install].replace("host1", "host2")

    def on_this_machine(line: str, env: RootEnv) -> str:
        ours = " ".join(shlex.quote(arg) for arg in env.install_argv())
        line = re.sub(r"ssh host\d sudo \./install\.sh --owner alice --yes", lambda _: ours, line)
        return (line.replace("https://bao.example:8200", server.address)
                    .replace("/etc/ssl/bao-ca.pem", str(ca)).replace("10.0.0.0/8", "127.0.0.1/32"))

    script = [on_this_machine(line, host1) for line in steps[:install + 1]] + [on_this_machine(host2_step, host2)]
    (shared / "clawgate-alice.hcl").write_text(hcl)
    bao_env = {"PATH": f"{bao_binary().parent}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "BAO_ADDR": server.address, "BAO_CACERT": str(ca), "BAO_TOKEN": server.token, "HOME": str(shared)}
    ran = subprocess.run(["bash", "-c", "set -e -o pipefail\n" + "\n".join(script)], cwd=shared, env=bao_env,
                         capture_output=True, timeout=300)
    assert ran.returncode == 0, (ran.stdout + ran.stderr).decode()[-4000:]
    for env in (host1, host2):
        conf = env.config_path.read_text()
        assert "store = openbao" in conf and "prefix = clawgate/alice" in conf, conf
        assert not (env.state / "secrets").exists() or not any((env.state / "secrets").iterdir())
    assert b"metadata" not in ran.stdout  # the secret ids went to install.sh's stdin, wrapped, never printed

    status, shown, _code = host1.enroll_at_a_terminal()  # `alice@host1$ clawgate enroll`: once, for the fleet
    assert status == 0, shown
    host2.seed, host2.last_step = host1.seed, host1.last_step
    host1.set_secret("db/password", b"fleet-pw", tier="controlled")
    code = host2.code()
    assert host2.agent("approve", "db/password", code).returncode == 0  # host2 takes host1's enrolment's code
    got = host2.agent("get", "db/password")
    assert (got.returncode, got.stdout) == (0, b"fleet-pw"), got.stderr
    again = host1.agent("approve", "db/password", code)
    assert (again.returncode, again.stderr) == (1, b"clawgate: code denied\n"), again.stderr  # once, across the fleet
    assert host1.agent("get", "db/password").returncode == 3  # and host1's agent holds no grant for it
    ids = server.api("LIST", "auth/approle/role/clawgate-alice/secret-id")["data"]["keys"]
    hosts_named = {server.api("POST", "auth/approle/role/clawgate-alice/secret-id-accessor/lookup",
                              {"secret_id_accessor": accessor})["data"]["metadata"].get("host") for accessor in ids}
    assert hosts_named == {"host1", "host2"}  # each host's secret id can be found, and revoked, by its name
    assert os.path.exists(host1.state / "openbao-secret-id") and os.path.exists(host2.state / "openbao-secret-id")
