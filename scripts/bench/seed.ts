/**
 * Stores the benchmark dataset through the real write paths: Patients and Practitioners with
 * `ResourceStore.create`, message threads through the messaging layer's import (what an
 * integrating system loading a previous portal's history gets: each message with its
 * Provenance, times and senders kept), in batch transactions. So every row, history row,
 * index-table row and search column is what the API would have stored (validated, with
 * meta.versionId and meta.lastUpdated). The one difference: the load writes no AuditEvents
 * (it is not a user's interaction, and they would double its time). Afterwards the database
 * is vacuumed and analyzed, as autovacuum would have done on one that grew this big.
 */
import type { Resource } from '@medplum/fhirtypes';
import { AuditLog, ResourceStore, systemContext } from '../../fhir/index.js';
import type { Database } from '../../fhir/index.js';
import { MessageEffects, Messaging, UrgencyScreen } from '../../fhir/messaging/index.js';
import type { AppContext } from '../../server/context.js';
import type { Dataset, SeedItem } from './dataset.js';
import { importerContext } from './identities.js';
import { ProgressBar } from './progress.js';

export interface SeedReport {
  resources: number;
  seconds: number;
  perSecond: number;
  /** Seconds spent in VACUUM ANALYZE after the load. */
  vacuumSeconds: number;
}

export interface SeedOptions {
  label: string;
  parallel: number;
  batchSize: number;
}

/** An audit log that records nothing: the bulk load is not audited (see the header). */
class SeedAuditLog extends AuditLog {
  override async write(): Promise<void> {}
  override enqueue(): void {}
}

export async function seedDataset(app: AppContext, dataset: Dataset, options: SeedOptions): Promise<SeedReport> {
  const store = new ResourceStore(app.db, new SeedAuditLog(app.db, { fhirBaseUrl: app.fhirBase }), app.store.options);
  const messaging = new Messaging(store, new MessageEffects(store, { calendar: app.calendar, ehrDelivery: false }), { urgency: new UrgencyScreen([]) });
  const system = systemContext('bench-seed');
  const importer = await importerContext(app);
  const total = dataset.patients.length + dataset.practitioners.length + dataset.size.communications;
  const progress = new ProgressBar(`seeding ${options.label}`, total);
  const started = performance.now();

  const batches = batchesOf(dataset, options.batchSize);
  const parallel = app.db.engine === 'pglite' ? 1 : options.parallel;
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let batch = batches[next++]; batch; batch = batches[next++]) {
        const items = batch();
        await store.transaction(async (tx) => {
          for (const { id, resource } of items) {
            if (resource.resourceType === 'Communication') {
              await messaging.create(importer, resource, { tx, id });
            } else {
              await store.create(system, resource, resource.resourceType, { tx, id });
            }
          }
        });
        progress.advance(items.length);
      }
    })
  );
  progress.finish();
  const seconds = (performance.now() - started) / 1000;

  const vacuumStarted = performance.now();
  await vacuumAnalyze(app.db);
  return { resources: total, seconds, perSecond: total / seconds, vacuumSeconds: (performance.now() - vacuumStarted) / 1000 };
}

/** Batches of about `size` resources; a thread never spans two batches. Built lazily. */
function batchesOf(dataset: Dataset, size: number): (() => SeedItem<Resource>[])[] {
  const batches: (() => SeedItem<Resource>[])[] = [];
  const fixed: SeedItem<Resource>[] = [...dataset.patients, ...dataset.practitioners];
  for (let i = 0; i < fixed.length; i += size) {
    const slice = fixed.slice(i, i + size);
    batches.push(() => slice);
  }
  let first = 0;
  let count = 0;
  const flush = (end: number) => {
    const [from, to] = [first, end];
    batches.push(() => {
      const items: SeedItem<Resource>[] = [];
      for (let t = from; t < to; t++) {
        items.push(...dataset.threadResources(t));
      }
      return items;
    });
    first = end;
    count = 0;
  };
  dataset.threads.forEach((thread, t) => {
    count += thread.messageIds.length + 1;
    if (count >= size) {
      flush(t + 1);
    }
  });
  if (first < dataset.threads.length) {
    flush(dataset.threads.length);
  }
  return batches;
}

async function vacuumAnalyze(db: Database): Promise<void> {
  // The whole database, so any index tables the write path fills are covered too.
  await db.query('VACUUM ANALYZE');
  if (db.engine === 'postgres') {
    // Start the measurements from a clean slate rather than mid-checkpoint.
    await db.query('CHECKPOINT').catch(() => undefined);
  }
}
