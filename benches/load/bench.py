#!/usr/bin/env python3
"""Load benchmark of the whole broker (release build), one scenario at a time.

Starts everything on 127.0.0.1 and stops it at the end: the broker, a canned-reply STS
(fixed, valid STS XML: its cost is not the broker's), a minimal OIDC issuer (discovery +
JWKS, with ID tokens this script signs), and, for end-to-end figures, moto. Figures are
broker CPU per operation (utime+stime from /proc/PID/stat), throughput, p50/p99 latency,
and the load average, each next to its baseline measured in the same run.

usage: benches/load/bench.py exchange|scaleout [--seconds 10] [--concurrency 8]
       (run by benches/load/run.sh, which builds the release binary and the venv)

scaleout: 1 and then 3 broker instances behind HAProxy (round-robin) on a 6-node Redis
Cluster: role-picker requests/s (GET / with a browser session signed in through the
balancer), issuances/s (token exchange, canned-reply STS) and bearer-token API
requests/s (GET /api/v1/me), with p50/p99 and the brokers' summed CPU.
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER_BIN = os.environ.get("ROLEGATE_BIN", os.path.join(ROOT, "target/release/rolegate"))
VENV = os.path.join(ROOT, "tests/testbed/.venv")


class QuietServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a load generator drops
    a keep-alive connection at the end of a run."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def wait_port(port, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start on port {port}")


class Issuer:
    """A minimal OIDC issuer: discovery and JWKS over HTTP, tokens signed here (RS256), and
    an authorization endpoint that signs alice in at once (for browser sessions)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pub = self.key.public_key().public_numbers()
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        e = pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")
        jwks = {"keys": [{"kty": "RSA", "n": b64url(n), "e": b64url(e), "kid": "bench", "alg": "RS256", "use": "sig"}]}
        discovery = {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/auth",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        docs = {"/.well-known/openid-configuration": discovery, "/jwks": jwks}
        self.codes = codes = {}
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self):
                if self.path.startswith("/auth?"):
                    # Signs alice in at once: back to the broker with a code.
                    q = dict(urllib.parse.parse_qsl(self.path.split("?", 1)[1]))
                    code = b64url(os.urandom(16))
                    codes[code] = q.get("nonce")
                    back = q["redirect_uri"] + "?" + urllib.parse.urlencode(
                        {"code": code, "state": q["state"], "iss": issuer.url})
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(docs.get(self.path, {})).encode()
                self.send_response(200 if self.path in docs else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
                nonce = codes.pop(form.get("code"), None)
                body = json.dumps({"access_token": b64url(os.urandom(16)), "token_type": "Bearer", "expires_in": 300,
                                   "id_token": issuer.id_token("alice", "broker", nonce=nonce)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        self.server = QuietServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id_token(self, sub, audience, lifetime=3600, nonce=None):
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": "bench"}
        claims = {"iss": self.url, "aud": audience, "sub": sub, "email": f"{sub}@example.com",
                  "groups": ["aws-admins"], "iat": now, "exp": now + lifetime}
        if nonce:
            claims["nonce"] = nonce
        signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
        sig = self.key.sign(signing, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing.decode()}.{b64url(sig)}"


CANNED = """<{op}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{op}Result>{extra}<AssumedRoleUser><Arn>arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com</Arn><AssumedRoleId>AROAEXAMPLE:alice</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>ASIACANNEDCANNED0001</AccessKeyId><SecretAccessKey>cannedcannedcannedcannedcannedcannedcann</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></{op}Result><ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata></{op}Response>"""


class CannedSts:
    """Answers every STS call with fixed, valid XML (AssumeRole / AssumeRoleWithWebIdentity)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token = "FwoGZXIvYXdzE" + "A" * 600
        replies = {
            "AssumeRole": CANNED.format(op="AssumeRole", extra="", token=token).encode(),
            "AssumeRoleWithWebIdentity": CANNED.format(
                op="AssumeRoleWithWebIdentity",
                extra="<SubjectFromWebIdentityToken>corp:alice</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience>",
                token=token).encode(),
            "GetCallerIdentity": b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::111122223333:user/broker</Arn><UserId>AIDA</UserId><Account>111122223333</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></GetCallerIdentityResponse>',
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are separate writes: without TCP_NODELAY, Nagle and the
            # client's delayed ACK add 40 ms to every reply.
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                action = urllib.parse.parse_qs(body).get("Action", ["AssumeRole"])[0]
                reply = replies.get(action, replies["AssumeRole"])
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_):
                pass

        self.server = QuietServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Broker:
    def __init__(self, issuer, sts_url, workdir, mode="assume_role", store='store = "memory"',
                 port=None, public_url=None, name="broker", extra=""):
        self.port = port or free_port()
        self.url = public_url or f"http://127.0.0.1:{self.port}"
        key = os.path.join(workdir, "broker.pem")
        if not os.path.exists(key):
            subprocess.run([BROKER_BIN, "keys", "generate", "--out", key], check=True, capture_output=True)
        config = f"""
[server]
listen = "127.0.0.1:{self.port}"
public_url = "{self.url}"
log_level = "warn"
workers = 2

[session]
{store}

[audit]
file = "{workdir}/{name}-audit.jsonl"

[cli]
requests_per_minute = 1000000

[aws]
region = "us-east-1"
sts_endpoint_url = "{sts_url}"
sts_mode = "{mode}"

[web_identity]
keys = [{{ file = "broker.pem", active = true }}]

[[idp]]
id = "corp"
kind = "oidc"
issuer = "{issuer.url}"
client_id = "broker"

[[account]]
id = "prod"
number = "111122223333"

[[role]]
id = "prod-admin"
arn = "arn:aws:iam::111122223333:role/Admin"
account = "prod"

[[rule]]
id = "admins"
when = {{ group = "aws-admins" }}
grant = ["prod-admin"]

[[app]]
id = "bench-app"
idp = "corp"
audience = "app"
max_exchanges_per_token = 100000000
rate_limit_per_minute = 100000000
subject_rate_limit_per_minute = 100000000
{extra}
"""
        path = os.path.join(workdir, f"{name}.toml")
        open(path, "w").write(config)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true")
        started = time.perf_counter()
        self.proc = subprocess.Popen([BROKER_BIN, "serve", "--config", path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"{name}.log"), "w"))
        # Start -> ready: polled every millisecond, so the figure is good to about 1 ms.
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/readyz")
                r = c.getresponse()
                ready = json.loads(r.read())
                if r.status == 200 and not ready.get("idps_unavailable"):
                    self.ready_ms = (time.perf_counter() - started) * 1000
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.001)
        sys.exit("the broker did not become ready (see its log)")

    def rss_mb(self, field="VmRSS"):
        """Resident memory in MB: VmRSS (all), RssAnon (the heap and stacks) or RssFile (the
        binary's and libraries' pages, shared and reclaimable)."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def drive(port, path, body, seconds, concurrency, limit=None, method="POST", headers=None):
    """Posts `body` to `path` (or sends `method`) from `concurrency` keep-alive connections
    for `seconds`; returns the latencies (ms) of the successful calls and the failures."""
    stop = time.time() + seconds
    lat, failed, lock = [], [0], threading.Lock()

    def worker():
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        h = headers or {"Content-Type": "application/x-www-form-urlencoded"}
        while time.time() < stop and (limit is None or len(lat) < limit):
            t0 = time.perf_counter()
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            r.read()
            dt = (time.perf_counter() - t0) * 1000
            with lock:
                if r.status == 200:
                    lat.append(dt)
                else:
                    failed[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, failed[0]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def start_moto():
    port = free_port()
    proc = subprocess.Popen([os.path.join(VENV, "bin/moto_server"), "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "moto")
    return proc, port


def exchange(args):
    issuer = Issuer()
    sts = CannedSts()
    with tempfile.TemporaryDirectory() as work:
        body = urllib.parse.urlencode({
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": "bench-app",
            "subject_token": issuer.id_token("alice", "app"),
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "audience": "prod-admin",
        })
        print(f"== token exchange, canned-reply STS, {args.concurrency} connections, {args.seconds}s")
        for mode in ["assume_role", "web_identity"]:
            broker = Broker(issuer, sts.url, work, mode)
            drive(broker.port, "/oauth/token", body, 1, 2)  # warm-up
            cpu0 = cpu_seconds(broker.proc.pid)
            t0 = time.time()
            lat, failed = drive(broker.port, "/oauth/token", body, args.seconds, args.concurrency)
            wall = time.time() - t0
            cpu = cpu_seconds(broker.proc.pid) - cpu0
            n = len(lat)
            print(f"  {mode:<13} {n:>6} exchanges ({failed} failed) in {wall:.1f}s = {n / wall:7.0f}/s; "
                  f"broker CPU {cpu:.2f}s = {cpu / max(n, 1) * 1000:.3f} ms/exchange = "
                  f"{n / max(cpu, 1e-9):7.0f}/s per core; p50 {pct(lat, 50):.2f} ms p99 {pct(lat, 99):.2f} ms")
            broker.stop()

        print("== end to end against moto: exchange (web_identity) vs a bare AssumeRoleWithWebIdentity, one at a time")
        moto, moto_port = start_moto()
        try:
            broker = Broker(issuer, f"http://127.0.0.1:{moto_port}", work, "web_identity")
            drive(broker.port, "/oauth/token", body, 1, 1)
            lat, failed = drive(broker.port, "/oauth/token", body, args.seconds, 1, limit=args.e2e_calls)
            bare_body = urllib.parse.urlencode({
                "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                "RoleArn": "arn:aws:iam::111122223333:role/Admin", "RoleSessionName": "alice",
                "WebIdentityToken": issuer.id_token("alice", "sts.amazonaws.com"), "DurationSeconds": "3600",
            })
            drive(moto_port, "/", bare_body, 1, 1)
            bare, bare_failed = drive(moto_port, "/", bare_body, args.seconds, 1, limit=args.e2e_calls)
            ratio = pct(lat, 50) / pct(bare, 50)
            print(f"  exchange via rolegate  {len(lat):>5} calls ({failed} failed): p50 {pct(lat, 50):.2f} ms p99 {pct(lat, 99):.2f} ms")
            print(f"  bare call to moto      {len(bare):>5} calls ({bare_failed} failed): p50 {pct(bare, 50):.2f} ms p99 {pct(bare, 99):.2f} ms")
            print(f"  ratio of p50s: {ratio:.2f}x")
            broker.stop()
        finally:
            moto.terminate()
            moto.wait(10)
    print("load average:", " ".join(open("/proc/loadavg").read().split()[:3]))


def cluster_port():
    """A free port for a cluster node: its bus port (+10000) must be free too, and both
    stay below the kernel's ephemeral range (32768 and up)."""
    import random
    while True:
        p = random.randrange(10000, 22000)
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue


def start_redis_cluster(work):
    ports = [cluster_port() for _ in range(6)]
    procs = []
    for p in ports:
        d = os.path.join(work, f"redis-{p}")
        os.makedirs(d)
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in ports:
        wait_port(p, "redis-server")
    subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                    "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        infos = [subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True).stdout
                 for p in ports]
        if all("cluster_state:ok" in i for i in infos):
            return procs, ports[0]
        time.sleep(0.1)
    sys.exit("the Redis Cluster did not become ok")


def start_haproxy(work, port, backends):
    servers = "".join(f"  server b{i} 127.0.0.1:{p} check\n" for i, p in enumerate(backends))
    cfg = os.path.join(work, "haproxy.cfg")
    open(cfg, "w").write(
        "global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n"
        "  timeout server 10s\n  option http-keep-alive\nfrontend fe\n"
        f"  bind 127.0.0.1:{port}\n  default_backend be\nbackend be\n  balance roundrobin\n"
        f"  option httpchk GET /readyz\n  default-server inter 1s\n{servers}")
    proc = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "haproxy")
    time.sleep(1.5)  # the first health checks
    return proc


def browser_session(lb_port, issuer):
    """Signs alice in through the balancer like a browser (the issuer approves at once);
    returns the Cookie header of the session."""
    jar = {}

    def keep(resp):
        for c in resp.msg.get_all("Set-Cookie") or []:
            name, value = c.split(";", 1)[0].split("=", 1)
            jar[name] = value

    def get(port, url):
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", url, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})
        r = c.getresponse()
        r.read()
        keep(r)
        return r

    r = get(lb_port, "/login/corp")
    auth = urllib.parse.urlparse(r.getheader("Location"))
    r = get(auth.port, f"{auth.path}?{auth.query}")
    back = urllib.parse.urlparse(r.getheader("Location"))
    r = get(lb_port, f"{back.path}?{back.query}")
    if r.status != 303:
        sys.exit(f"sign-in failed at the callback: {r.status}")
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items() if v)
    r = get(lb_port, "/")
    if r.status != 200:
        sys.exit(f"no role picker after sign-in: {r.status}")
    return cookie


def scaleout(args):
    issuer = Issuer()
    sts = CannedSts()
    with tempfile.TemporaryDirectory() as work:
        redis_procs, seed = start_redis_cluster(work)
        store = f'store = "redis-cluster"\nredis_url = "redis://127.0.0.1:{seed}/"'
        exchange_body = lambda token_type: urllib.parse.urlencode({
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": "bench-app",
            "subject_token": issuer.id_token("alice", "app"),
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "audience": "prod-admin",
            "requested_token_type": token_type,
        })
        creds = exchange_body("urn:rolegate:params:oauth:token-type:aws-credentials")
        print(f"== scale-out behind HAProxy on a 6-node Redis Cluster, canned-reply STS, "
              f"{args.concurrency} connections, {args.seconds}s per figure; this machine has "
              f"{os.cpu_count()} cores shared by the brokers, HAProxy, Redis and this client")
        try:
            for n in [1, 3]:
                lb = free_port()
                brokers = [Broker(issuer, sts.url, work, "assume_role", store, public_url=f"http://127.0.0.1:{lb}",
                                  name=f"broker{n}-{i}") for i in range(n)]
                proxy = start_haproxy(work, lb, [b.port for b in brokers])
                try:
                    c = http.client.HTTPConnection("127.0.0.1", lb)
                    c.request("POST", "/oauth/token", body=exchange_body("urn:ietf:params:oauth:token-type:access_token"),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
                    token = json.loads(c.getresponse().read())["access_token"]
                    drive(lb, "/oauth/token", creds, 1, 2)  # warm-up
                    cookie = browser_session(lb, issuer)
                    for what, kw in [
                        ("role picker (GET / with a session)", dict(path="/", body=None, method="GET",
                                                                   headers={"Cookie": cookie})),
                        ("issuances (token exchange)", dict(path="/oauth/token", body=creds)),
                        ("API requests (GET /api/v1/me)", dict(path="/api/v1/me", body=None, method="GET",
                                                              headers={"Authorization": f"Bearer {token}"})),
                    ]:
                        cpu0 = sum(cpu_seconds(b.proc.pid) for b in brokers)
                        t0 = time.time()
                        lat, failed = drive(lb, seconds=args.seconds, concurrency=args.concurrency, **kw)
                        wall = time.time() - t0
                        cpu = sum(cpu_seconds(b.proc.pid) for b in brokers) - cpu0
                        print(f"  {n} instance(s) {what:<36} {len(lat) / wall:7.0f}/s ({failed} failed); "
                              f"p50 {pct(lat, 50):.2f} ms p99 {pct(lat, 99):.2f} ms; "
                              f"broker CPU {cpu / max(len(lat), 1) * 1000:.3f} ms/op")
                finally:
                    proxy.terminate()
                    proxy.wait(10)
                    for b in brokers:
                        b.stop()
        finally:
            for p in redis_procs:
                p.terminate()
                p.wait(10)
    print("load average:", " ".join(open("/proc/loadavg").read().split()[:3]))


def wrk(port, path, seconds, connections=8, method="GET", body=None, headers=None):
    """Drives the path with wrk (2 threads, keep-alive); returns requests/s, the count of
    successful replies, the failures, and p50/p99 in ms."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f"wrk.method = {json.dumps(method)}\n")
    if body is not None:
        script.write(f"wrk.body = {json.dumps(body)}\n")
    for k, v in (headers or {}).items():
        script.write(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n")
    script.close()
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def ms(label):
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == label:
                v = parts[1]
                for unit, f in (("us", 0.001), ("ms", 1), ("s", 1000)):
                    if v.endswith(unit):
                        return float(v[: -len(unit)]) * f
        return float("nan")

    total = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
    bad = sum(int(l.split(":")[1]) for l in out.splitlines() if l.strip().startswith("Non-2xx"))
    errors = next((l.strip() for l in out.splitlines() if l.strip().startswith("Socket errors")), "")
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    return {"rps": rps, "ok": total - bad, "failed": bad, "errors": errors, "p50": ms("50%"), "p99": ms("99%")}


def baseline(*args):
    """Runs the baselines binary (benches/baselines.rs) and parses its key=value line."""
    out = subprocess.run([os.environ["ROLEGATE_BASELINES"], *map(str, args)], capture_output=True, text=True,
                         check=True).stdout
    return {k: float(v) for k, v in (kv.split("=") for kv in out.split())}


class RssPeak:
    """Samples the broker's resident set every 50 ms while a load runs."""

    def __init__(self, broker):
        self.broker, self.peak, self.stop = broker, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.broker.rss_mb())
            time.sleep(0.05)

    def done(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def start_redis(work):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--loglevel", "warning"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "redis-server")
    return proc, port


def access_token(port, issuer):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/oauth/token", body=urllib.parse.urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "client_id": "bench-app",
        "subject_token": issuer.id_token("alice", "app"),
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token", "audience": "prod-admin",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    return json.loads(c.getresponse().read())["access_token"]


def oidc_logins(broker, issuer, count, concurrency):
    """`count` OIDC sign-ins, in two phases so each is measured on its own: the login
    starts (GET /login/corp), then the callbacks (code exchange with the issuer, ID-token
    verification, rules, session write). The issuer approves at once: its codes are made
    here. Returns broker CPU per start and per callback, and the callbacks' p50."""
    starts, lock = [], threading.Lock()

    def start_worker(n):
        c = http.client.HTTPConnection("127.0.0.1", broker.port)
        for _ in range(n):
            c.request("GET", "/login/corp")
            r = c.getresponse()
            r.read()
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.getheader("Location")).query))
            cookie = "; ".join(x.split(";", 1)[0] for x in r.msg.get_all("Set-Cookie") or [])
            code = b64url(os.urandom(16))
            issuer.codes[code] = q.get("nonce")
            with lock:
                starts.append((urllib.parse.urlparse(q["redirect_uri"]).path + "?" + urllib.parse.urlencode(
                    {"code": code, "state": q["state"], "iss": issuer.url}), cookie))

    def callback_worker(items, lat, failed):
        c = http.client.HTTPConnection("127.0.0.1", broker.port)
        for path, cookie in items:
            t0 = time.perf_counter()
            c.request("GET", path, headers={"Cookie": cookie})
            r = c.getresponse()
            r.read()
            if r.status == 303:
                lat.append((time.perf_counter() - t0) * 1000)
            else:
                failed.append(r.status)

    def run(target, chunks):
        threads = [threading.Thread(target=target, args=a) for a in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    cpu0 = cpu_seconds(broker.proc.pid)
    run(start_worker, [(count // concurrency,)] * concurrency)
    cpu1 = cpu_seconds(broker.proc.pid)
    lat, failed = [], []
    run(callback_worker, [(starts[i::concurrency], lat, failed) for i in range(concurrency)])
    cpu2 = cpu_seconds(broker.proc.pid)
    if failed:
        print(f"    {len(failed)} callbacks failed, e.g. {failed[:3]} (see the broker log)")
    n = len(starts)
    return (cpu1 - cpu0) / n * 1000, (cpu2 - cpu1) / max(len(lat), 1) * 1000, pct(lat, 50)


SAML_WRK = """
local bodies = {}
for line in io.lines(%(bodies)s) do bodies[#bodies + 1] = line end
local threads, counter = {}, 1
function setup(thread)
  thread:set("first", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  nxt, ok, bad = first, 0, 0
end
function request()
  local b = bodies[nxt]
  if b == nil then
    -- every response posted once: stop this thread (a replay would only be refused)
    wrk.thread:stop()
    b = bodies[1]
  end
  nxt = nxt + 2
  return wrk.format("POST", "/saml/bench-saml/acs",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, b)
end
function response(status, headers, body)
  if status == 303 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  io.write(string.format("saml_ok=%%d saml_bad=%%d\\n", o, b))
end
"""


def saml_acs(broker, responses, concurrency, work):
    """Posts each response once to the ACS (IdP-initiated) with wrk (two threads, a Lua
    script that hands out each response once), so the client costs the two shared cores
    little. Returns responses/s, broker CPU per response, the count verified, and the
    count refused."""
    bodies = os.path.join(work, "acs-bodies.txt")
    with open(bodies, "w") as f:
        for b64 in responses:
            f.write(urllib.parse.urlencode({"SAMLResponse": b64}) + "\n")
    script = os.path.join(work, "acs.lua")
    open(script, "w").write(SAML_WRK % {"bodies": json.dumps(bodies)})
    # wrk runs for its whole -d even when every thread has stopped: the run's wall time is
    # taken here instead, as the time until the broker's CPU stops growing, and wrk is then
    # interrupted (it still prints the script's counts).
    cpu0, t0 = cpu_seconds(broker.proc.pid), time.time()
    proc = subprocess.Popen(["wrk", "-t2", f"-c{concurrency}", "-d120s", "-s", script,
                             f"http://127.0.0.1:{broker.port}/saml/bench-saml/acs"],
                            stdout=subprocess.PIPE, text=True)
    # The clock starts when the broker starts working (wrk first reads the bodies file).
    last, started, busy_until = cpu0, None, t0
    while time.time() - busy_until < 0.5 or started is None:
        time.sleep(0.005)
        now_cpu = cpu_seconds(broker.proc.pid)
        if now_cpu != last:
            last, busy_until = now_cpu, time.time()
            started = started or busy_until - 0.005
        if time.time() - t0 > 110:
            break
    proc.send_signal(2)
    out = proc.communicate(timeout=10)[0]
    wall, cpu = busy_until - started, last - cpu0
    got = dict(kv.split("=") for kv in next(l for l in out.splitlines() if l.startswith("saml_ok")).split())
    ok, bad = int(got["saml_ok"]), int(got["saml_bad"])
    return ok / wall, cpu / max(ok, 1) * 1000, ok, bad


def table(args):
    """Every row of the whole-broker table, each next to its baseline in the same run."""
    issuer, sts = Issuer(), CannedSts()
    loads = [" ".join(open("/proc/loadavg").read().split()[:3])]
    rows = []

    def row(name, value, base, goal):
        rows.append((name, value, base, goal))
        print(f"  {name:<58} {value:<34} {base:<40} {goal}")

    with tempfile.TemporaryDirectory() as work:
        redis_proc, redis_port = start_redis(work)
        redis_store = f'store = "redis"\nredis_url = "redis://127.0.0.1:{redis_port}/"'
        saml_dir = os.path.join(work, "saml")
        os.makedirs(saml_dir)
        moto = None
        try:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            saml_idp = f"""
[[idp]]
id = "bench-saml"
kind = "saml"
metadata_file = "{saml_dir}/idp-metadata.xml"
signing_cert_files = ["{saml_dir}/idp.crt"]
groups_attribute = "groups"
username_attribute = "mail"
allow_idp_initiated = true

[[rule]]
id = "devs"
when = {{ group = "devs" }}
grant = ["prod-admin"]
"""
            s = args.seconds
            print(f"== the whole broker (release), {args.concurrency} connections, {s}s per figure; "
                  f"{os.cpu_count()} cores shared with the client, the STS stub, the issuer and Redis")
            print(f"  {'row':<58} {'rolegate':<34} {'baseline (same run)':<40} goal")

            # 1. CLI credentials issuance: broker CPU per issuance vs the SDK's own cost per call.
            for mode in ["assume_role", "web_identity"]:
                b = Broker(issuer, sts.url, work, mode, name=f"cli-{mode}")
                token = access_token(b.port, issuer)
                path, hdr = "/api/v1/roles/prod-admin/credentials", {"Authorization": f"Bearer {token}"}
                wrk(b.port, path, 1, method="POST", headers=hdr)
                cpu0 = cpu_seconds(b.proc.pid)
                r = wrk(b.port, path, s, args.concurrency, method="POST", headers=hdr)
                cpu = (cpu_seconds(b.proc.pid) - cpu0) / max(r["ok"], 1) * 1000
                b.stop()
                floor = baseline("sts", sts.url, s, args.concurrency, mode)
                row(f"CLI credentials, broker CPU per issuance ({mode})",
                    f"{cpu:.3f} ms ({r['rps']:.0f}/s, {r['failed']} failed)",
                    f"SDK alone {floor['cpu_ms_per_op']:.3f} ms/call", "<= 0.2 ms")

            # 2. End to end against moto, one call at a time.
            moto, moto_port = start_moto()
            b = Broker(issuer, f"http://127.0.0.1:{moto_port}", work, "assume_role", name="cli-moto")
            token = access_token(b.port, issuer)
            hdr = {"Authorization": f"Bearer {token}"}
            drive(b.port, "/api/v1/roles/prod-admin/credentials", "", 1, 1, headers=hdr)
            lat, failed = drive(b.port, "/api/v1/roles/prod-admin/credentials", "", s, 1, limit=args.e2e_calls,
                                headers=hdr)
            b.stop()
            bare_body = urllib.parse.urlencode({
                "Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": "arn:aws:iam::111122223333:role/Admin",
                "RoleSessionName": "alice@example.com", "SourceIdentity": "alice@example.com",
                "DurationSeconds": "3600"})
            sig = {"Content-Type": "application/x-www-form-urlencoded", "X-Amz-Date": "20260101T000000Z",
                   "Authorization": "AWS4-HMAC-SHA256 Credential=AKIABENCHBENCHBENCH0/20260101/us-east-1/sts/"
                                    "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64}
            drive(moto_port, "/", bare_body, 1, 1, headers=sig)
            bare, bare_failed = drive(moto_port, "/", bare_body, s, 1, limit=args.e2e_calls, headers=sig)
            row("CLI credentials end to end vs bare AssumeRole, moto, p50",
                f"{pct(lat, 50):.2f} ms ({len(lat)} calls, {failed} failed)",
                f"{pct(bare, 50):.2f} ms ({len(bare)} calls, {bare_failed} failed)",
                f"<= 1.1x: {pct(lat, 50) / pct(bare, 50):.2f}x")
            moto.terminate()
            moto.wait(10)
            moto = None

            # 3. SAML ACS vs bare samael on the same responses. Both run within the 90 s
            # samael allows after a response's IssueInstant, so they are signed just before.
            baseline("saml-make", saml_dir, args.saml_responses, f"{base}/saml/bench-saml/metadata",
                     f"{base}/saml/bench-saml/acs")
            responses = open(os.path.join(saml_dir, "responses.txt")).read().split()
            bare = baseline("saml-bare", saml_dir, min(s, 5), 2)
            b = Broker(issuer, sts.url, work, "assume_role", port=port, name="saml", extra=saml_idp)
            rps, cpu, n, failed = saml_acs(b, responses, args.concurrency, work)
            b.stop()
            row(f"SAML ACS responses/s ({len(responses)} signed by xmlsec1)",
                f"{rps:.0f}/s, {cpu:.2f} ms CPU ({n} ok, {failed} refused)",
                f"samael {bare['per_second']:.0f}/s, {bare['cpu_ms_per_op']:.2f} ms CPU",
                f">= 0.9x: {rps / bare['per_second']:.2f}x")

            # 4. OIDC callback, memory and Redis.
            for label, store in [("memory", 'store = "memory"'), ("Redis", redis_store)]:
                b = Broker(issuer, sts.url, work, "assume_role", store, name=f"oidc-{label}")
                oidc_logins(b, issuer, 40, 2)  # warm-up
                start_cpu, cb_cpu, cb_p50 = oidc_logins(b, issuer, args.logins, 4)
                b.stop()
                row(f"OIDC callback, broker CPU per sign-in ({label})", f"{cb_cpu:.3f} ms (p50 {cb_p50:.2f} ms)",
                    f"login start {start_cpu:.3f} ms", "<= 0.3 ms")

            # 5 and 6. The role picker on Redis vs an actix-web hello server; memory figures.
            readies = []
            for i in range(5):
                b = Broker(issuer, sts.url, work, "assume_role", redis_store, name=f"ready{i}", extra=saml_idp,
                           port=port)
                readies.append(b.ready_ms)
                if i < 4:
                    b.stop()
            idle, idle_anon, idle_file = b.rss_mb(), b.rss_mb("RssAnon"), b.rss_mb("RssFile")
            cookie = browser_session(b.port, issuer)
            peak = RssPeak(b)
            wrk(b.port, "/", 1, headers={"Cookie": cookie})
            picker = wrk(b.port, "/", s, args.concurrency, headers={"Cookie": cookie})
            token = access_token(b.port, issuer)
            wrk(b.port, "/api/v1/roles/prod-admin/credentials", s, args.concurrency, method="POST",
                headers={"Authorization": f"Bearer {token}"})
            under_load, load_anon = peak.done(), b.rss_mb("RssAnon")
            keys = subprocess.run(["redis-cli", "-p", str(redis_port), "--scan", "--pattern", "*session:*"],
                                  capture_output=True, text=True).stdout.split()
            sizes = [int(subprocess.run(["redis-cli", "-p", str(redis_port), "memory", "usage", k],
                                        capture_output=True, text=True).stdout.strip() or 0) for k in keys]
            b.stop()
            hellos = []
            for extra_args in [[], [f"redis://127.0.0.1:{redis_port}/"]]:
                hello_port = free_port()
                hello = subprocess.Popen([os.environ["ROLEGATE_BASELINES"], "hello", str(hello_port), *extra_args])
                wait_port(hello_port, "the hello server")
                wrk(hello_port, "/", 1)
                hellos.append(wrk(hello_port, "/", s, args.concurrency))
                hello.terminate()
                hello.wait(10)
            h, hr = hellos
            row("role picker GET / with a session, Redis (2 cores)",
                f"{picker['rps']:.0f}/s, p99 {picker['p99']:.2f} ms ({picker['failed']} failed)",
                f"actix hello {h['rps']:.0f}/s, p99 {h['p99']:.2f} ms",
                f">= 0.5x: {picker['rps'] / h['rps']:.2f}x")
            row("  the floor: hello + one Redis GETEX per request",
                "", f"{hr['rps']:.0f}/s, p99 {hr['p99']:.2f} ms",
                f"rolegate / floor: {picker['rps'] / hr['rps']:.2f}x")
            row("RSS idle / under load", f"{idle:.1f} MB / {under_load:.1f} MB", "", "<= 20 MB / <= 40 MB")
            row("  of which heap and stacks (RssAnon), idle / after load", f"{idle_anon:.1f} MB / {load_anon:.1f} MB",
                f"binary and libraries (RssFile) {idle_file:.1f} MB", "")
            row("start -> ready (median of 5)", f"{statistics.median(readies):.0f} ms "
                f"(min {min(readies):.0f}, max {max(readies):.0f})", "", "<= 50 ms")
            row("Redis bytes per session (MEMORY USAGE)", f"{max(sizes) if sizes else float('nan')} B "
                f"({len(sizes)} sessions)", "", "<= 512 B")
        finally:
            if moto:
                moto.terminate()
            redis_proc.terminate()
            redis_proc.wait(10)
    loads.append(" ".join(open("/proc/loadavg").read().split()[:3]))
    print(f"load average before: {loads[0]}; after: {loads[1]}")


def csrf_of(port, cookie):
    """The CSRF token of the role picker for this session."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/", headers={"Cookie": cookie})
    html = c.getresponse().read().decode()
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def wave(args):
    """The rows this wave's changes move: broker CPU per issuance through the JSON API
    (locks, the per-person index, STS clients per worker) next to the SDK alone; the
    browser's credentials page (memory and Redis) next to the API; the role picker on
    Redis next to a hello server and the hello + GETEX floor. Same run, same machine."""
    issuer, sts = Issuer(), CannedSts()
    s = args.seconds
    loads = [" ".join(open("/proc/loadavg").read().split()[:3])]
    print(f"== this wave's rows (release), {args.concurrency} connections, {s}s per figure")
    with tempfile.TemporaryDirectory() as work:
        redis_proc, redis_port = start_redis(work)
        redis_store = f'store = "redis"\nredis_url = "redis://127.0.0.1:{redis_port}/"'
        try:
            for label, store in [("memory", 'store = "memory"'), ("Redis", redis_store)]:
                b = Broker(issuer, sts.url, work, "assume_role", store, name=f"wave-{label}")
                token = access_token(b.port, issuer)
                api, hdr = "/api/v1/roles/prod-admin/credentials", {"Authorization": f"Bearer {token}"}
                wrk(b.port, api, 1, method="POST", headers=hdr)
                cpu0 = cpu_seconds(b.proc.pid)
                r = wrk(b.port, api, s, args.concurrency, method="POST", headers=hdr)
                api_cpu = (cpu_seconds(b.proc.pid) - cpu0) / max(r["ok"], 1) * 1000
                print(f"  API credentials, broker CPU per issuance ({label}): {api_cpu:.3f} ms "
                      f"({r['rps']:.0f}/s, {r['failed']} failed)")
                cookie = browser_session(b.port, issuer)
                csrf = csrf_of(b.port, cookie)
                form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
                page = "/roles/prod-admin/credentials"
                wrk(b.port, page, 1, method="POST", body=f"csrf={csrf}", headers=form)
                cpu0 = cpu_seconds(b.proc.pid)
                r = wrk(b.port, page, s, args.concurrency, method="POST", body=f"csrf={csrf}", headers=form)
                page_cpu = (cpu_seconds(b.proc.pid) - cpu0) / max(r["ok"], 1) * 1000
                print(f"  credentials page, broker CPU per issuance ({label}): {page_cpu:.3f} ms "
                      f"({r['rps']:.0f}/s, {r['failed']} failed) = API + {page_cpu - api_cpu:.3f} ms")
                if label == "Redis":
                    wrk(b.port, "/", 1, headers={"Cookie": cookie})
                    cpu0 = cpu_seconds(b.proc.pid)
                    picker = wrk(b.port, "/", s, args.concurrency, headers={"Cookie": cookie})
                    picker_cpu = (cpu_seconds(b.proc.pid) - cpu0) / max(picker["ok"], 1) * 1000
                b.stop()
            floor = baseline("sts", sts.url, s, args.concurrency, "assume_role")
            print(f"  the SDK alone, CPU per STS call: {floor['cpu_ms_per_op']:.3f} ms")
            hellos = []
            for extra_args in [[], [f"redis://127.0.0.1:{redis_port}/"]]:
                hello_port = free_port()
                hello = subprocess.Popen([os.environ["ROLEGATE_BASELINES"], "hello", str(hello_port), *extra_args])
                wait_port(hello_port, "the hello server")
                wrk(hello_port, "/", 1)
                hellos.append(wrk(hello_port, "/", s, args.concurrency))
                hello.terminate()
                hello.wait(10)
            h, hr = hellos
            print(f"  role picker GET / (Redis): {picker['rps']:.0f}/s, {picker_cpu:.3f} ms CPU, p99 {picker['p99']:.2f} ms;"
                  f" hello {h['rps']:.0f}/s = {picker['rps'] / h['rps']:.2f}x; floor (hello + GETEX) {hr['rps']:.0f}/s"
                  f" = {picker['rps'] / hr['rps']:.2f}x")
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)
    loads.append(" ".join(open("/proc/loadavg").read().split()[:3]))
    print(f"load average before: {loads[0]}; after: {loads[1]}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["exchange", "scaleout", "table", "wave"])
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--e2e-calls", type=int, default=300)
    p.add_argument("--saml-responses", type=int, default=1500)
    p.add_argument("--logins", type=int, default=800)
    args = p.parse_args()
    {"exchange": exchange, "scaleout": scaleout, "table": table, "wave": wave}[args.scenario](args)


if __name__ == "__main__":
    main()
