/**
 * The FHIR R4 websocket channel, at `/fhir/websocket`, for the provider app. A client opens
 * the socket and sends `bind <subscription-id>`; the server answers `bound <id>` and then
 * `ping <id>` each time a committed change matches that Subscription (on any instance: the
 * events come through PostgreSQL NOTIFY), after which the app reads what is new with its
 * token. `unbind <id>` stops the pings. Failures are answered `error <id> <reason>`.
 *
 * Tokens never travel in URLs: the access token comes either in the upgrade request's
 * Authorization header (non-browser clients) or as a third word, `bind <id> <token>` (browser
 * websockets cannot set headers). A binding lives while its token does — it is re-checked
 * every half minute and dropped once expired or revoked. Bearer tokens rather than cookies
 * mean a page on another origin cannot ride the user's session, so the Origin is not checked.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import type { AccessContext } from '../fhir/access.js';
import { toFhirError } from '../fhir/errors.js';
import type { AppContext } from './context.js';

export const WEBSOCKET_PATH = '/fhir/websocket';

/** Most Subscriptions one socket may bind. */
const MAX_BINDINGS = 20;
const RECHECK_MS = 30_000;
const SUBSCRIPTION_ID = /^[A-Za-z0-9\-.]{1,64}$/;

export interface WebsocketChannel {
  /** Closes every socket (on shutdown, before the HTTP server closes). */
  close(): void;
}

/** Serves the websocket channel on `http`; resolves once events will be heard. */
export async function attachWebsocket(app: AppContext, http: Server): Promise<WebsocketChannel> {
  await app.subscriptions.live.start();
  const sockets = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 });
  const log = app.logger.child({ subsystem: 'websocket' });
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== WEBSOCKET_PATH) {
      refuse(socket, 404, 'Not Found');
      return;
    }
    const authorization = req.headers.authorization;
    credentialsOf(app, { authorization, queryToken: url.searchParams.has('access_token'), address: req.socket.remoteAddress }).then(
      () => sockets.handleUpgrade(req, socket, head, (ws) => new Session(app, ws, authorization, req.socket.remoteAddress, log)),
      () => refuse(socket, 401, 'Unauthorized', 'Bearer error="invalid_token"')
    );
  });
  return {
    close() {
      for (const ws of sockets.clients) {
        ws.terminate();
      }
      sockets.close();
    },
  };
}

/** An Authorization header on the upgrade must be valid; none is fine (the token may come with `bind`). */
async function credentialsOf(app: AppContext, credentials: { authorization?: string; queryToken: boolean; address?: string }): Promise<void> {
  if (credentials.authorization || credentials.queryToken) {
    await app.resourceServer.contextFor(credentials);
  }
}

function refuse(socket: Duplex, status: number, reason: string, challenge?: string): void {
  const headers = [`HTTP/1.1 ${status} ${reason}`, 'Connection: close', 'Content-Length: 0', ...(challenge ? [`WWW-Authenticate: ${challenge}`] : [])];
  socket.end(`${headers.join('\r\n')}\r\n\r\n`);
  socket.destroy();
}

interface Binding {
  authorization: string;
  stop: () => void;
}

/** One client's socket and its bindings. */
class Session {
  private readonly bindings = new Map<string, Binding>();
  private readonly timer: NodeJS.Timeout;
  private alive = true;

  constructor(
    private readonly app: AppContext,
    private readonly ws: WebSocket,
    private readonly upgradeAuthorization: string | undefined,
    private readonly address: string | undefined,
    private readonly log: AppContext['logger']
  ) {
    ws.on('message', (data: RawData, isBinary: boolean) => {
      this.receive(isBinary ? '' : data.toString()).catch(() => this.send('error internal error'));
    });
    ws.on('pong', () => {
      this.alive = true;
    });
    ws.on('close', () => this.end());
    ws.on('error', () => this.end());
    this.timer = setInterval(() => void this.recheck(), RECHECK_MS);
    this.timer.unref?.();
  }

  private async receive(text: string): Promise<void> {
    const [command, id, token, ...rest] = text.trim().split(/\s+/);
    if ((command !== 'bind' && command !== 'unbind') || !id || rest.length || (command === 'unbind' && token)) {
      this.send('error expected "bind <subscription-id>", "bind <subscription-id> <access-token>" or "unbind <subscription-id>"');
      return;
    }
    if (!SUBSCRIPTION_ID.test(id)) {
      this.send('error invalid subscription id');
      return;
    }
    if (command === 'unbind') {
      this.bindings.get(id)?.stop();
      this.bindings.delete(id);
      this.send(`unbound ${id}`);
      return;
    }
    await this.bind(id, token ? `Bearer ${token}` : this.upgradeAuthorization);
  }

  private async bind(id: string, authorization: string | undefined): Promise<void> {
    if (!authorization) {
      this.send(`error ${id} an access token is required: send "bind ${id} <access-token>" or connect with an Authorization header`);
      return;
    }
    if (!this.bindings.has(id) && this.bindings.size >= MAX_BINDINGS) {
      this.send(`error ${id} a socket may bind at most ${MAX_BINDINGS} subscriptions`);
      return;
    }
    const ctx = await this.contextFor(authorization);
    if (!ctx) {
      this.send(`error ${id} the access token is invalid, expired or revoked`);
      return;
    }
    try {
      await this.app.subscriptions.authorizeBind(ctx, id);
    } catch (err) {
      const error = toFhirError(err);
      this.send(`error ${id} ${error.status < 500 ? error.message : 'internal error'}`);
      return;
    }
    this.bindings.get(id)?.stop();
    const stop = this.app.subscriptions.live.on(id, () => this.send(`ping ${id}`));
    this.bindings.set(id, { authorization, stop });
    this.log.debug({ subscription: id, clientId: ctx.clientId }, 'websocket bound');
    this.send(`bound ${id}`);
  }

  /** Drops bindings whose token expired or was revoked; terminates a peer that stopped answering. */
  private async recheck(): Promise<void> {
    if (!this.alive) {
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
    for (const [id, binding] of this.bindings) {
      if (!(await this.contextFor(binding.authorization)) && this.bindings.get(id) === binding) {
        binding.stop();
        this.bindings.delete(id);
        this.send(`error ${id} the access token expired or was revoked: bind again with a fresh one`);
      }
    }
  }

  private async contextFor(authorization: string): Promise<AccessContext | undefined> {
    try {
      return await this.app.resourceServer.contextFor({ authorization, address: this.address, requestId: randomUUID() });
    } catch {
      return undefined;
    }
  }

  private send(text: string): void {
    if (this.ws.readyState === this.ws.OPEN) {
      this.ws.send(text);
    }
  }

  private end(): void {
    clearInterval(this.timer);
    for (const binding of this.bindings.values()) {
      binding.stop();
    }
    this.bindings.clear();
  }
}
