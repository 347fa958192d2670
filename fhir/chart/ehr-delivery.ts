/**
 * The outbox deliverer of kind 'ehr': puts a copy of one of our messages (or its
 * Provenance) into the EHR's chart through its FHIR API, with fhir-kit-client.
 *
 * Exactly once: the copy carries our identifier and is sent as a conditional create
 * (`If-None-Exist` on that identifier), so a retry after a lost answer finds the copy the
 * EHR already made instead of making another. In thread order: the outbox hands over one
 * thread's entries oldest first, each after the one before it was delivered, so the
 * Communications a copy refers to are already in the EHR; one that is not yet there (or
 * cannot be found) makes the entry wait and retry.
 */
import type { Resource } from '@medplum/fhirtypes';
import { Client } from 'fhir-kit-client';
import type { FhirResource } from 'fhir-kit-client';
import { systemContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { FhirError } from '../errors.js';
import type { Deliverer, OutboxEntry } from '../outbox/outbox.js';
import { PermanentFailure } from '../outbox/outbox.js';
import type { ResourceStore } from '../store/store.js';
import { chartCopy, chartQuery, referencedCommunications } from './chart-copy.js';
import { deliveryFailure, EhrDeliveryError, statusOf } from './ehr-errors.js';
import { EhrTokens } from './ehr-token.js';
import type { EhrEndpoint } from './ehr-token.js';

/** The types effects.ts queues for the EHR. */
const DELIVERED_TYPES = new Set(['Communication', 'Provenance']);

export interface EhrDeliveryOptions {
  endpoint: EhrEndpoint;
  store: ResourceStore;
  /** Our database (to tell a referenced message still on its way from one never sent). */
  db: Queryable;
  /** Our FHIR base URL, for references to resources the EHR does not hold. */
  ourFhirBase: string;
  /** Per request to the EHR (default 30 s). */
  timeoutMs?: number;
  log?: { info(details: object, message: string): void };
}

/** The 'ehr' deliverer for the outbox. */
export function ehrDeliverer(options: EhrDeliveryOptions): Deliverer {
  const delivery = new EhrDelivery(options);
  return (entry) => delivery.deliver(entry);
}

export class EhrDelivery {
  private readonly client: Client;
  private readonly tokens: EhrTokens;
  private readonly timeoutMs: number;

  constructor(private readonly options: EhrDeliveryOptions) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.client = new Client({ baseUrl: options.endpoint.fhirUrl });
    this.tokens = new EhrTokens(options.endpoint, this.timeoutMs);
  }

  async deliver(entry: OutboxEntry): Promise<void> {
    const { type, id } = (entry.payload ?? {}) as { type?: unknown; id?: unknown };
    if (typeof type !== 'string' || typeof id !== 'string' || !DELIVERED_TYPES.has(type)) {
      throw new PermanentFailure('Not a Communication or Provenance entry');
    }
    const resource = await this.ours(type, id);
    const what = `the ${type}`;
    try {
      const ehrIds = new Map<string, string>();
      for (const communication of referencedCommunications(resource, this.options.ourFhirBase)) {
        const ehrId = await this.ehrIdOf(communication);
        if (ehrId) {
          ehrIds.set(communication, ehrId);
        }
      }
      const copy = chartCopy(resource, { ourFhirBase: this.options.ourFhirBase, ehrIds });
      const ifNoneExist = new URLSearchParams(chartQuery(type, id)).toString();
      const created = await this.authorized((headers) =>
        this.client.create({
          resourceType: type,
          body: copy as unknown as FhirResource,
          options: { headers: { ...headers, 'if-none-exist': ifNoneExist }, signal: AbortSignal.timeout(this.timeoutMs) },
        })
      );
      this.options.log?.info({ subject: `${type}/${id}`, ehr: `${type}/${String(created.id)}`, attempts: entry.attempts }, 'delivered to the EHR chart');
    } catch (err) {
      throw deliveryFailure(err, what);
    }
  }

  /** Our current version of the resource; one deleted since it was queued is not sent. */
  private async ours(type: string, id: string): Promise<Resource> {
    try {
      const stored = await this.options.store.read(systemContext(), type, id);
      return JSON.parse(stored.content) as Resource;
    } catch (err) {
      if (err instanceof FhirError && (err.status === 404 || err.status === 410)) {
        throw new PermanentFailure(`The ${type} no longer exists here`);
      }
      throw err;
    }
  }

  /**
   * The EHR's id of the copy of our Communication; undefined when that Communication is
   * never sent (an imported one), so the reference points at us instead.
   */
  private async ehrIdOf(communication: string): Promise<string | undefined> {
    const bundle = (await this.authorized((headers) =>
      this.client.search({
        resourceType: 'Communication',
        searchParams: { ...chartQuery('Communication', communication), _count: 2 },
        options: { headers, signal: AbortSignal.timeout(this.timeoutMs) },
      })
    )) as { entry?: { resource?: { id?: string } }[] };
    const matches = (bundle.entry ?? []).map((e) => e.resource?.id).filter((v): v is string => typeof v === 'string');
    if (matches.length > 1) {
      throw new PermanentFailure('The EHR holds more than one copy of a message this one refers to');
    }
    if (matches.length === 1) {
      return matches[0];
    }
    // The idempotency key effects.ts gives a Communication's EHR delivery.
    const queued = await this.options.db.query(`SELECT 1 FROM outbox WHERE idempotency_key = $1`, [`ehr:Communication/${communication}`]);
    if (queued.length) {
      throw new EhrDeliveryError('A message this one refers to is not in the EHR yet');
    }
    return undefined;
  }

  /** Runs an EHR request with a token; on 401, once more with a new one. */
  private async authorized<T>(request: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    const token = await this.tokens.current();
    try {
      return await request({ authorization: `Bearer ${token}` });
    } catch (err) {
      if (statusOf(err) !== 401 || !this.tokens.renewable) {
        throw err;
      }
      this.tokens.forget(token);
      return request({ authorization: `Bearer ${await this.tokens.current()}` });
    }
  }
}
