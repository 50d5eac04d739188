"""Real peers on the host for the twin's system tests: a bcoin regtest node (the guest's
external node, reached at 10.0.2.2 through QEMU's user networking), nginx serving update
bundles, the simulated Bitaxe (minebox-simminer) mining on the guest's stratum port, and a
solo pool (a host minebox-stratum on a host Bitcoin Core) for the box's upstream."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from firmware import free_port

ROOT = Path(__file__).resolve().parents[2]


def bcoin_p2pkh_address(pubkey_hash: bytes) -> str:
    """bcoin's regtest P2PKH form (base58 version 0x3c), as generatetoaddress wants it."""
    payload = bytes([0x3C]) + pubkey_hash
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(payload + check, "big")
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(payload + check) - len((payload + check).lstrip(b"\0"))) + out


class Regtest:
    """bcoin 1.0.2 (npm) in regtest with a data directory, on a free port of host loopback."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.p2p = free_port()
        self.api_key = secrets.token_hex(16)
        bcoin = Path(os.environ.get("MINEBOX_BCOIN", ROOT / "node_modules/bcoin/bin/node"))
        if not bcoin.exists():
            raise RuntimeError(f"bcoin is not installed at {bcoin} (run scripts/setup)")
        log = open(self.dir / "bcoin.log", "ab")
        self.proc = subprocess.Popen(
            [
                "node", str(bcoin), "--network=regtest", "--memory=false", f"--prefix={self.dir}",
                "--http-host=127.0.0.1", f"--http-port={self.port}", f"--port={self.p2p}",
                f"--api-key={self.api_key}", "--listen=false", "--max-outbound=1",
                f"--only=127.0.0.1:{self.p2p}", "--no-wallet", "--workers=false", "--log-level=warning",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(600):
            try:
                self.rpc("getblockcount")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"bcoin exited; see {self.dir / 'bcoin.log'}")
                time.sleep(0.1)
        raise RuntimeError("bcoin did not answer RPC")

    @property
    def cookie(self) -> str:
        """The credentials file content for the guest: bcoin takes any user, the API key as password."""
        return f"minebox:{self.api_key}"

    def rpc(self, method: str, *params):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/",
            data=json.dumps({"method": method, "params": list(params), "id": 1}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(self.cookie.encode()).decode(),
            },
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.load(r)
        if answer.get("error"):
            raise RuntimeError(f"bcoin {method}: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Nginx:
    """nginx serving a directory (update bundles) on a free port of host loopback."""

    def __init__(self, root: Path, workdir: Path):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"""daemon off;
# The tests run as root; workers as root read the work directory, which tempfile makes 0700.
user root;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    types {{ application/octet-stream raucb; application/json json; }}
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
    }}
}}
"""
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [nginx, "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5)
                return
            except urllib.error.HTTPError:
                return  # it answers (403/404 for the bare directory)
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not start")

    def guest_url(self, name: str) -> str:
        return f"http://10.0.2.2:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class SimMiner:
    """The simulated Bitaxe (minebox-simminer), connected to the guest's forwarded stratum port."""

    def __init__(self, binary: Path, port: int, user: str, log: Path, hashrate: float = 2_000_000.0):
        self.proc = subprocess.Popen(
            [str(binary), "--url", f"stratum+tcp://127.0.0.1:{port}", "--user", user, "--hashrate", str(hashrate)],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# Bitcoin Core on the host (issue 13): the height-200 chain whose UTXO set regtest's
# chainparams list for assumeutxo, and a node that has it.

CORE_ASSUMEUTXO_200 = "385901ccbd69dff6bbd00065d01fb8a9e464dede7cfe0372443884f9b1dcf6b9"
_REGTEST_GENESIS = bytes.fromhex("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206")[::-1]
_REGTEST_GENESIS_TIME = 1296688602
_REGTEST_BITS = 0x207FFFFF


def _sha256d(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def _script_num(n: int) -> bytes:
    """`CScript() << n` for a block height: OP_1..OP_16, else a minimal little-endian push."""
    if 1 <= n <= 16:
        return bytes([0x50 + n])
    body = n.to_bytes((n.bit_length() + 8) // 8, "little")  # room for the sign bit
    return bytes([len(body)]) + body


def core_deterministic_chain(n: int) -> list[tuple[bytes, bytes]]:
    """Bitcoin Core's `CreateBlockChain` (src/test/util/mining.cpp), the same as
    minebox_regtest::core_deterministic_chain: `n` blocks after regtest genesis, each version
    4, time genesis + height, genesis bits, the lowest nonce from 0 up, one coinbase (version
    2, lock time height - 1, sequence 0xfffffffe, script sig `<height> OP_0`, the subsidy to
    P2WSH(OP_TRUE)). Returns (80-byte header, serialized block) per height."""
    target = (_REGTEST_BITS & 0xFFFFFF) << (8 * ((_REGTEST_BITS >> 24) - 3))
    pays_to = b"\x00\x20" + hashlib.sha256(b"\x51").digest()
    prev, out = _REGTEST_GENESIS, []
    for height in range(1, n + 1):
        script_sig = _script_num(height) + b"\x00"
        subsidy = (50 * 100_000_000) >> (height // 150)
        tx = (
            (2).to_bytes(4, "little") + b"\x01" + b"\x00" * 32 + b"\xff\xff\xff\xff"
            + bytes([len(script_sig)]) + script_sig + (0xFFFFFFFE).to_bytes(4, "little")
            + b"\x01" + subsidy.to_bytes(8, "little") + bytes([len(pays_to)]) + pays_to
            + (height - 1).to_bytes(4, "little")
        )  # fmt: skip
        fixed = (
            (4).to_bytes(4, "little") + prev + _sha256d(tx)
            + (_REGTEST_GENESIS_TIME + height).to_bytes(4, "little") + _REGTEST_BITS.to_bytes(4, "little")
        )  # fmt: skip
        nonce = 0
        while int.from_bytes(_sha256d(fixed + nonce.to_bytes(4, "little")), "little") > target:
            nonce += 1
        header = fixed + nonce.to_bytes(4, "little")
        prev = _sha256d(header)
        out.append((header, header + b"\x01" + tx))
    return out


def block_hash(header: bytes) -> str:
    return _sha256d(header)[::-1].hex()


class HostCore:
    """Bitcoin Core (../shared/peers/bin/bitcoind) in regtest on host loopback: RPC for the
    test, P2P listening for the box (which reaches it at 10.0.2.2 through QEMU's user
    networking). `download@127.0.0.1`: a node in initial block download (a regtest tip dated
    2011 keeps it there) ignores peers' getheaders unless they have that permission."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.p2p = free_port()
        self.password = secrets.token_hex(16)
        peers = Path(os.environ.get("MINEBOX_PEERS", ROOT.parent / "shared/peers"))
        self.log = open(self.dir / "bitcoind.log", "ab")
        self.proc = subprocess.Popen(
            [
                str(peers / "bin/bitcoind"), "-regtest", f"-datadir={self.dir / 'data'}", "-server=1",
                f"-rpcport={self.port}", "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-rpcuser=minebox",
                f"-rpcpassword={self.password}", f"-port={self.p2p}", f"-bind=127.0.0.1:{self.p2p}", "-listen=1",
                "-whitelist=download@127.0.0.1", "-listenonion=0", "-dnsseed=0", "-fixedseeds=0",
                "-disablewallet=1", "-printtoconsole=1", "-nodebuglogfile=1",
            ],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(600):
            try:
                self.rpc("getblockcount")
                return
            except (OSError, RuntimeError):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"bitcoind exited; see {self.dir / 'bitcoind.log'}")
                time.sleep(0.1)
        raise RuntimeError("bitcoind did not answer RPC")

    def rpc(self, method: str, *params, timeout: float = 60):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/",
            data=json.dumps({"jsonrpc": "1.0", "method": method, "params": list(params), "id": 1}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(f"minebox:{self.password}".encode()).decode(),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                answer = json.load(r)
        except urllib.error.HTTPError as e:
            # Core answers RPC errors with HTTP 500 and the error in the body.
            try:
                answer = json.load(e)
            except ValueError:
                raise RuntimeError(f"bitcoind {method}: HTTP {e.code}") from None
        if answer.get("error"):
            raise RuntimeError(f"bitcoind {method}: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class UpstreamPool:
    """A solo pool on the host for the box's `upstream`: minebox-stratum in flags mode (a real
    Stratum V1 server) on its own regtest node (a HostCore, not the box's bcoin), listening
    on host loopback, where the guest reaches it as 10.0.2.2. Miners' own addresses are
    paid (`--payout-policy miner`), as at a public solo pool."""

    def __init__(self, binary: Path, core: HostCore, workdir: Path):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.api = free_port()
        self.proc = subprocess.Popen(
            [
                str(binary), "--network", "regtest", "--listen", f"127.0.0.1:{self.port}",
                "--node-url", f"http://127.0.0.1:{core.port}/", "--node-user", "minebox",
                "--payout-policy", "miner", "--database", str(self.dir / "state.db"),
                "--api", f"127.0.0.1:{self.api}", "--start-difficulty", "0.0001",
                "--min-difficulty", "0.00000001", "--stats-flush-secs", "5",
            ],
            env={**os.environ, "MINEBOX_NODE_PASSWORD": core.password, "RUST_LOG": "info"},
            stdout=open(self.dir / "stratum.log", "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(600):
            try:
                self.get("/api/v1/stratum")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the pool's minebox-stratum exited; see {self.dir / 'stratum.log'}")
                time.sleep(0.1)
        raise RuntimeError("the pool's minebox-stratum did not answer")

    def guest_url(self) -> str:
        return f"stratum+tcp://10.0.2.2:{self.port}"

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}{path}", timeout=10) as r:
            return json.load(r)

    def worker(self, name: str) -> dict:
        """The pool's own counters for one worker (accepted, rejected by reason); {} if unseen."""
        return next((w for w in self.get("/api/v1/stratum/workers?coin=btc&limit=1000") if w["worker"] == name), {})

    def blocks(self) -> list:
        return self.get("/api/v1/stratum/blocks?coin=btc&limit=1000")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Gate:
    """A node's RPC port as the box sees it, on host loopback: closed, nothing listens there
    (the box's connections are refused, as for a node that is down or not started yet);
    open, every connection is forwarded to the node's real port."""

    def __init__(self, to_port: int):
        self.to = to_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def open(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                inbound, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                outbound = socket.create_connection(("127.0.0.1", self.to), timeout=10)
            except OSError:
                inbound.close()
                continue
            outbound.settimeout(None)
            self.conns += [inbound, outbound]
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self.listener:
            self.listener.close()
            self.listener = None
        for c in self.conns:
            c.close()
        self.conns.clear()
