"""boto3/botocore as the client of rolegate's AWS SSO APIs, for the tests.

usage:
  sso_client.py start BROKER                      -> RegisterClient + StartDeviceAuthorization (JSON)
  sso_client.py poll BROKER START.json SESSION    -> CreateToken polling; writes the SDK's token cache
                                                     (~/.aws/sso/cache/<sha1(SESSION)>.json)
  sso_client.py register-code BROKER REDIRECT     -> RegisterClient for the authorization-code grant (JSON)
  sso_client.py code-token BROKER REG.json CODE REDIRECT VERIFIER -> CreateToken (authorization_code)
  sso_client.py caller PROFILE STS_ENDPOINT       -> sts get-caller-identity through the SSO profile
  sso_client.py list BROKER TOKEN MAX             -> ListAccounts / ListAccountRoles, paging
  sso_client.py call OP BROKER TOKEN [ARGS...]    -> one raw SSO API call; prints "ok" or the error code
                                                     (OP: credentials ROLE ACCOUNT | logout |
                                                      refresh START.json | start-as ID SECRET)
"""
import datetime
import hashlib
import os
import json
import sys
import time

import boto3
import botocore
from botocore import UNSIGNED
from botocore.config import Config

NOSIGN = Config(signature_version=UNSIGNED, retries={"max_attempts": 1})


def oidc(broker):
    return boto3.client("sso-oidc", region_name="us-east-1", endpoint_url=f"{broker}/sso-oidc", config=NOSIGN)


def portal(broker):
    return boto3.client("sso", region_name="us-east-1", endpoint_url=f"{broker}/sso-portal", config=NOSIGN)


def iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start(broker):
    c = oidc(broker)
    reg = c.register_client(clientName="boto3-test", clientType="public")
    dev = c.start_device_authorization(clientId=reg["clientId"], clientSecret=reg["clientSecret"], startUrl=f"{broker}/")
    print(json.dumps({**{k: reg[k] for k in ("clientId", "clientSecret", "clientSecretExpiresAt")},
                      **{k: dev[k] for k in ("deviceCode", "userCode", "verificationUriComplete", "interval", "expiresIn")}}))


def cache_path(session_name):
    name = hashlib.sha1(session_name.encode("utf-8")).hexdigest() + ".json"
    return os.path.expanduser(os.path.join("~", ".aws", "sso", "cache", name))


def poll(broker, start_file, session_name):
    s = json.load(open(start_file))
    cache = cache_path(session_name)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    c = oidc(broker)
    pending = slowdowns = 0
    interval = s["interval"]
    deadline = time.time() + s["expiresIn"]
    fast = True  # poll once too fast on purpose: the server must say slow down
    while time.time() < deadline:
        try:
            t = c.create_token(clientId=s["clientId"], clientSecret=s["clientSecret"],
                               grantType="urn:ietf:params:oauth:grant-type:device_code", deviceCode=s["deviceCode"])
            break
        except c.exceptions.AuthorizationPendingException:
            pending += 1
        except c.exceptions.SlowDownException:
            slowdowns += 1
            interval += 5
        if fast:
            fast = False
            continue
        time.sleep(interval)
    else:
        sys.exit("no token before the code expired")
    now = time.time()
    json.dump({
        "startUrl": f"{broker}/", "region": "us-east-1", "accessToken": t["accessToken"],
        "expiresAt": iso(now + t["expiresIn"]), "clientId": s["clientId"], "clientSecret": s["clientSecret"],
        "registrationExpiresAt": iso(s["clientSecretExpiresAt"]), "refreshToken": t["refreshToken"],
    }, open(cache, "w"))
    print(json.dumps({"ok": True, "pending": pending, "slowdowns": slowdowns, "accessToken": t["accessToken"]}))


def register_code(broker, redirect):
    reg = oidc(broker).register_client(
        clientName="aws-cli-like", clientType="public", scopes=["sso:account:access"],
        grantTypes=["authorization_code", "refresh_token"], redirectUris=[redirect], issuerUrl=f"{broker}/")
    print(json.dumps({k: reg[k] for k in ("clientId", "clientSecret", "authorizationEndpoint", "tokenEndpoint")}))


def code_token(broker, reg_file, code, redirect, verifier):
    s = json.load(open(reg_file))
    try:
        t = oidc(broker).create_token(clientId=s["clientId"], clientSecret=s["clientSecret"], grantType="authorization_code",
                                      code=code, redirectUri=redirect, codeVerifier=verifier)
        print(json.dumps({"accessToken": t["accessToken"], "refreshToken": t["refreshToken"], "expiresIn": t["expiresIn"]}))
    except botocore.exceptions.ClientError as e:
        print(json.dumps({"error": e.response["Error"]["Code"]}))


def caller(profile, sts_endpoint):
    session = boto3.Session(profile_name=profile)
    arn = session.client("sts", endpoint_url=sts_endpoint).get_caller_identity()["Arn"]
    print(arn)


def list_all(broker, token, max_results):
    p = portal(broker)
    accounts, pages, kw = [], 0, {}
    while True:
        r = p.list_accounts(accessToken=token, maxResults=int(max_results), **kw)
        pages += 1
        accounts += r["accountList"]
        if not r.get("nextToken"):
            break
        kw = {"nextToken": r["nextToken"]}
    roles = {}
    for a in accounts:
        kw, names = {}, []
        while True:
            r = p.list_account_roles(accessToken=token, accountId=a["accountId"], maxResults=int(max_results), **kw)
            names += [x["roleName"] for x in r["roleList"]]
            if not r.get("nextToken"):
                break
            kw = {"nextToken": r["nextToken"]}
        roles[a["accountId"]] = names
    print(json.dumps({"accounts": accounts, "account_pages": pages, "roles": roles}))


def call(op, broker, token, *args):
    try:
        if op == "credentials":
            portal(broker).get_role_credentials(accessToken=token, roleName=args[0], accountId=args[1])
        elif op == "logout":
            portal(broker).logout(accessToken=token)
        elif op == "refresh":
            s = json.load(open(args[0]))
            oidc(broker).create_token(clientId=s["clientId"], clientSecret=s["clientSecret"], grantType="refresh_token", refreshToken=token)
        elif op == "start-as":
            oidc(broker).start_device_authorization(clientId=args[0], clientSecret=args[1], startUrl=f"{broker}/")
        print("ok")
    except botocore.exceptions.ClientError as e:
        print(e.response["Error"]["Code"])


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    {"start": start, "poll": poll, "caller": caller, "list": list_all, "call": call,
     "register-code": register_code, "code-token": code_token}[cmd](*rest)
