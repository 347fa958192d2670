/**
 * EHR launch contexts. The EHR (an administrator-level backend client) records which user
 * is launching the app for which patient and encounter, and receives an opaque `launch`
 * value to hand to the app. A launch is single use, lives a few minutes, and when created
 * for a particular client only that client may redeem it.
 */
import { randomBytes } from 'node:crypto';
import type { Database } from '../fhir/db/database.js';
import { sha256 } from './clients.js';

export interface LaunchContext {
  fhirUser: string;
  patient?: string;
  encounter?: string;
  clientId?: string;
  needPatientBanner: boolean;
}

export const LAUNCH_SECONDS = 300;

export class LaunchStore {
  constructor(private readonly db: Database) {}

  async create(context: LaunchContext, createdBy: string): Promise<{ launch: string; expiresIn: number }> {
    const launch = randomBytes(24).toString('base64url');
    await this.db.query(
      `INSERT INTO auth_launches (launch_hash, client_id, patient, encounter, fhir_user, need_patient_banner, created_by, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))`,
      [
        sha256(launch),
        context.clientId ?? null,
        context.patient ?? null,
        context.encounter ?? null,
        context.fhirUser,
        context.needPatientBanner,
        createdBy,
        LAUNCH_SECONDS,
      ]
    );
    return { launch, expiresIn: LAUNCH_SECONDS };
  }

  /** Redeems a launch for `clientId`: undefined when unknown, used, expired or bound to another client. */
  async redeem(launch: string, clientId: string): Promise<LaunchContext | undefined> {
    const rows = await this.db.query(
      `UPDATE auth_launches SET used_at = now()
       WHERE launch_hash = $1 AND used_at IS NULL AND expires_at > now() AND (client_id IS NULL OR client_id = $2)
       RETURNING client_id, patient, encounter, fhir_user, need_patient_banner`,
      [sha256(launch), clientId]
    );
    const row = rows[0];
    if (!row) {
      return undefined;
    }
    return {
      fhirUser: row.fhir_user,
      patient: row.patient ?? undefined,
      encounter: row.encounter ?? undefined,
      clientId: row.client_id ?? undefined,
      needPatientBanner: row.need_patient_banner,
    };
  }
}
