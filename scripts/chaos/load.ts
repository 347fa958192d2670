/**
 * The sustained message load of a chaos run: one worker per patient, each starting threads
 * as that patient, writing in them, and having a practitioner reply (which queues an e-mail
 * notice to the patient). Every Communication carries a client-chosen identifier, so what
 * became of a request the server never answered can be looked up afterwards. Workers wait
 * while the server is down (a refused connection was never a request) and stop at a
 * deadline or a request budget.
 */
import { randomUUID } from 'node:crypto';
import type { Api } from '../../test/support/processes.js';
import type { ChaosPractice } from './practice.js';

export const CHAOS_IDENTIFIER_SYSTEM = 'urn:carethread:chaos';

export type Kind = 'header' | 'patient-message' | 'reply';

export interface SentRequest {
  key: string;
  kind: Kind;
  patient: string;
  /** 'ok' (2xx), 'refused' (another status) or 'unanswered' (the connection broke, or no answer in time). */
  outcome: 'ok' | 'refused' | 'unanswered';
  status?: number;
  /** The stored id, from a 2xx answer. */
  id?: string;
  /** When the outcome was known (ms since the epoch). */
  at: number;
}

export interface LoadControl {
  /** Resolves when the server is up (workers await it before each request). */
  available(): Promise<void>;
  /** True once the run should end. */
  done(): boolean;
  /** Each worker sends at most one request per interval. */
  intervalMs: number;
}

/** Runs the load, appending each request to `sent` as its outcome is known. */
export async function runLoad(api: Api, practice: ChaosPractice, control: LoadControl, budget: number, sent: SentRequest[]): Promise<void> {
  const worker = async (w: number) => {
    const patient = practice.patients[w];
    const threads: string[] = [];
    let n = 0;
    let next = Date.now();
    while (!control.done() && sent.length < budget) {
      await sleep(next - Date.now());
      next = Math.max(Date.now(), next + control.intervalMs);
      await control.available();
      if (control.done()) {
        break;
      }
      const practitioner = practice.practitioners[n++ % practice.practitioners.length];
      const key = randomUUID();
      const identifier = [{ system: CHAOS_IDENTIFIER_SYSTEM, value: key }];
      const roll = Math.random();
      let kind: Kind;
      let token: string;
      let body: Record<string, unknown>;
      if (!threads.length || roll < 0.2) {
        kind = 'header';
        token = patient.token;
        body = {
          resourceType: 'Communication',
          status: 'in-progress',
          identifier,
          subject: { reference: patient.reference },
          recipient: [{ reference: practitioner.reference }],
          topic: { text: 'A question' },
          category: [{ coding: [{ system: 'https://carethread.dev/fhir/CodeSystem/message-category', code: 'medical-question' }] }],
        };
      } else {
        const thread = threads[Math.floor(Math.random() * threads.length)];
        kind = roll < 0.6 ? 'patient-message' : 'reply';
        token = kind === 'reply' ? practitioner.token : patient.token;
        body = {
          resourceType: 'Communication',
          status: 'completed',
          identifier,
          subject: { reference: patient.reference },
          partOf: [{ reference: thread }],
          payload: [{ contentString: kind === 'reply' ? 'Thanks, noted.' : 'One more thing.' }],
        };
      }
      const record: SentRequest = { key, kind, patient: patient.reference, outcome: 'unanswered', at: 0 };
      try {
        const res = await api.fhir('POST', 'Communication', token, body, 10_000);
        record.status = res.status;
        record.outcome = res.status >= 200 && res.status < 300 ? 'ok' : 'refused';
        if (record.outcome === 'ok') {
          record.id = res.body?.id;
          if (kind === 'header') {
            threads.push(`Communication/${record.id}`);
          }
        }
      } catch (err) {
        if (refusedConnection(err)) {
          // Never reached the server: not a request. Wait for it to come back.
          await sleep(50);
          continue;
        }
      }
      record.at = Date.now();
      sent.push(record);
    }
  };
  await Promise.all(practice.patients.map((_, w) => worker(w)));
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

function refusedConnection(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string } })?.cause;
  return cause?.code === 'ECONNREFUSED';
}
