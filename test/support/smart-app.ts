/**
 * A SMART app written the way a third party writes one, for the SMART flow suites: a tiny
 * HTTP server on 127.0.0.1 whose launch page calls the real `fhirclient` library's
 * `authorize()` and whose redirect page calls `ready()`, with an express-session-like
 * `req.session` (fhirclient's default server storage). Alongside it, a scripted browser that
 * follows redirects, keeps cookies per host and submits the authorization server's forms,
 * so a whole launch runs over HTTP without a real browser. Plus a JSON server for JWKS
 * documents (a backend client's `jwks_uri`, an external issuer's keys).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import smart from 'fhirclient';

type SmartApi = ReturnType<typeof smart>;
/** The client `ready()` answers with. */
export type SmartClient = Awaited<ReturnType<SmartApi['ready']>>;
export type AuthorizeOptions = Exclude<Parameters<SmartApi['authorize']>[0], unknown[]>;

/** The app: `/launch` starts a launch (EHR: `?iss=…&launch=…`), `/callback` completes it. */
export class SmartApp {
  /** What the app's launch page passes to `authorize()`; `iss`/`launch` come from the URL for an EHR launch. */
  authorizeOptions: AuthorizeOptions = {};
  /** Clients that `ready()` produced, by the `state` of their launch. */
  private readonly clients = new Map<string, SmartClient>();
  private readonly sessions = new Map<string, Record<string, unknown>>();

  private constructor(
    private readonly server: http.Server,
    readonly origin: string
  ) {}

  static async start(): Promise<SmartApp> {
    let app: SmartApp | undefined;
    const server = http.createServer((req, res) => {
      app!.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/plain' });
        }
        res.end(`app error: ${err.message}`);
      });
    });
    const origin = await listen(server);
    app = new SmartApp(server, origin);
    return app;
  }

  get launchUrl(): string {
    return `${this.origin}/launch`;
  }

  get redirectUri(): string {
    return `${this.origin}/callback`;
  }

  /** The client `ready()` produced for the launch that ended on `page`. */
  clientFor(page: Page): SmartClient {
    const state = new URL(page.url).searchParams.get('state') ?? '';
    const client = this.clients.get(state);
    if (!client) {
      throw new Error(`The app has no client for ${page.url} (status ${page.status}: ${page.body.slice(0, 300)})`);
    }
    return client;
  }

  async stop(): Promise<void> {
    await close(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    (req as http.IncomingMessage & { session: Record<string, unknown> }).session = this.sessionOf(req, res);
    if (url.pathname === '/launch') {
      await smart(req, res).authorize({ ...this.authorizeOptions, redirectUri: this.redirectUri });
      return;
    }
    if (url.pathname === '/callback') {
      const client = await smart(req, res).ready();
      this.clients.set(url.searchParams.get('state') ?? '', client);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('authorized');
      return;
    }
    res.writeHead(404).end();
  }

  /** A session per browser, kept in memory and found by cookie, as express-session would. */
  private sessionOf(req: http.IncomingMessage, res: http.ServerResponse): Record<string, unknown> {
    const sid = /(?:^|;\s*)app_sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    if (sid && this.sessions.has(sid)) {
      return this.sessions.get(sid)!;
    }
    const fresh = randomBytes(16).toString('hex');
    const session = {};
    this.sessions.set(fresh, session);
    res.setHeader('set-cookie', `app_sid=${fresh}; Path=/; HttpOnly`);
    return session;
  }
}

export interface Page {
  url: string;
  status: number;
  headers: Headers;
  body: string;
  /** Every response on the way, redirects included. */
  hops: { url: string; status: number; location?: string }[];
}

/** A browser without a screen: follows redirects, keeps cookies per host, submits forms. */
export class Browser {
  private readonly cookies = new Map<string, Map<string, string>>();

  async go(url: string, init: { method?: string; form?: URLSearchParams } = {}): Promise<Page> {
    const hops: Page['hops'] = [];
    let target = url;
    let method = init.method ?? 'GET';
    let body: string | undefined = init.form?.toString();
    for (let i = 0; i < 10; i++) {
      const headers: Record<string, string> = {};
      const cookie = this.cookieHeader(target);
      if (cookie) {
        headers.cookie = cookie;
      }
      if (body !== undefined) {
        headers['content-type'] = 'application/x-www-form-urlencoded';
      }
      const res = await fetch(target, { method, headers, body, redirect: 'manual' });
      this.remember(target, res.headers.getSetCookie());
      const location = res.headers.get('location') ?? undefined;
      hops.push({ url: target, status: res.status, location });
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        target = new URL(location, target).toString();
        method = 'GET';
        body = undefined;
        continue;
      }
      return { url: target, status: res.status, headers: res.headers, body: await res.text(), hops };
    }
    throw new Error(`Too many redirects from ${url}`);
  }

  /** Posts `fields` to the action of the page's form, resolved against the page's URL. */
  submit(page: Page, fields: [string, string][]): Promise<Page> {
    const form = parseForm(page.body);
    return this.go(new URL(form.action, page.url).toString(), { method: form.method, form: new URLSearchParams(fields) });
  }

  private cookieHeader(url: string): string {
    const jar = this.cookies.get(new URL(url).hostname);
    return jar ? [...jar].map(([name, value]) => `${name}=${value}`).join('; ') : '';
  }

  private remember(url: string, setCookies: string[]): void {
    const host = new URL(url).hostname;
    for (const header of setCookies) {
      const [pair] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) {
        const jar = this.cookies.get(host) ?? new Map<string, string>();
        jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
        this.cookies.set(host, jar);
      }
    }
  }
}

export interface FormField {
  name: string;
  value: string;
  type: string;
  checked: boolean;
}

export interface ParsedForm {
  action: string;
  method: string;
  /** Inputs (hidden, text, password, checkbox, radio) and submit buttons, in page order. */
  fields: FormField[];
}

/** The first form of an HTML page, read the way a browser would submit it. */
export function parseForm(html: string): ParsedForm {
  const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) {
    throw new Error(`No form in the page: ${html.slice(0, 300)}`);
  }
  const attrs = attributes(form[1]);
  const fields: FormField[] = [];
  for (const tag of form[2].matchAll(/<(input|button)\b([^>]*)>/gi)) {
    const a = attributes(tag[2]);
    if (a.name === undefined) {
      continue;
    }
    const type = (a.type ?? (tag[1].toLowerCase() === 'button' ? 'submit' : 'text')).toLowerCase();
    fields.push({ name: a.name, value: a.value ?? '', type, checked: 'checked' in a });
  }
  return { action: attrs.action ?? '', method: (attrs.method ?? 'get').toUpperCase(), fields };
}

function attributes(source: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const m of source.matchAll(/([a-zA-Z_:-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    result[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return result;
}

function decodeEntities(value: string): string {
  return value.replace(/&(amp|lt|gt|quot|#39);/g, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e]!);
}

/** Serves fixed JSON documents by path (e.g. a JWKS), on 127.0.0.1. */
export class JsonServer {
  private constructor(
    private readonly server: http.Server,
    readonly origin: string,
    readonly documents: Map<string, unknown>
  ) {}

  static async start(documents: Record<string, unknown> = {}): Promise<JsonServer> {
    const map = new Map(Object.entries(documents));
    const server = http.createServer((req, res) => {
      const doc = map.get(new URL(req.url ?? '/', 'http://x').pathname);
      if (doc === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(doc));
    });
    return new JsonServer(server, await listen(server), map);
  }

  async stop(): Promise<void> {
    await close(this.server);
  }
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
