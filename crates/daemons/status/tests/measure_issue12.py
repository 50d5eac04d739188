#!/usr/bin/env python3
"""Before/after figures for issue 12's status-page defects (not a test: it prints numbers).

    python3 crates/daemons/status/tests/measure_issue12.py target/debug/minebox-status

Starts the given minebox-status binary on 127.0.0.1 with 1024 descriptors (systemd's soft
default, as on the box) against a fake stratum server and supervisor holding 20,000
workers (10.9 MB, as in the issue), then attacks it from 127.0.0.x addresses. Loopback
only; every loop is bounded in count and time.
"""
import http.client
import http.server
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ADDR = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
ADMIN = "correct horse"
binary = sys.argv[1]
hits = {}
hits_lock = threading.Lock()
WORKERS = [
    {"coin": "btc", "worker": f"{ADDR}.w{i}", "connections": 0, "accepted": 10, "best_share": 1.5,
     "rejected": {"stale": 1}, "difficulty": 512.0, "last_share": 1700000000 + i,
     "hashrate": {"1m": 0.0, "1h": 1e9, "24h": 2e9}, "blocks": 0, "user_agent": "bitaxe/BM1366/v2.4.0",
     "rates": {"m1": [0, 0]}, "dirty": False, "padding": "x" * 330}
    for i in range(20000)
]


class Fake(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the page stopped reading a large answer
            pass

    def do_GET(self):
        path, _, query = self.path.partition("?")
        with hits_lock:
            hits[path] = hits.get(path, 0) + 1
        q = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path == "/api/v1/stratum":
            body = [{"coin": "btc", "miners": 2, "workers": 2, "hashrate": {"1m": 1e12, "1h": 1e12, "24h": 1e12},
                     "best_share": 1.0, "blocks_found": 1, "node": {"network_difficulty": 1.0}}]
        elif path == "/api/v1/stratum/workers":
            off, lim = int(q.get("offset", 0)), int(q.get("limit", 10**9))
            body = WORKERS[off:off + lim]
        elif path == "/api/v1/stratum/miners":
            body = [{"coin": "btc", "workers": [f"{ADDR}.w1"], "best_share": 1.0}]
        elif path == "/api/v1/nodes":
            body = []
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_fake():
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s.server_address[1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def req(method, path, body=None, src=1, headers=None, timeout=10):
    """(status, headers, body bytes, seconds) or (None, error, b'', seconds)."""
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(f"127.0.0.{src}", 0))
        h = {"content-type": "application/json"}
        h.update(headers or {})
        c.request(method, path, json.dumps(body) if body is not None else None, h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data, time.monotonic() - t
    except Exception as e:  # a timeout or reset is the figure
        return None, type(e).__name__, b"", time.monotonic() - t


def cookie_of(r):
    return r[1].get("set-cookie", r[1].get("Set-Cookie", "")).split(";")[0]


stratum, supervisor = serve_fake(), serve_fake()
state = tempfile.mkdtemp()
port = free_port()
cfg = os.path.join(state, "minebox.toml")
with open(cfg, "w") as f:
    f.write(f'[stratum]\napi = "127.0.0.1:{stratum}"\n[supervisor]\napi = "127.0.0.1:{supervisor}"\n'
            f'backend = "process"\n[snapshots]\napi = "127.0.0.1:{free_port()}"\n[updates]\n'
            f'api = "127.0.0.1:{free_port()}"\n[status]\napply = []\n[coins.btc]\nenabled = true\n'
            f'network = "regtest"\npayout_address = "{ADDR}"\n')
proc = subprocess.Popen(
    [binary, "--config", cfg, "--listen", f"127.0.0.1:{port}", "--accounts", f"{state}/accounts", "--data-dir", state],
    stdout=subprocess.DEVNULL, stderr=open(f"{state}/log", "w"),
    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
try:
    for _ in range(100):
        if req("GET", "/api/v1/health")[0] == 200:
            break
        time.sleep(0.1)

    print("15  setup with Host: rebind.example + matching Origin:",
          req("POST", "/api/v1/auth/setup", {"password": "attacker's choice"},
              headers={"Host": "rebind.example", "Origin": "http://rebind.example"})[0])
    r = req("POST", "/api/v1/auth/setup", {"password": ADMIN})
    if r[0] != 201:  # the rebinding page chose it (before the fix): reset for the rest
        os.remove(f"{state}/accounts")
        r = req("POST", "/api/v1/auth/setup", {"password": ADMIN})
    admin = {"Cookie": cookie_of(r), "X-CSRF-Token": json.loads(r[2])["csrf_token"]}

    s, h, data, secs = req("GET", "/api/v1/workers", headers=admin, timeout=30)
    n = len(json.loads(data)) if s == 200 else 0
    print(f"4   /api/v1/workers with 20,000 workers: {s}, {n} entries, {len(data)} bytes, {secs:.2f} s")

    with hits_lock:
        hits.clear()
    with ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda i: req("GET", "/metrics", src=20 + i % 4, timeout=60), range(16)))
    names = sum(1 for r in rs if ADDR.encode() in r[2])
    print(f"5   16 concurrent /metrics: statuses {sorted(set(r[0] for r in rs))}, upstream reads {dict(hits)}, "
          f"bodies naming an address/worker {names}, slowest {max(r[3] for r in rs):.2f} s")

    guesses = [f"wrong {i}" for i in range(59)] + [ADMIN]
    with ThreadPoolExecutor(60) as ex:
        rs = list(ex.map(lambda g: req("POST", "/api/v1/auth/login", {"password": g}, src=6, timeout=60), guesses))
    st = [r[0] for r in rs]
    print(f"6   60 concurrent guesses from one address: checked {sum(1 for s in st if s in (200, 401))}, "
          f"signed in {st.count(200)}, refused 429 {st.count(429)}")

    def flood(i):
        return req("POST", "/api/v1/auth/login", {"password": f"flood {i}"}, src=7, timeout=60)[0]
    with ThreadPoolExecutor(100) as ex:
        fut = [ex.submit(flood, i) for i in range(100)]
        time.sleep(0.2)
        t = req("POST", "/api/v1/auth/login", {"password": ADMIN}, src=8, timeout=60)
        fl = [f.result() for f in fut]
    print(f"7   admin sign-in from another address during a 100-guess flood: {t[0]} in {t[3]:.3f} s; "
          f"flood checked {fl.count(401)}, refused {fl.count(429)}")
    quiet = req("POST", "/api/v1/auth/login", {"password": ADMIN}, src=9)
    print(f"    (without a flood: {quiet[0]} in {quiet[3]:.3f} s)")

    other = req("POST", "/api/v1/auth/login", {"password": ADMIN}, src=10)
    other_h = {"Cookie": cookie_of(other)}
    r = req("PUT", "/api/v1/auth/password",
            {"role": "admin", "password": "a new admin password", "current_password": ADMIN}, headers=admin)
    print(f"9   admin password changed ({r[0]}): the other admin session now gets "
          f"{req('GET', '/api/v1/config', headers=other_h, src=10)[0]}, the changer's "
          f"{req('GET', '/api/v1/config', headers={'Cookie': admin['Cookie']})[0]}")
    req("PUT", "/api/v1/auth/password", {"role": "viewer", "password": "just looking",
                                         "current_password": "a new admin password"}, headers=admin)
    v = req("POST", "/api/v1/auth/login", {"password": "just looking"}, src=11)
    vh = {"Cookie": cookie_of(v), "X-CSRF-Token": json.loads(v[2])["csrf_token"]}
    print(f"10  viewer sign-out: {req('POST', '/api/v1/auth/logout', headers=vh, src=11)[0]}")

    r = req("PUT", "/api/v1/config", {"notify": {"ntfy": "x" * (200 << 10)}}, headers=admin)
    print(f"8   a 200 KiB settings body: {r[0]}")

    # Event streams: open up to 1,009 (bounded), counting the answers, then ask for a page.
    streams, codes = [], {}
    for i in range(1009):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.{1 + i // 200}.{2 + i % 200}", 0))
            s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {admin['Cookie']}\r\n\r\n".encode())
            head = s.recv(200).decode(errors="replace").split(" ")
            code = head[1] if len(head) > 1 else "none"
            streams.append(s)
        except Exception as e:
            code = type(e).__name__
        codes[code] = codes.get(code, 0) + 1
    h = req("GET", "/api/v1/health", src=250, timeout=10)
    o = req("GET", "/api/v1/overview", src=250, headers={"Cookie": admin["Cookie"]}, timeout=10)
    print(f"8   1,009 event streams opened: answers {codes}; then health {h[0] or h[1]} in {h[3]:.2f} s, "
          f"overview {o[0] or o[1]} in {o[3]:.2f} s")
    for s in streams:
        s.close()
    time.sleep(1)

    # 1,100 idle connections (from many addresses), then a fresh client.
    idle = []
    for i in range(1100):
        try:
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.{10 + i // 200}.{2 + i % 200}", 0)))
        except Exception:
            pass
    time.sleep(0.5)
    h = req("GET", "/api/v1/health", src=251, timeout=10)
    lg = req("POST", "/api/v1/auth/login", {"password": "a new admin password"}, src=251, timeout=10)
    print(f"8   1,100 idle connections: health {h[0] or h[1]} in {h[3]:.2f} s, login {lg[0] or lg[1]} in {lg[3]:.2f} s")
    for s in idle:
        s.close()
    time.sleep(1)

    s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.252", 0))
    s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    s.settimeout(45)
    t = time.monotonic()
    try:
        while s.recv(1000):
            pass
        print(f"8   half-sent request head closed by the server after {time.monotonic() - t:.1f} s")
    except socket.timeout:
        print("8   half-sent request head still open after 45 s")
finally:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # the old binary waits for its open connections
        proc.kill()
        proc.wait()
