"""A stand-in for the AWS federation endpoint and console, for tests and the local demo.

No emulator of https://signin.aws.amazon.com/federation exists, so this follows AWS's
documented contract for custom identity brokers:

* ``Action=getSigninToken`` (GET or POST form) with ``Session`` = JSON
  ``{"sessionId", "sessionKey", "sessionToken"}`` and optional ``SessionDuration``
  (900..43200) -> ``{"SigninToken": "..."}``. The credentials are checked for real by
  calling ``GetCallerIdentity`` on the STS emulator with them.
* ``Action=login`` with ``Issuer``, ``Destination`` and ``SigninToken`` -> 302 to
  ``Destination``; the sign-in token is single use and expires after 15 minutes.
* ``/console/...``: a fake console page showing who is signed in.
* ``/__test/events``: what was received (never the secrets), for test assertions.

Env: FEDERATION_PORT, STS_ENDPOINT (the moto server URL). Loopback only.
"""

import html
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

PORT = int(os.environ.get("FEDERATION_PORT", "5100"))
STS_ENDPOINT = os.environ.get("STS_ENDPOINT", "http://127.0.0.1:5000")
TOKENS = {}    # signin token -> {"arn", "session_duration", "created"}
CONSOLE = {}   # console cookie -> arn
EVENTS = []
LOCK = threading.Lock()


def caller_arn(session):
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=STS_ENDPOINT,
        aws_access_key_id=session["sessionId"],
        aws_secret_access_key=session["sessionKey"],
        aws_session_token=session["sessionToken"],
        config=Config(retries={"max_attempts": 1}),
    )
    return sts.get_caller_identity()["Arn"]


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeFederation/1"

    def log_message(self, fmt, *args):  # quiet: tests read /__test/events instead
        pass

    def reply(self, status, body=b"", content_type="text/plain; charset=utf-8", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def params(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            q.update(parse_qs(self.rfile.read(length).decode()))
        return url.path, {k: v[0] for k, v in q.items()}

    def do_POST(self):
        self.do_GET()

    def do_GET(self):
        path, p = self.params()
        if path == "/healthz":
            return self.reply(200, b"ok")
        if path == "/__test/events":
            with LOCK:
                return self.reply(200, json.dumps(EVENTS).encode(), "application/json")
        if path == "/federation":
            return self.federation(p)
        if path.startswith("/console"):
            return self.console(path)
        return self.reply(404, b"not found")

    def federation(self, p):
        action = p.get("Action")
        if action == "getSigninToken":
            try:
                session = json.loads(p.get("Session", ""))
                keys = ("sessionId", "sessionKey", "sessionToken")
                if not all(isinstance(session.get(k), str) for k in keys):
                    raise ValueError("Session needs sessionId, sessionKey and sessionToken")
                duration = p.get("SessionDuration")
                if duration is not None and not (duration.isdigit() and 900 <= int(duration) <= 43200):
                    raise ValueError("SessionDuration must be 900..43200")
                arn = caller_arn(session)
            except (ValueError, ClientError, BotoCoreError) as e:
                with LOCK:
                    EVENTS.append({"action": "getSigninToken", "ok": False, "error": str(e)[:200]})
                return self.reply(400, b"invalid session")
            token = secrets.token_urlsafe(32)
            with LOCK:
                TOKENS[token] = {"arn": arn, "session_duration": duration, "created": time.time()}
                EVENTS.append({"action": "getSigninToken", "ok": True, "arn": arn,
                               "session_duration": duration, "method": self.command})
            return self.reply(200, json.dumps({"SigninToken": token}).encode(), "application/json")
        if action == "login":
            token, issuer, dest = p.get("SigninToken"), p.get("Issuer"), p.get("Destination")
            with LOCK:
                entry = TOKENS.pop(token, None) if token else None
            ok = entry is not None and time.time() - entry["created"] < 900 and bool(issuer) and bool(dest)
            with LOCK:
                EVENTS.append({"action": "login", "ok": ok, "issuer": issuer, "destination": dest})
            if not ok:
                return self.reply(400, b"invalid or used sign-in token")
            cookie = secrets.token_urlsafe(16)
            with LOCK:
                CONSOLE[cookie] = entry["arn"]
            return self.reply(302, b"", headers=[("Location", dest),
                                                  ("Set-Cookie", f"fakeconsole={cookie}; Path=/console; HttpOnly")])
        return self.reply(400, b"unknown Action")

    def console(self, path):
        cookies = dict(c.strip().split("=", 1) for c in (self.headers.get("Cookie") or "").split(";") if "=" in c)
        with LOCK:
            arn = CONSOLE.get(cookies.get("fakeconsole", ""))
        if not arn:
            return self.reply(403, b"not signed in to the fake console")
        page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>AWS Management Console (fake)</title></head>
<body style="font-family: sans-serif; margin: 2rem"><h1>AWS Management Console (fake)</h1>
<p id="signed-in-as">Signed in as <code>{html.escape(arn)}</code></p><p id="path">{html.escape(path)}</p></body></html>"""
        return self.reply(200, page.encode(), "text/html; charset=utf-8")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"fake federation endpoint on http://127.0.0.1:{PORT}/federation (STS {STS_ENDPOINT})", flush=True)
    server.serve_forever()
