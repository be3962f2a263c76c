// A real, certified OpenID Provider (the npm package `oidc-provider`) for
// wristband's login tests (SPEC §7), so the flow is checked against a peer
// that implements OpenID Connect Core 1.0, RFC 6749, RFC 7636 (PKCE) and
// RP-Initiated Logout 1.0 rather than against our own reading of them.
//
// Usage: node server.js [settings.json]   (else $WB_OP_SETTINGS, else defaults)
// Once listening on 127.0.0.1:<free port> it prints exactly one line to
// stdout, {"issuer":"http://127.0.0.1:PORT"}, and nothing else ever: the
// harness (tests/common/oidc.rs) learns the address from it without a port
// race. Everything else goes to stderr.
//
// It exits when its stdin closes, so a test process that dies without
// running its destructors (SIGKILL, abort) leaves no OP behind.
//
// Test-only routes under /__test/ (JSON in, JSON out) let a test make the
// token endpoint fail, revoke grants, and count what the OP was asked.

import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info, which is stdout: keep
// stdout for the one issuer line.
console.info = console.error;
console.log = console.error;

const settings = loadSettings();

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

// One RSA key (RS256, the default id_token alg) and one P-256 key, so a
// client may ask for id_token_signed_response_alg "ES256".
const jwks = {
  keys: [
    { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig', alg: 'RS256' },
    { ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig', alg: 'ES256' },
  ],
};

// What the test hooks report and steer.
const stats = {
  code_ok: 0,
  code_error: 0,
  refresh_ok: 0,
  refresh_error: 0,
  injected_token_failures: 0,
  userinfo: 0,
  end_session: 0,
  tampered_id_tokens: 0,
};
// What the OP's answers get rewritten with, set by /__test/tamper (null:
// left alone). `id_token`: {claims, resign}: claims merged into the token
// endpoint's id_tokens, signed again with the OP's own key when `resign`
// (an IdP that really says so), else the signature left as it was (a
// forged id_token). `userinfo`: {claims} merged into userinfo answers.
// `discovery`: {fields} merged into the discovery document.
const tamper = { id_token: null, userinfo: null, discovery: null };
let tokenFailure = null; // null | "invalid_grant" | "server_error"
const grantOwners = new Map(); // grant id -> account id

let provider;
let handle;
const server = createServer((req, res) => {
  route(req, res).catch((err) => {
    console.error('request failed:', err);
    if (!res.headersSent) {
      sendJson(res, 500, { error: 'fixture_error', error_description: String(err) });
    } else {
      res.destroy();
    }
  });
});

server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  provider = new Provider(issuer, configuration());
  handle = provider.callback();
  provider.on('grant.success', (ctx) => count(ctx, 'ok'));
  provider.on('grant.error', (ctx) => count(ctx, 'error'));
  provider.on('end_session.success', () => { stats.end_session += 1; });
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  // oidc-provider checks a client's metadata on first use; a test should
  // fail here, at the start, rather than at its first login.
  for (const { client_id: id } of settings.clients) {
    try {
      if (!await provider.Client.find(id)) {
        throw new Error('not found');
      }
    } catch (err) {
      console.error(`client ${JSON.stringify(id)} is invalid: ${err.message} ${err.error_description ?? ''}`);
      process.exit(2);
    }
  }
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

function count(ctx, outcome) {
  const kind = { authorization_code: 'code', refresh_token: 'refresh' }[ctx.oidc.params?.grant_type];
  if (kind) {
    stats[`${kind}_${outcome}`] += 1;
  }
}

function configuration() {
  return {
    clients: settings.clients.map(clientMetadata),
    jwks,
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      groups: ['groups'],
    },
    // false: claims granted through scopes are in the id_token too, as
    // Keycloak, Entra ID and Okta do; `userinfo_only` then takes some out
    // (OIDC Core §5.4 would serve them from userinfo only).
    conformIdTokenClaims: false,
    findAccount,
    // Our own interactions below: a plain login form, and consent granted
    // without a click.
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: settings.end_session, logoutSource },
    },
    pkce: { required: () => true },
    rotateRefreshToken: true,
    // OIDC Core §11 keeps `offline_access` only with prompt=consent, which
    // the RPs wristband mimics do not send; Keycloak, Okta and Entra ID
    // still issue a refresh token then. So does this OP, to any client
    // allowed the refresh_token grant (`refresh_tokens` in the settings).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    clientBasedCORS: () => false,
    ttl: {
      AccessToken: settings.ttl.access_token,
      IdToken: settings.ttl.id_token,
      RefreshToken: settings.ttl.refresh_token,
      // Set only so oidc-provider does not print a notice for each default.
      Interaction: 3600,
      Session: 86400,
      Grant: 86400,
    },
  };
}

function clientMetadata({ refresh_tokens: refreshTokens = true, ...client }) {
  const metadata = {
    response_types: ['code'],
    grant_types: refreshTokens ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
    ...client,
  };
  // Unknown client metadata when the feature is off.
  if (!settings.end_session) {
    delete metadata.post_logout_redirect_uris;
  }
  return metadata;
}

async function findAccount(_ctx, sub) {
  const claims = settings.accounts[sub] ?? {};
  return {
    accountId: sub,
    async claims(use) {
      const out = { ...claims, sub };
      if (use === 'id_token') {
        for (const name of settings.userinfo_only) {
          delete out[name];
        }
      }
      return out;
    },
  };
}

async function logoutSource(ctx, form) {
  // The OP's form (with its xsrf token) submitted by a script, so a browser
  // goes straight through; an HTTP client posts xsrf and logout=yes itself.
  ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign out</title></head>
<body>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>
<script>document.querySelector('button[name=logout]').click()</script>
</body></html>`;
}

async function route(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const path = url.pathname;

  if (path.startsWith('/__test/')) {
    return testHook(req, res, path);
  }
  const interaction = path.match(/^\/interaction\/([^/]+)(\/login|\/abort)?$/);
  if (interaction) {
    return interact(req, res, interaction[2]);
  }
  if (req.method === 'POST' && path === '/token' && tokenFailure) {
    stats.injected_token_failures += 1;
    if (tokenFailure === 'invalid_grant') {
      return sendJson(res, 400, { error: 'invalid_grant', error_description: 'failure injected by the test' });
    }
    return sendJson(res, 500, { error: 'server_error', error_description: 'failure injected by the test' });
  }
  if (path === '/me') {
    stats.userinfo += 1;
  }
  if (req.method === 'POST' && path === '/token' && tamper.id_token) {
    rewriteJson(res, (doc) => {
      if (doc.id_token) {
        doc.id_token = rewriteJwt(doc.id_token, tamper.id_token);
        stats.tampered_id_tokens += 1;
      }
    });
  }
  if (path === '/me' && tamper.userinfo) {
    rewriteJson(res, (doc) => Object.assign(doc, tamper.userinfo.claims));
  }
  if (path === '/.well-known/openid-configuration' && tamper.discovery) {
    rewriteJson(res, (doc) => Object.assign(doc, tamper.discovery.fields));
  }
  return handle(req, res);
}

// oidc-provider (Koa) sets its headers, then calls res.end(body) once:
// the JSON body is rewritten there by `edit`, before anything is sent.
function rewriteJson(res, edit) {
  const end = res.end.bind(res);
  res.end = (chunk, ...rest) => {
    try {
      const doc = JSON.parse(Buffer.from(chunk).toString('utf8'));
      edit(doc);
      chunk = JSON.stringify(doc);
      res.setHeader('content-length', Buffer.byteLength(chunk));
    } catch (err) {
      console.error('tampering failed:', err);
    }
    return end(chunk, ...rest);
  };
}

// A JWT with `claims` merged into its payload; signed again with the OP's
// key of the header's `kid` when `resign`, else with its old signature.
function rewriteJwt(jwt, { claims, resign }) {
  const [header, payload, signature] = jwt.split('.');
  const merged = { ...JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')), ...claims };
  const body = Buffer.from(JSON.stringify(merged)).toString('base64url');
  if (!resign) {
    return [header, body, signature].join('.');
  }
  const { kid, alg } = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  const jwk = jwks.keys.find((key) => key.kid === kid);
  if (!jwk || !['RS256', 'ES256'].includes(alg)) {
    throw new Error(`cannot sign again: kid ${kid}, alg ${alg}`);
  }
  const key = createPrivateKey({ key: jwk, format: 'jwk' });
  const options = alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key;
  const signed = sign('sha256', Buffer.from(`${header}.${body}`), options);
  return [header, body, signed.toString('base64url')].join('.');
}

async function interact(req, res, action) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && !action) {
    if (details.prompt.name === 'login') {
      return sendHtml(res, loginForm(details.uid));
    }
    return consent(req, res, details);
  }
  if (req.method === 'POST' && action === '/login') {
    const login = new URLSearchParams(await readBody(req)).get('login');
    if (!login) {
      return sendHtml(res, loginForm(details.uid), 400);
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === '/abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  return sendJson(res, 405, { error: 'method_not_allowed' });
}

// Grants every scope and claim the request asked for, as a first-party IdP
// configured to skip consent does.
async function consent(req, res, { prompt: { details }, params, session, grantId }) {
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) {
    grant.addOIDCScope(details.missingOIDCScope.join(' '));
  }
  if (details.missingOIDCClaims) {
    grant.addOIDCClaims(details.missingOIDCClaims);
  }
  const id = await grant.save();
  grantOwners.set(id, session.accountId);
  return provider.interactionFinished(req, res, { consent: { grantId: id } }, { mergeWithLastSubmission: true });
}

function loginForm(uid) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<form method="post" action="/interaction/${uid}/login">
  <input type="text" name="login" required autofocus>
  <input type="password" name="password" required>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${uid}/abort">
  <button type="submit">Cancel</button>
</form>
</body></html>`;
}

async function testHook(req, res, path) {
  if (req.method === 'GET' && path === '/__test/stats') {
    return sendJson(res, 200, stats);
  }
  if (req.method !== 'POST') {
    return sendJson(res, 405, { error: 'method_not_allowed' });
  }
  const body = JSON.parse((await readBody(req)) || '{}');
  if (path === '/__test/token-failure') {
    if (![null, 'invalid_grant', 'server_error'].includes(body.answer ?? null)) {
      return sendJson(res, 400, { error: `unknown answer ${JSON.stringify(body.answer)}` });
    }
    tokenFailure = body.answer ?? null;
    return sendJson(res, 200, { answer: tokenFailure });
  }
  if (path === '/__test/tamper-id-tokens') {
    tamper.id_token = body.on === true ? { claims: { sub: 'mallory' }, resign: false } : null;
    return sendJson(res, 200, { on: tamper.id_token !== null });
  }
  if (path === '/__test/tamper') {
    const unknown = Object.keys(body).filter((key) => !(key in tamper));
    if (unknown.length) {
      return sendJson(res, 400, { error: `unknown parts ${unknown.join(', ')}` });
    }
    Object.assign(tamper, { id_token: null, userinfo: null, discovery: null }, body);
    return sendJson(res, 200, tamper);
  }
  if (path === '/__test/revoke-grants') {
    let revoked = 0;
    for (const [id, owner] of grantOwners) {
      if (body.sub === undefined || body.sub === owner) {
        const grant = await provider.Grant.find(id);
        await grant?.destroy();
        grantOwners.delete(id);
        revoked += 1;
      }
    }
    return sendJson(res, 200, { revoked });
  }
  return sendJson(res, 404, { error: 'not_found' });
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(value));
}

function sendHtml(res, html, status = 200) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function loadSettings() {
  const text = process.argv[2] ? readFileSync(process.argv[2], 'utf8') : process.env.WB_OP_SETTINGS;
  const given = text ? JSON.parse(text) : {};
  const known = ['clients', 'end_session', 'ttl', 'accounts', 'userinfo_only'];
  const unknown = Object.keys(given).filter((key) => !known.includes(key));
  if (unknown.length) {
    console.error(`unknown settings: ${unknown.join(', ')} (known: ${known.join(', ')})`);
    process.exit(2);
  }
  return {
    clients: given.clients ?? [],
    end_session: given.end_session ?? true,
    ttl: { access_token: 600, id_token: 600, refresh_token: 86400, ...given.ttl },
    accounts: given.accounts ?? {},
    userinfo_only: given.userinfo_only ?? [],
  };
}
