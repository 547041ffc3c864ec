// A real OpenID provider for the single sign-on tests: the `oidc-provider` package, with one
// confidential client (ours) and a few officials of the province, each with the claims a
// province's identity provider would give (groups for the role, an agency code).
//
// Configured by the environment: OIDC_ISSUER, OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
// OIDC_REDIRECT_URI. Prints "ready <issuer>" once it listens. Its login form (the package's
// development interactions) takes any password; the login picks the official.
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
};

const issuer = env('OIDC_ISSUER');
const port = Number(env('OIDC_PORT'));

// The officials the provider knows: sub → claims.
const officials = {
  'lan.nguyen': {
    name: 'Nguyễn Thị Lan',
    preferred_username: 'lan.nt',
    groups: ['nhan-vien', 'ioc-can-bo'],
    agency: 'trung-tam-ioc',
  },
  'minh.le': {
    name: 'Lê Văn Minh',
    preferred_username: 'minh.lv',
    groups: ['ioc-lanh-dao'],
  },
  'khach.tran': {
    name: 'Trần Văn Khách',
    preferred_username: 'khach.tv',
    groups: ['nhan-vien'],
    agency: 'trung-tam-ioc',
  },
};

// A fresh signing key per run: the relying party must read it from the JWKS.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env('OIDC_CLIENT_ID'),
      client_secret: env('OIDC_CLIENT_SECRET'),
      redirect_uris: [env('OIDC_REDIRECT_URI')],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'ioc'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    ioc: ['groups', 'agency'],
  },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, sub) {
    const official = officials[sub];
    if (!official) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...official }) };
  },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
