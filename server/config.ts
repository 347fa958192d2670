/**
 * Configuration: read from the environment once, typed and validated. Nothing else in the
 * code base reads `process.env`; a bad or missing setting stops start-up with a message that
 * names it.
 */
import path from 'node:path';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface ServerConfig {
  /** TCP port the HTTP server listens on. */
  port: number;
  /** Public base URL of the server, without a trailing slash (the FHIR base is `${baseUrl}/fhir`). */
  baseUrl: string;
  /** Directory for the embedded database and other local state. */
  dataDir: string;
  /** PostgreSQL connection URL; when set, PGlite is not used. */
  databaseUrl?: string;
  /** Maximum number of pooled PostgreSQL connections per instance. */
  databasePoolSize: number;
  logLevel: LogLevel;
  /** Largest accepted request body, in bytes (FHIR JSON). */
  maxBodyBytes: number;
  /** Largest accepted Binary content, in bytes (raw upload or base64-decoded `data`). */
  maxBinaryBytes: number;
  /** Default and maximum page sizes for searches. */
  defaultPageSize: number;
  maxPageSize: number;
  auth: AuthConfig;
  messaging: MessagingConfig;
  web: WebConfig;
  limits: LimitsConfig;
}

/** Rate limits, timeouts, load shedding and the metrics endpoint (README "Limits, metrics and logs"). */
export interface LimitsConfig {
  /** FHIR API requests per minute per signed-in user (`fhirUser`); 0: no limit. */
  apiRequestsPerMinutePerUser: number;
  /** FHIR API requests per minute per client acting without a user (backend services); 0: no limit. */
  apiRequestsPerMinutePerClient: number;
  /** A request still unanswered after this long gets 503 (and Node drops clients slower than it to send one). */
  requestTimeoutMs: number;
  /** PostgreSQL `statement_timeout`: a statement running longer is cancelled (503). */
  statementTimeoutMs: number;
  /** Requests handled at once before new ones are refused with 503 (health and metrics excepted); 0: no cap. */
  maxInFlight: number;
  /** Longest event-loop delay in the last second above which new requests are refused with 503; 0: not checked. */
  maxEventLoopDelayMs: number;
  /** Bearer token that `GET /metrics` requires; unset: served to loopback addresses only. */
  metricsToken?: string;
}

/** The browser apps served at `/apps/provider/`, `/portal/` and `/auditor/`. */
export interface WebConfig {
  /** Origins allowed to embed the provider app in a frame (the EHR's), besides our own. */
  frameAncestors: string[];
}

export interface MessagingConfig {
  /** Where patients sign in to read messages (the only link a notice carries). */
  portalUrl: string;
  /** An open thread closes itself after this many days without a patient message. */
  threadAutoCloseDays: number;
  /** Phrases that flag a patient's message urgent (default: a built-in list). */
  urgentPhrases?: string[];
  /** Practice-specific holidays (YYYY-MM-DD) on top of US federal ones, for due times. */
  practiceHolidays: string[];
  /** How long before an appointment its reminder goes out. */
  appointmentReminderHours: number;
  /** IANA time zone in which reminders state the appointment's date and time. */
  practiceTimeZone: string;
  /** Outbox poll interval. */
  outboxPollMs: number;
  /** First retry delay of a failed outbox delivery; doubles per attempt, capped at an hour. */
  outboxBaseBackoffMs: number;
  /** How long a claimed outbox entry is reserved for the instance that claimed it (retried after, e.g. when it crashed). */
  outboxLeaseMs: number;
  /** SMTP server for e-mail notices (`smtp://user:pass@host:port`); none: e-mail is not sent. */
  smtpUrl?: string;
  mailFrom: string;
  /** Webhook that sends SMS notices (POST JSON `{ to, body }`). */
  smsWebhookUrl?: string;
  ehr?: EhrConfig;
}

/** The EHR whose chart receives every exchange (optional). */
export interface EhrConfig {
  fhirUrl: string;
  clientId?: string;
  clientSecret?: string;
  /** A private JWK (JSON) for private_key_jwt. */
  privateKey?: string;
  bearerToken?: string;
  /** Scopes asked of the EHR's token endpoint (`EHR_SCOPE`; default: fhir/chart's DEFAULT_EHR_SCOPE). */
  scope?: string;
}

export interface TrustedIssuer {
  issuer: string;
  jwksUri: string;
}

export interface AuthConfig {
  /** Lifetime of access tokens issued to users (SMART caps it at one hour). */
  accessTokenSeconds: number;
  /** Lifetime of refresh tokens. */
  refreshTokenSeconds: number;
  /** Other authorization servers whose access tokens for this server are accepted. */
  trustedIssuers: TrustedIssuer[];
  /** Failed logins per username (and per address) before further attempts wait. */
  maxFailedLogins: number;
  /** Requests per minute per address to /auth endpoints. */
  authRequestsPerMinute: number;
  /** Style sheet URL handed to SMART apps (`smart_style_url`). */
  smartStyleUrl: string;
  /** Secrets kept apart from the rest of the configuration. */
  secrets: { bootstrapClientId?: string; bootstrapClientSecret?: string };
}

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string
  ) {
    super(`Invalid configuration: ${setting}: ${message}`);
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Builds the typed configuration from an environment (defaults to `process.env`). */
export function loadConfig(env: Env = process.env): ServerConfig {
  const port = integer(env, 'PORT', 8080, 0, 65535);
  const baseUrl = url(env, 'BASE_URL', `http://localhost:${port}`).replace(/\/+$/, '');
  const databaseUrl = optional(env, 'DATABASE_URL');
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL', 'must be a postgres:// or postgresql:// URL');
  }
  const logLevel = (optional(env, 'LOG_LEVEL') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const defaultPageSize = integer(env, 'DEFAULT_PAGE_SIZE', 20, 1, 1000);
  const maxPageSize = integer(env, 'MAX_PAGE_SIZE', 1000, 1, 10000);
  if (defaultPageSize > maxPageSize) {
    throw new ConfigError('DEFAULT_PAGE_SIZE', 'must not exceed MAX_PAGE_SIZE');
  }
  const bootstrapClientId = optional(env, 'BOOTSTRAP_CLIENT_ID');
  const bootstrapClientSecret = optional(env, 'BOOTSTRAP_CLIENT_SECRET');
  if (Boolean(bootstrapClientId) !== Boolean(bootstrapClientSecret)) {
    throw new ConfigError(bootstrapClientId ? 'BOOTSTRAP_CLIENT_SECRET' : 'BOOTSTRAP_CLIENT_ID', 'BOOTSTRAP_CLIENT_ID and BOOTSTRAP_CLIENT_SECRET go together');
  }
  if (bootstrapClientSecret && bootstrapClientSecret.length < 16) {
    throw new ConfigError('BOOTSTRAP_CLIENT_SECRET', 'must be at least 16 characters');
  }
  const auth: AuthConfig = {
    accessTokenSeconds: integer(env, 'ACCESS_TOKEN_SECONDS', 900, 60, 3600),
    refreshTokenSeconds: integer(env, 'REFRESH_TOKEN_SECONDS', 30 * 24 * 3600, 300, 365 * 24 * 3600),
    trustedIssuers: trustedIssuers(env),
    maxFailedLogins: integer(env, 'MAX_FAILED_LOGINS', 5, 1, 1000),
    authRequestsPerMinute: integer(env, 'AUTH_REQUESTS_PER_MINUTE', 300, 1, 1_000_000),
    smartStyleUrl: url(env, 'SMART_STYLE_URL', `${baseUrl}/auth/smart-style.json`),
    secrets: { bootstrapClientId, bootstrapClientSecret },
  };
  const ehrUrl = optional(env, 'EHR_FHIR_URL');
  const ehr: EhrConfig | undefined = ehrUrl
    ? {
        fhirUrl: url(env, 'EHR_FHIR_URL', ehrUrl).replace(/\/+$/, ''),
        clientId: optional(env, 'EHR_CLIENT_ID'),
        clientSecret: optional(env, 'EHR_CLIENT_SECRET'),
        privateKey: optional(env, 'EHR_PRIVATE_KEY'),
        bearerToken: optional(env, 'EHR_BEARER_TOKEN'),
        scope: optional(env, 'EHR_SCOPE'),
      }
    : undefined;
  if (ehr && !ehr.bearerToken && !(ehr.clientId && (ehr.clientSecret || ehr.privateKey))) {
    throw new ConfigError('EHR_FHIR_URL', 'needs EHR_BEARER_TOKEN, or EHR_CLIENT_ID with EHR_CLIENT_SECRET or EHR_PRIVATE_KEY');
  }
  if (ehr?.privateKey) {
    let jwk: Record<string, unknown>;
    try {
      jwk = JSON.parse(ehr.privateKey);
    } catch {
      throw new ConfigError('EHR_PRIVATE_KEY', 'must be a private JWK in JSON');
    }
    // private_key_jwt assertions are signed RS384 (RSA) or ES384 (EC P-384).
    if (!jwk?.d || !(jwk.kty === 'RSA' || (jwk.kty === 'EC' && jwk.crv === 'P-384'))) {
      throw new ConfigError('EHR_PRIVATE_KEY', 'must be a private RSA or EC P-384 JWK (with "d")');
    }
  }
  const smtpUrl = optional(env, 'SMTP_URL');
  if (smtpUrl && !/^smtps?:\/\//.test(smtpUrl)) {
    throw new ConfigError('SMTP_URL', 'must be an smtp:// or smtps:// URL');
  }
  const holidays = (optional(env, 'PRACTICE_HOLIDAYS') ?? '').split(',').map((d) => d.trim()).filter(Boolean);
  if (holidays.some((d) => !/^\d{4}-\d{2}-\d{2}$/.test(d))) {
    throw new ConfigError('PRACTICE_HOLIDAYS', 'must be a comma-separated list of YYYY-MM-DD dates');
  }
  const phrases = optional(env, 'URGENT_PHRASES');
  const messaging: MessagingConfig = {
    portalUrl: url(env, 'PORTAL_URL', `${baseUrl}/portal/`),
    threadAutoCloseDays: integer(env, 'THREAD_AUTO_CLOSE_DAYS', 14, 1, 3650),
    urgentPhrases: phrases ? phrases.split('|').map((p) => p.trim()).filter(Boolean) : undefined,
    practiceHolidays: holidays,
    appointmentReminderHours: integer(env, 'APPOINTMENT_REMINDER_HOURS', 24, 1, 24 * 30),
    practiceTimeZone: timeZone(env, 'PRACTICE_TIME_ZONE', 'UTC'),
    outboxPollMs: integer(env, 'OUTBOX_POLL_MS', 1000, 10, 3_600_000),
    outboxBaseBackoffMs: integer(env, 'OUTBOX_BASE_BACKOFF_MS', 2000, 10, 3_600_000),
    outboxLeaseMs: integer(env, 'OUTBOX_LEASE_MS', 60_000, 1000, 3_600_000),
    smtpUrl,
    mailFrom: optional(env, 'MAIL_FROM') ?? 'CareThread <no-reply@carethread.invalid>',
    smsWebhookUrl: optional(env, 'SMS_WEBHOOK_URL') ? url(env, 'SMS_WEBHOOK_URL', '') : undefined,
    ehr,
  };
  const web: WebConfig = { frameAncestors: origins(env, 'FRAME_ANCESTORS') };
  const metricsToken = optional(env, 'METRICS_TOKEN');
  if (metricsToken && !/^[A-Za-z0-9\-._~+/]{16,}=*$/.test(metricsToken)) {
    throw new ConfigError('METRICS_TOKEN', 'must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + /');
  }
  const limits: LimitsConfig = {
    apiRequestsPerMinutePerUser: integer(env, 'API_REQUESTS_PER_MINUTE_PER_USER', 12_000, 0, 10_000_000),
    apiRequestsPerMinutePerClient: integer(env, 'API_REQUESTS_PER_MINUTE_PER_CLIENT', 120_000, 0, 10_000_000),
    requestTimeoutMs: integer(env, 'REQUEST_TIMEOUT_MS', 60_000, 100, 3_600_000),
    statementTimeoutMs: integer(env, 'STATEMENT_TIMEOUT_MS', 30_000, 100, 3_600_000),
    maxInFlight: integer(env, 'MAX_IN_FLIGHT', 64, 0, 100_000),
    maxEventLoopDelayMs: integer(env, 'MAX_EVENT_LOOP_DELAY_MS', 0, 0, 60_000),
    metricsToken,
  };
  return {
    port,
    baseUrl,
    dataDir: path.resolve(optional(env, 'DATA_DIR') ?? './data'),
    databaseUrl,
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 16, 1, 500),
    logLevel,
    maxBodyBytes: integer(env, 'MAX_BODY_BYTES', 8 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    maxBinaryBytes: integer(env, 'MAX_BINARY_BYTES', 10 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    defaultPageSize,
    maxPageSize,
    auth,
    messaging,
    web,
    limits,
  };
}

/** A space-separated list of http(s) origins (scheme, host and port, no path). */
function origins(env: Env, name: string): string[] {
  const list = (optional(env, name) ?? '').split(/\s+/).filter(Boolean);
  for (const entry of list) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(entry);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== entry.replace(/\/$/, '')) {
      throw new ConfigError(name, `must be space-separated origins such as https://ehr.example.org (got "${entry}")`);
    }
  }
  return list.map((entry) => entry.replace(/\/$/, ''));
}

/** `TRUSTED_ISSUERS`: a JSON array of `{ "issuer": "…", "jwksUri": "…" }`. */
function trustedIssuers(env: Env): TrustedIssuer[] {
  const raw = optional(env, 'TRUSTED_ISSUERS');
  if (!raw) {
    return [];
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError('TRUSTED_ISSUERS', 'must be a JSON array of {"issuer", "jwksUri"}');
  }
  if (!Array.isArray(parsed)) {
    throw new ConfigError('TRUSTED_ISSUERS', 'must be a JSON array of {"issuer", "jwksUri"}');
  }
  return parsed.map((entry, i) => {
    const { issuer, jwksUri } = (entry ?? {}) as Record<string, unknown>;
    for (const [name, value] of [['issuer', issuer], ['jwksUri', jwksUri]] as const) {
      if (typeof value !== 'string' || !/^https?:\/\//.test(value)) {
        throw new ConfigError('TRUSTED_ISSUERS', `entry ${i}: ${name} must be an http(s) URL`);
      }
    }
    return { issuer: issuer as string, jwksUri: jwksUri as string };
  });
}

function optional(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = optional(env, name);
  if (raw === undefined) {
    return fallback;
  }
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max} (got "${raw}")`);
  }
  return Number(raw);
}

function timeZone(env: Env, name: string, fallback: string): string {
  const zone = optional(env, name) ?? fallback;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    throw new ConfigError(name, `must be an IANA time zone such as America/New_York (got "${zone}")`);
  }
  return zone;
}

function url(env: Env, name: string, fallback: string): string {
  const raw = optional(env, name) ?? fallback;
  try {
    const parsed = new URL(raw);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new Error('protocol');
    }
  } catch {
    throw new ConfigError(name, `must be an absolute http(s) URL (got "${raw}")`);
  }
  return raw;
}
