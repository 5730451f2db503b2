// Signs a JWT with the test OP's own private key (its JWKS file), with whatever header the
// test asks for: tokens a real IdP could have signed but rolegate must still refuse
// (a jku/x5u/x5c/jwk header, an unknown crit, an algorithm the IdP is not allowed).
//
// usage: node sign.mjs JWKS_FILE '{"header": {...}, "claims": {...}}'   -> the token
import fs from 'node:fs';
import crypto from 'node:crypto';

const [jwksFile, spec] = process.argv.slice(2);
const { header, claims } = JSON.parse(spec);
const jwk = JSON.parse(fs.readFileSync(jwksFile, 'utf8')).keys[0];
const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
const h = { alg: 'RS256', kid: jwk.kid, typ: 'JWT', ...header };
const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const input = `${enc(h)}.${enc(claims)}`;
const hash = { RS256: 'sha256', RS384: 'sha384', RS512: 'sha512', PS256: 'sha256' }[h.alg] || 'sha256';
const opts = h.alg.startsWith('PS') ? { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : key;
const sig = crypto.sign(hash, Buffer.from(input), opts).toString('base64url');
console.log(`${input}.${sig}`);
