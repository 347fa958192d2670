/**
 * Real CareThread server processes for the crash-safety, several-instances and chaos runs:
 * `node --import tsx server/main.ts` as a child process, exactly as deployed, so it can be
 * killed with SIGKILL (no shutdown hook runs) and started again over the same database.
 * Also a small fetch-based API client with the tokens those runs need (the administrator's
 * client_credentials token and user tokens through the SMART authorization-code flow).
 * Nothing here depends on vitest, so `npm run chaos` uses it too.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const ADMIN = { clientId: 'chaos-admin', clientSecret: 'chaos-admin-secret-0123456789' };

export interface ServerProcessOptions {
  port: number;
  /** Defaults to `http://127.0.0.1:<port>`; instances behind one load balancer share one. */
  baseUrl?: string;
  /** DATABASE_URL (PostgreSQL) or DATA_DIR (PGlite) and any other settings. */
  env: Record<string, string | undefined>;
}

export interface ServerProcess {
  readonly url: string;
  readonly baseUrl: string;
  /** Every line the process wrote to stdout and stderr (JSON log lines mostly). */
  readonly logs: string[];
  readonly child: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal) once the process is gone. */
  readonly exited: Promise<number | null>;
  /** Sends `signal` (default SIGKILL) and waits for the process to be gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Spawns a server process; `waitReady` tells when it answers. */
export function spawnServer(options: ServerProcessOptions): ServerProcess {
  const url = `http://127.0.0.1:${options.port}`;
  const baseUrl = options.baseUrl ?? url;
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: String(options.port),
      BASE_URL: baseUrl,
      BOOTSTRAP_CLIENT_ID: ADMIN.clientId,
      BOOTSTRAP_CLIENT_SECRET: ADMIN.clientSecret,
      LOG_LEVEL: 'info',
      DATABASE_POOL_SIZE: '4',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const collect = (chunk: Buffer) => logs.push(...String(chunk).split('\n').filter(Boolean));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(child.exitCode);
    } else {
      child.once('exit', (code) => resolve(code));
    }
  });
  return {
    url,
    baseUrl,
    logs,
    child,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
      }
      await exited;
    },
  };
}

/** Waits until `/readyz` answers 200, failing early if the process exits. */
export async function waitReady(server: ServerProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void server.exited.then(() => (gone = true));
  for (;;) {
    if (gone) {
      throw new Error(`The server exited before it was ready:\n${server.logs.slice(-20).join('\n')}`);
    }
    try {
      const res = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      if (res.ok) {
        return;
      }
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      throw new Error(`The server was not ready within ${timeoutMs} ms:\n${server.logs.slice(-20).join('\n')}`);
    }
    await sleep(100);
  }
}

/** Starts a server process and waits until it is ready. */
export async function startServer(options: ServerProcessOptions, timeoutMs?: number): Promise<ServerProcess> {
  const server = spawnServer(options);
  try {
    await waitReady(server, timeoutMs);
  } catch (err) {
    await server.kill();
    throw err;
  }
  return server;
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface ApiResponse {
  status: number;
  body: any;
  headers: Headers;
}

/** JSON over HTTP to one server (`url` may change when a process restarts on another port). */
export class Api {
  constructor(
    public url: string,
    /** The public base URL (the token audience is `${baseUrl}/fhir`). */
    readonly baseUrl: string
  ) {}

  async fhir(method: string, pathAndQuery: string, token: string, body?: unknown, timeoutMs = 15_000): Promise<ApiResponse> {
    const res = await fetch(`${this.url}/fhir/${pathAndQuery}`, {
      method,
      headers: { authorization: `Bearer ${token}`, accept: 'application/fhir+json', ...(body ? { 'content-type': 'application/fhir+json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return { status: res.status, body: text ? safeJson(text) : undefined, headers: res.headers };
  }

  /** Creates a resource with `token`; returns `Type/id` or throws. */
  async create(token: string, resource: { resourceType: string }): Promise<string> {
    const res = await this.fhir('POST', resource.resourceType, token, resource);
    if (res.status !== 201) {
      throw new Error(`Could not create ${resource.resourceType}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return `${resource.resourceType}/${res.body.id}`;
  }

  /** The bootstrap administrator's token (system/*.cruds). */
  async adminToken(): Promise<string> {
    const res = await this.form('/auth/token', { grant_type: 'client_credentials', scope: 'system/*.cruds' }, `Basic ${Buffer.from(`${ADMIN.clientId}:${ADMIN.clientSecret}`).toString('base64')}`);
    if (res.status !== 200) {
      throw new Error(`No administrator token: ${res.status} ${await res.text()}`);
    }
    return ((await res.json()) as { access_token: string }).access_token;
  }

  async createUser(admin: string, user: { username: string; password: string; fhirUser: string }): Promise<void> {
    const res = await fetch(`${this.url}/auth/users`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify(user) });
    if (res.status !== 201) {
      throw new Error(`Could not create user ${user.username}: ${res.status} ${await res.text()}`);
    }
  }

  /** Registers a public (PKCE) client for user tokens; returns its client_id. */
  async registerPublicClient(admin: string): Promise<string> {
    const res = await fetch(`${this.url}/auth/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Chaos app', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none', scope: 'openid fhirUser launch/patient patient/*.cruds user/*.cruds' }),
    });
    if (res.status !== 201) {
      throw new Error(`Could not register a client: ${res.status} ${await res.text()}`);
    }
    return ((await res.json()) as { client_id: string }).client_id;
  }

  /** A user's token through the SMART authorization-code flow (sign-in and consent pages). */
  async userToken(clientId: string, username: string, password: string, scope: string): Promise<string> {
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(8).toString('hex');
    const query = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      scope,
      state,
      aud: `${this.baseUrl}/fhir`,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });
    const authorize = await fetch(`${this.url}/auth/authorize?${query}`, { redirect: 'manual' });
    const login = await this.form('/auth/login', { pending: pending(await authorize.text()), username, password });
    const consent = new URLSearchParams({ pending: pending(await login.text()), decision: 'approve' });
    for (const s of scope.split(' ')) {
      consent.append('scope', s);
    }
    const decision = await fetch(`${this.url}/auth/consent`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: consent.toString() });
    const code = new URL(decision.headers.get('location') ?? 'http://invalid/').searchParams.get('code');
    if (!code) {
      throw new Error(`Consent gave no code (${decision.status})`);
    }
    const token = await this.form('/auth/token', { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier, client_id: clientId });
    if (token.status !== 200) {
      throw new Error(`No user token: ${token.status} ${await token.text()}`);
    }
    return ((await token.json()) as { access_token: string }).access_token;
  }

  private form(pathname: string, fields: Record<string, string>, authorization?: string): Promise<Response> {
    return fetch(`${this.url}${pathname}`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

const REDIRECT_URI = 'http://127.0.0.1:9/cb';

function pending(html: string): string {
  const match = /name="pending" value="([^"]+)"/.exec(html);
  if (!match) {
    throw new Error(`No sign-in or consent form: ${html.slice(0, 200)}`);
  }
  return match[1].replace(/&amp;/g, '&');
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
