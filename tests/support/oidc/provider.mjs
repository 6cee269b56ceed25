// A real OpenID provider (node's oidc-provider) for the tests of `ods serve`'s bearer tokens.
//
// Started by tests/support/oidc_provider.py with a config file (argv[2]) holding:
//   {port, audience, api_client, jwks: {keys: [private JWKs]}, clients: [{client_id, client_secret, tenant,
//    realm_roles, client_roles}]}
// Each client stands for a user of the seed's roles: a client-credentials grant with `resource=<audience>`
// yields a JWT access token (RS256, signed with the first key) whose claims follow Keycloak's layout:
// realm_access.roles, resource_access.<api_client>.roles and a `tenant` claim.
//
// The console's browser login: `login_client` (optional) is a public client for authorization code + PKCE
// S256 (a "native" client: its loopback redirect URIs match on any port), and `users` the people who sign
// in through oidc-provider's own login form (devInteractions: any password; the login names the user).
// Consent is pre-granted (a first-party client), refresh tokens are issued, and a user's access token
// carries the same Keycloak-style claims as a client's. `access_ttl` (optional) sets the tokens' lifetime.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const byClient = new Map(config.clients.map((client) => [client.client_id, client]));
const byUser = new Map((config.users ?? []).map((user) => [user.id, user]));
const loginClient = config.login_client;

const keycloakClaims = (who) => {
  const claims = {
    realm_access: { roles: who.realm_roles ?? [] },
    resource_access: { [config.api_client]: { roles: who.client_roles ?? [] } },
  };
  if (who.tenant) claims.tenant = who.tenant;
  return claims;
};

const provider = new Provider(issuer, {
  clients: [
    ...config.clients.map(({ client_id, client_secret }) => ({
      client_id,
      client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    ...(loginClient
      ? [
          {
            client_id: loginClient.client_id,
            application_type: 'native',
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            redirect_uris: loginClient.redirect_uris,
            post_logout_redirect_uris: loginClient.post_logout_redirect_uris,
            token_endpoint_auth_method: 'none',
          },
        ]
      : []),
  ],
  findAccount: async (ctx, id) => {
    const user = byUser.get(id);
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, name: user.name ?? id, tenant: user.tenant }) };
  },
  claims: { openid: ['sub'], profile: ['name'] },
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    if (!loginClient || ctx.oidc.client.clientId !== loginClient.client_id) return undefined;
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile offline_access');
    grant.addResourceScope(config.audience, 'api');
    await grant.save();
    return grant;
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: config.access_ttl ?? 900, Session: 3600, Grant: 3600, RefreshToken: 3600 },
  pkce: { required: () => true },
  jwks: config.jwks,
  cookies: { keys: ['ods-test-cookie-key-not-a-secret'] },
  features: {
    devInteractions: { enabled: Boolean(loginClient) },
    rpInitiatedLogout: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: config.audience,
        accessTokenFormat: 'jwt',
        accessTokenTTL: config.access_ttl ?? 900,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const who = token.accountId ? byUser.get(token.accountId) : byClient.get(token.clientId);
    return who ? keycloakClaims(who) : undefined;
  },
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
