// A real OpenID provider (node's oidc-provider) for the tests of `ods serve`'s bearer tokens.
//
// Started by tests/support/oidc_provider.py with a config file (argv[2]) holding:
//   {port, audience, api_client, jwks: {keys: [private JWKs]}, clients: [{client_id, client_secret, tenant,
//    realm_roles, client_roles}]}
// Each client stands for a user of the seed's roles: a client-credentials grant with `resource=<audience>`
// yields a JWT access token (RS256, signed with the first key) whose claims follow Keycloak's layout:
// realm_access.roles, resource_access.<api_client>.roles and a `tenant` claim.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const byClient = new Map(config.clients.map((client) => [client.client_id, client]));

const provider = new Provider(issuer, {
  clients: config.clients.map(({ client_id, client_secret }) => ({
    client_id,
    client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  jwks: config.jwks,
  cookies: { keys: ['ods-test-cookie-key-not-a-secret'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: config.audience,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 900,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const client = byClient.get(token.clientId);
    if (!client) return undefined;
    const claims = {
      realm_access: { roles: client.realm_roles ?? [] },
      resource_access: { [config.api_client]: { roles: client.client_roles ?? [] } },
    };
    if (client.tenant) claims.tenant = client.tenant;
    return claims;
  },
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
