// A real OpenID provider for the kit's tests, built on the `oidc-provider`
// package. It signs tokens with its own RSA key, publishes discovery and JWKS,
// and runs the authorization code flow. The only test convenience: the login
// and consent interaction is completed without a form, for the account named
// in `login_hint` (accounts come from OP_ACCOUNTS).
//
// Environment:
//   OP_ISSUER    issuer URL (https://127.0.0.1:<port>)
//   OP_PORT      port to listen on (127.0.0.1)
//   OP_CERT      PEM certificate, OP_KEY its key (HTTPS)
//   OP_ACCOUNTS  JSON file: {"<account id>": {<claims>}}
//   OP_CLIENTS   JSON file: [{client_id, client_secret, redirect_uris, id_token_ttl?}]
import fs from 'node:fs';
import https from 'node:https';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) { console.error(`op: ${name} is not set`); process.exit(2); }
  return value;
};

const accounts = JSON.parse(fs.readFileSync(env('OP_ACCOUNTS'), 'utf8'));
const clientList = JSON.parse(fs.readFileSync(env('OP_CLIENTS'), 'utf8'));
const ttlByClient = Object.fromEntries(clientList.map((c) => [c.client_id, c.id_token_ttl || 3600]));
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

const provider = new Provider(env('OP_ISSUER'), {
  clients: clientList.map(({ id_token_ttl, ...c }) => ({
    grant_types: ['authorization_code'], response_types: ['code'], ...c,
  })),
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  // introspection: resource servers (Apache mod_auth_openidc in front of a
  // federated Keystone, tests/cloud/test_checkin_federated.py) validate access tokens
  features: { devInteractions: { enabled: false }, introspection: { enabled: true } },
  conformIdTokenClaims: false,
  scopes: ['openid', 'offline_access', 'email', 'profile', 'eduperson_entitlement', 'roles'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    eduperson_entitlement: ['eduperson_entitlement'],
    roles: ['realm_access'],
  },
  ttl: {
    IdToken: (ctx, token, client) => ttlByClient[client.clientId],
    AccessToken: 3600, Grant: 3600, Interaction: 600, Session: 3600, AuthorizationCode: 60,
  },
  async findAccount(ctx, id) {
    if (!accounts[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
  },
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint;
    if (!accounts[accountId]) {
      return provider.interactionFinished(req, res, { error: 'access_denied', error_description: `unknown account ${accountId}` });
    }
    return provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details || {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = https.createServer(
  { cert: fs.readFileSync(env('OP_CERT')), key: fs.readFileSync(env('OP_KEY')) },
  (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((err) => {
        console.error('op: interaction failed', err);
        res.statusCode = 500;
        res.end(String(err));
      });
      return;
    }
    callback(req, res);
  },
);
server.listen(Number(env('OP_PORT')), '127.0.0.1', () => {
  console.log(`op: listening as ${env('OP_ISSUER')}`);
});
