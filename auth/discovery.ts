/**
 * Discovery documents: SMART's `.well-known/smart-configuration` and OpenID Connect's
 * `.well-known/openid-configuration`, both describing only what this server really does.
 */
import type { AuthSettings } from './services.js';

export const SMART_CAPABILITIES = [
  'launch-ehr',
  'launch-standalone',
  'authorize-post',
  'client-public',
  'client-confidential-symmetric',
  'client-confidential-asymmetric',
  'sso-openid-connect',
  'context-banner',
  'context-style',
  'context-ehr-patient',
  'context-ehr-encounter',
  'context-standalone-patient',
  'permission-offline',
  'permission-online',
  'permission-patient',
  'permission-user',
  'permission-v1',
  'permission-v2',
];

export const SCOPES_SUPPORTED = [
  'openid',
  'fhirUser',
  'profile',
  'launch',
  'launch/patient',
  'launch/encounter',
  'offline_access',
  'online_access',
  'patient/*.cruds',
  'patient/*.rs',
  'patient/*.read',
  'patient/*.write',
  'user/*.cruds',
  'user/*.rs',
  'user/*.read',
  'user/*.write',
  'system/*.cruds',
  'system/*.rs',
  'system/*.read',
  'system/*.write',
];

export function endpoints(settings: Pick<AuthSettings, 'baseUrl'>) {
  const auth = `${settings.baseUrl}/auth`;
  return {
    authorize: `${auth}/authorize`,
    token: `${auth}/token`,
    introspect: `${auth}/introspect`,
    revoke: `${auth}/revoke`,
    register: `${auth}/register`,
    jwks: `${auth}/jwks`,
    launch: `${auth}/launch`,
    users: `${auth}/users`,
  };
}

export function smartConfiguration(settings: Pick<AuthSettings, 'baseUrl' | 'fhirBase'>): Record<string, unknown> {
  const urls = endpoints(settings);
  return {
    issuer: settings.fhirBase,
    jwks_uri: urls.jwks,
    authorization_endpoint: urls.authorize,
    token_endpoint: urls.token,
    introspection_endpoint: urls.introspect,
    revocation_endpoint: urls.revoke,
    registration_endpoint: urls.register,
    grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    scopes_supported: SCOPES_SUPPORTED,
    capabilities: SMART_CAPABILITIES,
  };
}

export function openidConfiguration(settings: Pick<AuthSettings, 'baseUrl' | 'fhirBase'>): Record<string, unknown> {
  const urls = endpoints(settings);
  return {
    issuer: settings.fhirBase,
    jwks_uri: urls.jwks,
    authorization_endpoint: urls.authorize,
    token_endpoint: urls.token,
    registration_endpoint: urls.register,
    introspection_endpoint: urls.introspect,
    revocation_endpoint: urls.revoke,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    scopes_supported: SCOPES_SUPPORTED.filter((s) => !s.includes('/') || s.startsWith('launch')),
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce', 'fhirUser'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'private_key_jwt'],
    code_challenge_methods_supported: ['S256'],
    grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
  };
}

/** The `oauth-uris` extension of the CapabilityStatement's rest.security. */
export function capabilitySecurity(settings: Pick<AuthSettings, 'baseUrl'>) {
  const urls = endpoints(settings);
  return {
    cors: true,
    service: [
      {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
        text: 'OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)',
      },
    ],
    extension: [
      {
        url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
        extension: [
          { url: 'authorize', valueUri: urls.authorize },
          { url: 'token', valueUri: urls.token },
          { url: 'introspect', valueUri: urls.introspect },
          { url: 'revoke', valueUri: urls.revoke },
          { url: 'register', valueUri: urls.register },
        ],
      },
    ],
  };
}
