/**
 * The small practice a chaos run writes into, seeded through the API as an installation
 * would be: patients with e-mail addresses and logins, practitioners with logins, an
 * Encounter between each patient and each practitioner (so they may message each other),
 * and one rest-hook Subscription per patient to every message about them (an integration
 * that is told of each new message). Tokens are issued through the SMART flows.
 */
import { randomBytes } from 'node:crypto';
import type { Api } from '../../test/support/processes.js';

export interface Person {
  reference: string;
  token: string;
}

export interface ChaosPractice {
  admin: string;
  patients: Person[];
  practitioners: Person[];
}

const PATIENT_SCOPE = 'openid fhirUser launch/patient patient/*.cruds';
const PRACTITIONER_SCOPE = 'openid fhirUser user/*.cruds';

export async function seedChaosPractice(api: Api, options: { patients: number; practitioners: number; hookUrl?: string }): Promise<ChaosPractice> {
  const admin = await api.adminToken();
  const password = randomBytes(12).toString('hex');
  const clientId = await api.registerPublicClient(admin);
  const practitioners: Person[] = [];
  for (let i = 0; i < options.practitioners; i++) {
    const reference = await api.create(admin, { resourceType: 'Practitioner', name: [{ family: `Chaos${i}`, given: ['Pat'] }] } as never);
    await api.createUser(admin, { username: `chaos-dr-${i}`, password, fhirUser: reference });
    practitioners.push({ reference, token: '' });
  }
  const patients: Person[] = [];
  for (let i = 0; i < options.patients; i++) {
    const reference = await api.create(admin, {
      resourceType: 'Patient',
      name: [{ family: `Chaos${i}`, given: ['Casey'] }],
      telecom: [{ system: 'email', value: `chaos-patient-${i}@example.test` }],
    } as never);
    for (const practitioner of practitioners) {
      await api.create(admin, {
        resourceType: 'Encounter',
        status: 'finished',
        class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
        subject: { reference },
        participant: [{ individual: { reference: practitioner.reference } }],
      } as never);
    }
    if (options.hookUrl) {
      await api.create(admin, {
        resourceType: 'Subscription',
        status: 'requested',
        reason: 'Chaos integration',
        criteria: `Communication?subject=${reference}`,
        channel: { type: 'rest-hook', endpoint: options.hookUrl, payload: 'application/fhir+json' },
      } as never);
    }
    await api.createUser(admin, { username: `chaos-patient-${i}`, password, fhirUser: reference });
    patients.push({ reference, token: '' });
  }
  // Tokens after every care relationship exists (access decisions are cached per token).
  for (const [i, p] of practitioners.entries()) {
    p.token = await api.userToken(clientId, `chaos-dr-${i}`, password, PRACTITIONER_SCOPE);
  }
  for (const [i, p] of patients.entries()) {
    p.token = await api.userToken(clientId, `chaos-patient-${i}`, password, PATIENT_SCOPE);
  }
  return { admin, patients, practitioners };
}
