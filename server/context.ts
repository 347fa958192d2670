/**
 * The application context: everything a request handler needs, built once from the
 * configuration and handed explicitly to the router factories. Tests build their own with
 * overrides (another database, a captured log stream).
 */
import { Administration } from '../auth/admin.js';
import { AuthorizeFlow } from '../auth/authorize.js';
import { ResourceServer } from '../auth/resource-server.js';
import { createAuthServices } from '../auth/services.js';
import type { AuthServices } from '../auth/services.js';
import { TokenEndpoint } from '../auth/token-endpoint.js';
import { AuditLog, loadDefinitions, migrate, openDatabase, ResourceStore } from '../fhir/index.js';
import type { Database, RestEnvironment } from '../fhir/index.js';
import { HolidayCalendar } from '../fhir/calendar/business-days.js';
import { ehrDeliverer } from '../fhir/chart/index.js';
import {
  checkBinary,
  checkCommunicationChange,
  checkTaskWrite,
  Inbox,
  MessageEffects,
  Messaging,
  messagingOperations,
  publishReferenceData,
  ThreadAutoClose,
  UrgencyScreen,
  withContextConfidentiality,
} from '../fhir/messaging/index.js';
import { DEFAULT_OUTBOX_OPTIONS, OutboxWorker } from '../fhir/outbox/outbox.js';
import { AppointmentReminders, Notifier, notificationOperations } from '../fhir/notifications/index.js';
import { REST_HOOK_KIND, Subscriptions } from '../fhir/subscriptions/index.js';
import { measureResources } from '../fhir/measures/catalog.js';
import { MeasureEvaluator } from '../fhir/measures/evaluate.js';
import { measureOperations } from '../fhir/measures/operations.js';
import { portalOperations, RecordMailer, TRANSMIT_KIND } from '../fhir/portal/index.js';
import { reportSigner, verifyReport } from '../auth/report-signing.js';
import type { Deliverer } from '../fhir/outbox/outbox.js';
import { auditChainOperations, auditEventHandlers, AuditSealer } from '../fhir/audit/index.js';
import { chainHeadSigner } from '../auth/audit-signing.js';
import type { ServerConfig } from './config.js';
import { createLogger } from './logger.js';
import type { Logger } from './logger.js';
import { LoadShedder } from './load-shedding.js';
import { Metrics } from './metrics.js';

export const SOFTWARE_VERSION = '0.1.0';

export interface AppContextOverrides {
  logger?: Logger;
  db?: Database;
}

export class AppContext {
  readonly authorizeFlow: AuthorizeFlow;
  readonly tokenEndpoint: TokenEndpoint;
  readonly administration: Administration;
  readonly resourceServer: ResourceServer;
  readonly calendar: HolidayCalendar;
  readonly effects: MessageEffects;
  readonly messaging: Messaging;
  readonly inbox: Inbox;
  /** Closes threads left without a patient message for `THREAD_AUTO_CLOSE_DAYS`. */
  readonly threadAutoClose: ThreadAutoClose;
  /** PHI-free notices to the patient side (the outbox's `notify` deliveries). */
  readonly notifier: Notifier;
  /** Records appointment reminders `APPOINTMENT_REMINDER_HOURS` ahead. */
  readonly reminders: AppointmentReminders;
  /** FHIR Subscriptions: matched in each message's transaction, delivered by rest-hook or websocket. */
  readonly subscriptions: Subscriptions;
  /** Deliverers of outbox entries by kind; subsystems register theirs before `startWorkers`. */
  readonly deliverers = new Map<string, Deliverer>();
  readonly outbox: OutboxWorker;
  /** Chains committed AuditEvents moments after they commit, apart from requests. */
  readonly auditSealer: AuditSealer;
  /** The FHIR REST layer: the store plus type handlers and operations. */
  readonly rest: RestEnvironment;
  /** Refuses new requests with 503 while the server is overloaded (`MAX_IN_FLIGHT`, `MAX_EVENT_LOOP_DELAY_MS`). */
  readonly shedder: LoadShedder;
  /** The Prometheus registry behind `GET /metrics`. */
  readonly metrics: Metrics;

  private constructor(
    readonly config: ServerConfig,
    readonly logger: Logger,
    readonly db: Database,
    readonly audit: AuditLog,
    readonly store: ResourceStore,
    readonly auth: AuthServices
  ) {
    this.authorizeFlow = new AuthorizeFlow(auth);
    this.tokenEndpoint = new TokenEndpoint(auth);
    this.administration = new Administration(auth);
    this.resourceServer = new ResourceServer(auth);
    const { messaging } = config;
    this.calendar = new HolidayCalendar(messaging.practiceHolidays);
    this.subscriptions = new Subscriptions(store, { fhirBase: this.fhirBase });
    this.effects = new MessageEffects(store, {
      calendar: this.calendar,
      ehrDelivery: Boolean(messaging.ehr),
      subscriptions: (tx, type, id, version) => this.subscriptions.match(tx, type, id, version),
    });
    this.messaging = new Messaging(store, this.effects, { urgency: new UrgencyScreen(messaging.urgentPhrases) });
    this.inbox = new Inbox(db, store, audit);
    this.threadAutoClose = new ThreadAutoClose(db, store, { days: messaging.threadAutoCloseDays, intervalMs: 3_600_000, logger: logger.child({ subsystem: 'thread-auto-close' }) });
    this.outbox = new OutboxWorker(db, this.deliverers, {
      ...DEFAULT_OUTBOX_OPTIONS,
      pollIntervalMs: messaging.outboxPollMs,
      baseBackoffMs: messaging.outboxBaseBackoffMs,
      leaseMs: messaging.outboxLeaseMs,
    });
    if (messaging.ehr) {
      this.deliverers.set('ehr', ehrDeliverer({ endpoint: messaging.ehr, store, db, ourFhirBase: this.fhirBase, log: logger.child({ subsystem: 'ehr' }) }));
    }
    this.deliverers.set(REST_HOOK_KIND, this.subscriptions.restHookDeliverer());
    this.effects.events.on('committed', () => this.outbox.wake());
    const { portalUrl, smtpUrl, mailFrom, smsWebhookUrl } = messaging;
    this.notifier = new Notifier(store, db, { portalUrl, smtpUrl, mailFrom, smsWebhookUrl, log: logger.child({ subsystem: 'notifications' }) });
    this.deliverers.set('notify', this.notifier.deliver);
    if (smtpUrl) {
      this.deliverers.set(TRANSMIT_KIND, new RecordMailer({ smtpUrl, mailFrom }).deliver);
    }
    this.reminders = new AppointmentReminders(db, store, this.effects, {
      leadHours: messaging.appointmentReminderHours,
      timeZone: messaging.practiceTimeZone,
      log: logger.child({ subsystem: 'reminders' }),
    });
    this.auditSealer = new AuditSealer(db, { intervalMs: 1000, logger: logger.child({ subsystem: 'audit-sealer' }) });
    const maxAttachment = config.maxBinaryBytes;
    this.rest = {
      store,
      fhirBase: this.fhirBase,
      handlers: {
        AuditEvent: auditEventHandlers(db, store),
        Subscription: this.subscriptions.handlers,
        Communication: {
          create: (ctx, body, options) => this.messaging.create(ctx, body, options),
          read: (ctx, id) => this.inbox.read(ctx, id),
          checkChange: async (ctx, _id, method) => checkCommunicationChange(ctx, method),
        },
        Task: {
          create: async (ctx, body, options) => {
            checkTaskWrite(ctx);
            return store.create(ctx, body, 'Task', options);
          },
          checkChange: async (ctx) => checkTaskWrite(ctx),
        },
        Binary: {
          create: async (ctx, body, options) => {
            checkBinary(ctx, body, maxAttachment);
            return store.create(ctx, await withContextConfidentiality(options.tx ?? db, body), 'Binary', options);
          },
          checkChange: async (ctx, _id, method, body) => {
            if (method === 'PUT') {
              checkBinary(ctx, body, maxAttachment);
            }
          },
        },
      },
      operations: {
        ...auditChainOperations(db, this.auditSealer, chainHeadSigner(auth.keys)),
        ...messagingOperations(this.fhirBase, this.inbox, store, db),
        ...notificationOperations(store, db, this.notifier),
        ...portalOperations(store, db, { canTransmit: Boolean(smtpUrl), queued: () => this.outbox.wake() }),
        ...measureOperations(new MeasureEvaluator(db, store, { name: 'CareThread', version: SOFTWARE_VERSION }), store, audit, reportSigner(auth.keys), (report) => verifyReport(report, auth.keys.allPublicKeys())),
      },
    };
    this.shedder = new LoadShedder(config.limits);
    this.metrics = new Metrics({ db, outboxEvents: this.outbox.events, operationKeys: Object.keys(this.rest.operations ?? {}), inFlight: () => this.shedder.inFlight });
  }

  /** Starts the background workers (the audit sealer, the outbox, the appointment reminders, the thread auto-close). */
  startWorkers(): void {
    this.auditSealer.start();
    this.outbox.start();
    this.reminders.start();
    this.threadAutoClose.start();
  }

  get fhirBase(): string {
    return `${this.config.baseUrl}/fhir`;
  }

  static async fromConfig(config: ServerConfig, overrides: AppContextOverrides = {}): Promise<AppContext> {
    const logger = overrides.logger ?? createLogger(config.logLevel);
    loadDefinitions();
    const db =
      overrides.db ??
      (await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: config.databasePoolSize, statementTimeoutMs: config.limits.statementTimeoutMs }));
    const applied = await migrate(db);
    if (applied.length) {
      logger.info({ migrations: applied }, 'applied database migrations');
    }
    const fhirBaseUrl = `${config.baseUrl}/fhir`;
    const audit = new AuditLog(db, { fhirBaseUrl });
    const store = new ResourceStore(db, audit, {
      fhirBaseUrl,
      defaultPageSize: config.defaultPageSize,
      maxPageSize: config.maxPageSize,
      maxBinaryBytes: config.maxBinaryBytes,
    });
    const { secrets } = config.auth;
    const auth = await createAuthServices(db, audit, store, {
      baseUrl: config.baseUrl,
      fhirBase: fhirBaseUrl,
      accessTokenSeconds: config.auth.accessTokenSeconds,
      refreshTokenSeconds: config.auth.refreshTokenSeconds,
      maxFailedLogins: config.auth.maxFailedLogins,
      smartStyleUrl: config.auth.smartStyleUrl,
      trustedIssuers: config.auth.trustedIssuers,
      bootstrap:
        secrets.bootstrapClientId && secrets.bootstrapClientSecret
          ? { clientId: secrets.bootstrapClientId, clientSecret: secrets.bootstrapClientSecret }
          : undefined,
    });
    await publishReferenceData(store, measureResources());
    return new AppContext(config, logger, db, audit, store, auth);
  }

  /** Flushes queued audit entries and closes the database. */
  async close(): Promise<void> {
    this.shedder.close();
    await this.reminders.stop();
    await this.outbox.stop();
    await this.threadAutoClose.stop();
    this.notifier.close();
    await this.subscriptions.close();
    await this.audit.close();
    await this.auditSealer.stop();
    await this.db.close();
  }
}
