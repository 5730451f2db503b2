// A tiny single-page app for rolegate's tests: it signs the person in at the OpenID
// Provider itself (code + PKCE as the public client "app"), then exchanges the ID token at
// rolegate for AWS credentials with fetch (CORS), and shows the assumed-role ARN.
// First load: index.html?op=ISSUER&broker=URL&app=APP_ID&role=ROLE
const $ = (id) => document.getElementById(id);
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const here = `${location.origin}${location.pathname}`;

async function start() {
  const q = new URLSearchParams(location.search);
  const cfg = { op: q.get('op'), broker: q.get('broker'), app: q.get('app'), role: q.get('role') };
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('login', JSON.stringify({ cfg, verifier, state }));
  const auth = new URL(`${cfg.op}/auth`);
  for (const [k, v] of Object.entries({ client_id: 'app', response_type: 'code', scope: 'openid email profile groups', redirect_uri: here, code_challenge: challenge, code_challenge_method: 'S256', state, nonce: b64url(crypto.getRandomValues(new Uint8Array(16))) })) auth.searchParams.set(k, v);
  location.assign(auth.toString());
}

async function finish(code, returnedState) {
  const { cfg, verifier, state } = JSON.parse(sessionStorage.getItem('login'));
  if (returnedState !== state) throw new Error('state mismatch');
  $('status').textContent = 'exchanging…';
  const tokenRes = await fetch(`${cfg.op}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'authorization_code', client_id: 'app', code, redirect_uri: here, code_verifier: verifier }) });
  const tokens = await tokenRes.json();
  if (!tokens.id_token) throw new Error(`no ID token: ${JSON.stringify(tokens)}`);
  const res = await fetch(`${cfg.broker}/oauth/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      client_id: cfg.app,
      subject_token: tokens.id_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
      requested_token_type: 'urn:rolegate:params:oauth:token-type:aws-credentials',
      audience: cfg.role,
    }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`${body.error}: ${body.error_description}`);
  $('result').textContent = body.assumed_role_arn;
  $('status').textContent = 'done';
}

const q = new URLSearchParams(location.search);
(q.get('code') ? finish(q.get('code'), q.get('state')) : start()).catch((e) => {
  $('error').textContent = String(e && e.message || e);
  $('status').textContent = 'failed';
});
