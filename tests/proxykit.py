"""Shared pieces of the proxy's tests: a free port, the proxy process, raw HTTP on a socket."""

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, process: Optional[subprocess.Popen] = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            said = journal(process) if hasattr(process, "journal") else b""
            raise AssertionError(f"the proxy exited ({process.returncode}): {said!r}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def start(argv: Sequence[str], port: int, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """The proxy, its output in a file as the journal would take it (a pipe nobody reads would
    fill, and block the proxy at its 64 KiB'th byte of complaints): journal(process) reads it."""
    import tempfile

    journal = tempfile.TemporaryFile()
    process = subprocess.Popen(list(argv), stdout=journal, stderr=journal,
                               env=env or {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/")
    process.journal = journal  # type: ignore[attr-defined]
    wait_listening(port, process)
    return process


def journal(process: subprocess.Popen) -> bytes:
    """Everything the proxy has said so far."""
    held = process.journal  # type: ignore[attr-defined]
    held.seek(0)
    return held.read()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def raw(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 10) -> bytes:
    """Send `data` as is and read until the proxy closes (or the timeout)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks: List[bytes] = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.") else 0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def tree(pid: int) -> List[int]:
    """`pid` and every process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def niceness(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])  # field 19, counted after the command's name


def holder(port: int, client_port: int, among: List[int]) -> Optional[int]:
    """Which of the processes `among` holds the proxy's end of the client's connection from
    `client_port` to `port` (the kernel's table gives the socket's inode, /proc/PID/fd who has it)."""
    wanted = f"0100007F:{port:04X}", f"0100007F:{client_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            inode = fields[9]
    if inode is None:
        return None
    for pid in among:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if f"socket:[{inode}]" in links:
            return pid
    return None


def readable_by_all(path: Path) -> bool:
    """Whether another user can read `path`: every directory up to / searchable by others."""
    import os
    import stat

    path = path.resolve()
    for part in [path, *path.parents]:
        mode = os.stat(part).st_mode
        if not mode & stat.S_IXOTH or (part == path and not mode & stat.S_IROTH):
            return False
    return True


def client_site(packages: Sequence[str], scratch: Path) -> str:
    """A directory another user's /usr/bin/python3 can import `packages` (and what they need) from:
    this interpreter's site-packages when others can read it, else a copy of just those
    distributions (a checkout under /root, or a home that is 0750)."""
    import importlib.metadata as metadata
    import re
    import shutil
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    if readable_by_all(site):
        return str(site)
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o755)
    todo, seen = list(packages), set()
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional extra's package that is not installed
        todo += [req for req in dist.requires or () if "extra ==" not in req]
        for file in dist.files or ():
            source = Path(dist.locate_file(file))
            target = scratch / file
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    for path in [scratch, *scratch.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return str(scratch)


def memory_holds(pid: int, needles: Sequence[bytes], scanned: Optional[List[int]] = None) -> "set[bytes]":
    """Which of `needles` appear anywhere in the readable memory of process `pid` (root reads
    /proc/PID/mem), as bytes or as UTF-16 (how V8 may keep a string); a region that vanishes or
    cannot be read is skipped."""
    import re

    forms = {needle: (needle, needle.decode("latin-1").encode("utf-16-le")) for needle in needles}
    found: "set[bytes]" = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            match = re.match(r"([0-9a-f]+)-([0-9a-f]+) (r)", line)
            if not match or "[vvar]" in line or "[vsyscall]" in line:
                continue
            start, end = int(match.group(1), 16), int(match.group(2), 16)
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            found.update(needle for needle, shapes in forms.items() if any(shape in data for shape in shapes))
            if scanned is not None:
                scanned.append(len(data))
    return found


def pids_of(uid: int) -> List[int]:
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                continue
    return found
