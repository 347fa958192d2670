/**
 * CareThread's own browser apps as SMART clients: public (PKCE only), each with the one
 * redirect URI it is served at under BASE_URL. They are registered at every start-up, so a
 * new install's apps work with no set-up and a changed BASE_URL is picked up.
 */
import type { ClientRegistration } from './clients.js';

export interface WebAppClient {
  clientId: string;
  clientName: string;
  /** Path under BASE_URL where the app is served; also its redirect URI. */
  path: string;
  /** What the app asks for at authorize (within `scopes`). */
  scope: string;
}

export const WEB_APPS = {
  /** Launched from the EHR (EHR launch): providers' inbox and threads. */
  provider: {
    clientId: 'carethread-provider-app',
    clientName: 'CareThread provider app',
    path: '/apps/provider/',
    scope: 'launch openid fhirUser offline_access user/*.cruds',
  },
  /** Standalone launch by a patient or representative. */
  portal: {
    clientId: 'carethread-portal',
    clientName: 'CareThread patient portal',
    path: '/portal/',
    scope: 'launch/patient openid fhirUser offline_access patient/*.cruds',
  },
  /** Standalone launch by an auditor: measures, reports and the audit trail. */
  auditor: {
    clientId: 'carethread-auditor',
    clientName: 'CareThread auditor dashboard',
    path: '/auditor/',
    scope: 'openid fhirUser offline_access user/*.rs user/MeasureReport.cruds',
  },
} satisfies Record<string, WebAppClient>;

export function webAppRegistrations(baseUrl: string): ClientRegistration[] {
  return Object.values(WEB_APPS).map((app) => ({
    clientId: app.clientId,
    clientName: app.clientName,
    authMethod: 'none',
    redirectUris: [`${baseUrl}${app.path}`],
    scopes: app.scope.split(' '),
  }));
}
