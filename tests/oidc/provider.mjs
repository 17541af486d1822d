// A local OpenID Connect provider for Socialjour's OIDC tests (oidc-provider, dev mode).
//
//   node provider.mjs <port> <redirect_uri> [client_id] [client_secret]
//
// Listens on 127.0.0.1:<port> only, issuer http://127.0.0.1:<port>, and prints
// "READY <issuer>" on stdout once it accepts connections. The built-in development
// interactions are on: any password logs in one of the accounts below, then a
// consent form; the test fills both like a browser would.
//
// Two clients share the redirect URI: a confidential one (client_secret_basic,
// RS256 ID tokens) and a public one (no secret, ES256 ID tokens). PKCE S256 is
// required for both.
//
// Accounts:
//   tolvan            - name claims and personal_number in the ID token and userinfo
//   tolvan-userinfo   - personal_number only from the userinfo endpoint
//   utan-personnummer - name claims, no personal_number at all

import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const [port, redirectUri, clientId = 'socialjour', clientSecret = 'socialjour-test-secret'] =
  process.argv.slice(2);
if (!port || !redirectUri) {
  console.error('usage: node provider.mjs <port> <redirect_uri> [client_id] [client_secret]');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;

const TOLVAN = {
  name: 'Tolvan Tolvansson',
  given_name: 'Tolvan',
  family_name: 'Tolvansson',
  personal_number: '19121212-1212',
};

const ACCOUNTS = {
  tolvan: { idToken: TOLVAN, userinfo: TOLVAN },
  'tolvan-userinfo': {
    idToken: { ...TOLVAN, personal_number: undefined },
    userinfo: TOLVAN,
  },
  'utan-personnummer': {
    idToken: { name: 'Utan Personnummer' },
    userinfo: { name: 'Utan Personnummer' },
  },
};

function signingKey(type, options, kid, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    {
      client_id: `${clientId}-public`,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name'],
    personal_number: ['personal_number'],
  },
  // Scope claims go into the ID token too (a code-flow client otherwise gets them
  // only from userinfo), so both places the relying party reads are exercised.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
  },
  async findAccount(_ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) {
      return undefined;
    }
    return {
      accountId: id,
      async claims(use) {
        const claims = use === 'id_token' ? account.idToken : account.userinfo;
        return Object.fromEntries(
          Object.entries({ sub: id, ...claims }).filter(([, value]) => value !== undefined),
        );
      },
    };
  },
  jwks: {
    keys: [
      signingKey('rsa', { modulusLength: 2048 }, 'rsa-1', 'RS256'),
      signingKey('ec', { namedCurve: 'P-256' }, 'ec-1', 'ES256'),
    ],
  },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { AuthorizationCode: 120, Interaction: 600, Session: 600, Grant: 600, IdToken: 600 },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, error) => console.error('server_error', error));

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
