"""Helpers for the core tests: in-process contexts on a staged Tree, and small probes."""

import json
import os
from typing import Dict

from installtree import Tree
from clawgate import cli, config, totp


def context(tree: Tree, role: str = "agent") -> cli.Context:
    """What cli.context() builds inside a program of the tree, for calling gate/grants in-process."""
    cfg = tree.config()
    uid, name = (cfg.agent.uid, cfg.agent.name) if role == "agent" else (cfg.owner.uid, cfg.owner.name)
    return cli.Context(cfg, cli.Caller(uid, name, role), config.of_program(str(tree.libexec / "approve")))


def wrong_code_at(params: totp.Params, now: float, start: int = 0) -> str:
    """A well-formed code that no step in now±1 accepts."""
    valid = {totp.code_at(params, now + offset) for offset in (-params.period, 0, params.period)}
    candidate = start
    while f"{candidate:0{params.digits}d}" in valid:
        candidate += 1
    return f"{candidate:0{params.digits}d}"


def status(tree: Tree) -> Dict[str, object]:
    result = tree.run("broker", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def audit_records(tree: Tree):
    path = tree.state / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def one_line_error(result, code: int) -> str:
    """The single `clawgate: ...` line a failing program must print; asserts its shape."""
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == code, (result.returncode, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("clawgate: "), err
    assert "Traceback" not in err
    return err


def grant_path(tree: Tree, name: str) -> str:
    return os.path.join(tree.state, "grants", name.replace("/", "%"))


def resolve_decisions(records) -> "list[tuple[str, str]]":
    """(id, result) for every id of every `resolve` batch record (resolver.DECIDED), oldest first;
    result is ok, missing or denied, as each id's own record said before batches had one record."""
    from clawgate import resolver

    found = []
    for record in records:
        if record["event"] == "resolve":
            for key in resolver.DECIDED:
                found += [(name, key.split("_")[0]) for name in record.get(key, [])]
    return found
