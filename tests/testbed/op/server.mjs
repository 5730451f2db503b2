// A real OpenID Provider for rolegate's tests: panva/oidc-provider (OpenID-certified) with
// real password checks, PKCE required, a `groups` claim, and auto-consent.
//
// Env: OP_PORT (required), OP_ISSUER (default http://127.0.0.1:$OP_PORT),
//      OP_REDIRECTS (comma-separated redirect URIs of the confidential client),
//      OP_APP_REDIRECTS (comma-separated redirect URIs of the public client "app"),
//      OP_JWKS_FILE (signing keys; generated on first start: restart with another file to
//      rotate keys), OP_KID (kid of a generated key).
//
// Test-only hooks (loopback tests need hostile tokens signed by the real key):
//   POST /__test/tamper  {"claims": {...}, "header": {...}, "unsigned": false}
// makes the NEXT token response carry an ID token whose claims/header are overridden and
// re-signed with the provider's own key (or with a fresh unknown key: {"foreign_key": true}).
//   POST /__test/user  {"user": "alice", "groups": [...], "disabled": true|false}
// changes a user at run time: new groups show in the next token (a refresh included); a
// disabled user's refresh tokens are refused with invalid_grant (the grant is over).
import http from 'node:http';
import fs from 'node:fs';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const PORT = Number(process.env.OP_PORT || 9000);
const ISSUER = process.env.OP_ISSUER || `http://127.0.0.1:${PORT}`;
const REDIRECTS = (process.env.OP_REDIRECTS || 'http://127.0.0.1:8080/oidc/corp/callback').split(',');
// The public app's redirect URIs (a single-page app test serves it on its own ports).
const APP_REDIRECTS = (process.env.OP_APP_REDIRECTS || 'http://127.0.0.1/app/callback').split(',');
const JWKS_FILE = process.env.OP_JWKS_FILE || new URL('./jwks.json', import.meta.url).pathname;
const KID = process.env.OP_KID || 'test-rs256';

const USERS = {
  alice: { password: 'alice-pw', email: 'alice@example.com', name: 'Alice Example', groups: ['aws-admins', 'developers'] },
  bob: { password: 'bob-pw', email: 'bob@example.com', name: 'Bob Example', groups: ['developers'] },
  carol: { password: 'carol-pw', email: 'carol@example.com', name: 'Carol NoGroups', groups: [] },
  carl: { password: 'carl-pw', email: 'carl@contractors.example.com', name: 'Carl Contractor', groups: ['aws-admins', 'developers'] },
  dana: { password: 'dana-pw', email: 'dana@example.com', name: 'Dana Admin', groups: ['rolegate-admins'] },
};

async function loadJwks() {
  if (fs.existsSync(JWKS_FILE)) return JSON.parse(fs.readFileSync(JWKS_FILE, 'utf8'));
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwks = { keys: [{ ...(await jose.exportJWK(privateKey)), kid: KID, alg: 'RS256', use: 'sig' }] };
  fs.writeFileSync(JWKS_FILE, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body><h1>${esc(title)}</h1>${body}</body></html>`;

const jwks = await loadJwks();
const configuration = {
  clients: [
    {
      client_id: 'broker',
      client_secret: 'broker-secret',
      redirect_uris: REDIRECTS,
      post_logout_redirect_uris: REDIRECTS.map((u) => new URL('/', u).href),
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      // A public app (single-page or mobile style): code + PKCE, no secret. Its ID tokens
      // are what apps present to rolegate (audience "app").
      client_id: 'app',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: APP_REDIRECTS,
    },
    {
      client_id: 'cli',
      token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks,
  cookies: { keys: ['rolegate-test-cookie-key'] },
  pkce: { required: () => true },
  // A browser app calls the token endpoint from its own origin.
  clientBasedCORS: () => true,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    const u = USERS[id];
    if (!u || u.disabled) return undefined;
    return { accountId: id, async claims() { return { sub: id, email: u.email, email_verified: true, name: u.name, preferred_username: id, groups: u.groups }; } };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    const grant = grantId ? await ctx.oidc.provider.Grant.find(grantId)
      : new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile groups offline_access');
    grant.addOIDCClaims(['sub', 'email', 'email_verified', 'name', 'preferred_username', 'groups']);
    await grant.save();
    return grant;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // A refresh token for every code-flow client allowed the grant (the broker re-validates
  // people with it). oidc-provider otherwise drops offline_access unless prompt=consent.
  async issueRefreshToken(ctx, client) { return client.grantTypeAllowed('refresh_token'); },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true, charset: 'digits', mask: '****-****',
      async userCodeInputSource(ctx, form, out, err) { ctx.body = page('Device sign-in', `${err ? '<p>Incorrect code.</p>' : ''}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`); },
      async userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) { ctx.body = page('Confirm device', `<p>Code <code>${esc(userCode)}</code></p>${form}<button type="submit" form="op.deviceConfirmForm">Continue</button>`); },
      async successSource(ctx) { ctx.body = page('Sign-in Success', '<p>You can close this page.</p>'); },
    },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: { AccessToken: 600, IdToken: 600, AuthorizationCode: 60, DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 3600, RefreshToken: 86400 },
  async renderError(ctx, out) { ctx.type = 'html'; ctx.body = page('Error', `<pre id="error">${esc(JSON.stringify(out))}</pre>`); },
};

const provider = new Provider(ISSUER, configuration);

// ---- test hook: tamper with the next ID token ------------------------------------------
let tamper = null;
const signingKey = await jose.importJWK(jwks.keys[0], 'RS256');
provider.use(async (ctx, next) => {
  await next();
  if (!tamper || ctx.path !== '/token' || ctx.status !== 200 || !ctx.body?.id_token) return;
  const t = tamper; tamper = null;
  const claims = { ...jose.decodeJwt(ctx.body.id_token), ...(t.claims || {}) };
  for (const [k, v] of Object.entries(claims)) if (v === null) delete claims[k];
  const header = { alg: 'RS256', kid: jwks.keys[0].kid, typ: 'JWT', ...(t.header || {}) };
  let key = signingKey;
  if (t.foreign_key) {
    key = (await jose.generateKeyPair('RS256')).privateKey;
    header.kid = t.header?.kid || 'unknown-kid';
  }
  if (header.alg === 'HS256') key = new TextEncoder().encode(t.hmac_secret || 'broker-secret');
  if (header.alg === 'none') {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    ctx.body = { ...ctx.body, id_token: `${enc(header)}.${enc(claims)}.` };
    return;
  }
  let idToken = await new jose.SignJWT(claims).setProtectedHeader(header).sign(key);
  // `raw_header`: replace the signed header with one the signer would refuse (an `alg`
  // in odd case, say), to test how a token that does not even parse is reported.
  if (t.raw_header) {
    const [, payload, sig] = idToken.split('.');
    idToken = `${Buffer.from(JSON.stringify({ ...header, ...t.raw_header })).toString('base64url')}.${payload}.${sig}`;
  }
  ctx.body = { ...ctx.body, id_token: idToken };
});

const loginForm = (uid, msg = '') => page('Sign-in', `${msg ? `<p id="error">${esc(msg)}</p>` : ''}
<form id="login" method="post" action="/interaction/${uid}/login">
  <label>Username <input id="username" name="username" autofocus required></label>
  <label>Password <input id="password" name="password" type="password" required></label>
  <button id="submit" type="submit">Sign in</button>
</form>`);

async function readBody(req) { let b = ''; for await (const c of req) b += c; return b; }

async function interaction(req, res, uid, action) {
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('uid mismatch');
    if (details.prompt.name !== 'login') return provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
    if (req.method === 'GET') { res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }); return res.end(loginForm(uid)); }
    if (req.method === 'POST' && action === 'login') {
      const { username, password } = Object.fromEntries(new URLSearchParams(await readBody(req)));
      const u = USERS[username];
      if (!u || u.password !== password) { res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' }); return res.end(loginForm(uid, 'Invalid username or password')); }
      return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
    }
    res.writeHead(405); res.end();
  } catch (e) { res.writeHead(400, { 'content-type': 'text/plain' }); res.end(`interaction error: ${e.message}`); }
}

const callback = provider.callback();
http.createServer(async (req, res) => {
  const m = /^\/interaction\/([^/?]+)(?:\/(login))?(?:\?.*)?$/.exec(req.url);
  if (m) return interaction(req, res, m[1], m[2]);
  if (req.url === '/__test/tamper' && req.method === 'POST') { tamper = JSON.parse(await readBody(req) || '{}'); res.writeHead(204); return res.end(); }
  if (req.url === '/__test/user' && req.method === 'POST') {
    const change = JSON.parse(await readBody(req) || '{}');
    const u = USERS[change.user];
    if (!u) { res.writeHead(404); return res.end(); }
    if (Array.isArray(change.groups)) u.groups = change.groups;
    if (typeof change.disabled === 'boolean') u.disabled = change.disabled;
    res.writeHead(204); return res.end();
  }
  if (req.url === '/healthz') { res.writeHead(200); return res.end('ok'); }
  return callback(req, res);
}).listen(PORT, '127.0.0.1', () => console.log(`oidc-provider ${ISSUER} listening on 127.0.0.1:${PORT}`));
