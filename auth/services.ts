/**
 * The authorization server's parts, wired once from configuration: keys, clients, users,
 * grants and tokens, plus the FHIR store and audit log they consult and record into.
 */
import type { AuditLog } from '../fhir/audit/audit-log.js';
import type { Database } from '../fhir/db/database.js';
import type { ResourceStore } from '../fhir/store/store.js';
import { webAppRegistrations } from './app-clients.js';
import { ClientRegistry } from './clients.js';
import { GrantStore } from './grants.js';
import { KeyStore } from './keys.js';
import { LaunchStore } from './launches.js';
import { TokenService } from './tokens.js';
import { UserDirectory } from './users.js';

export interface AuthSettings {
  baseUrl: string;
  fhirBase: string;
  accessTokenSeconds: number;
  refreshTokenSeconds: number;
  maxFailedLogins: number;
  smartStyleUrl: string;
  trustedIssuers: { issuer: string; jwksUri: string }[];
  bootstrap?: { clientId: string; clientSecret: string };
}

export interface AuthServices {
  settings: AuthSettings & { tokenUrl: string };
  db: Database;
  keys: KeyStore;
  clients: ClientRegistry;
  users: UserDirectory;
  grants: GrantStore;
  launches: LaunchStore;
  tokens: TokenService;
  audit: AuditLog;
  store: ResourceStore;
}

/** Scopes of the bootstrap administrator: everything, as a system client. */
export const ADMIN_SCOPES = ['system/*.cruds', 'system/*.*', 'system/*.read', 'system/*.write'];

export async function createAuthServices(db: Database, audit: AuditLog, store: ResourceStore, settings: AuthSettings): Promise<AuthServices> {
  const tokenUrl = `${settings.baseUrl}/auth/token`;
  const keys = await KeyStore.open(db, settings.accessTokenSeconds + 300);
  const grants = new GrantStore(db, settings.refreshTokenSeconds);
  const clients = new ClientRegistry(db, tokenUrl);
  if (settings.bootstrap) {
    await clients.register({
      clientId: settings.bootstrap.clientId,
      secret: settings.bootstrap.clientSecret,
      clientName: 'CareThread bootstrap administrator',
      authMethod: 'client_secret_basic',
      redirectUris: [],
      scopes: ADMIN_SCOPES,
      admin: true,
    });
  }
  for (const registration of webAppRegistrations(settings.baseUrl)) {
    await clients.register(registration);
  }
  return {
    settings: { ...settings, tokenUrl },
    db,
    keys,
    clients,
    users: new UserDirectory(db, settings.maxFailedLogins),
    grants,
    launches: new LaunchStore(db),
    tokens: new TokenService(keys, grants, settings.fhirBase, settings.trustedIssuers),
    audit,
    store,
  };
}
