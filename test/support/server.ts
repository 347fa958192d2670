/**
 * Starts a real CareThread server (the same createApp/AppContext as `npm start`) on a free
 * port over a test database, for suites that talk to it through HTTP.
 */
import net from 'node:net';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import supertest from 'supertest';
import { createApp } from '../../server/app.js';
import { loadConfig } from '../../server/config.js';
import { AppContext } from '../../server/context.js';
import { attachWebsocket } from '../../server/websocket.js';
import { applyHttpTimeouts } from '../../server/request-timeout.js';
import { answerClientErrors } from '../../server/errors.js';
import { createLogger } from '../../server/logger.js';
import { createTestDatabase } from './database.js';
import type { TestDatabase } from './database.js';

export interface TestServer {
  app: AppContext;
  http: Server;
  baseUrl: string;
  fhirBase: string;
  database: TestDatabase;
  /** Everything the server logged, one JSON line per entry. */
  logs: string[];
  /** Requests carrying the bootstrap administrator's access token (system/*.cruds). */
  request: ReturnType<typeof supertest.agent>;
  /** Requests without credentials. */
  anonymous: ReturnType<typeof supertest>;
  /** The bootstrap administrator's client credentials and current access token. */
  admin: { clientId: string; clientSecret: string; token: string };
  /** Stops the server; the database survives unless `dropDatabase` is set. */
  stop(options?: { dropDatabase?: boolean }): Promise<void>;
}

export interface TestServerOptions {
  /** Reuse a database (e.g. to restart a server over the same data). */
  database?: TestDatabase;
  env?: Record<string, string>;
  /** Listen on this port (e.g. to restart a server at the same URL); a free one otherwise. */
  port?: number;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const database = options.database ?? (await createTestDatabase());
  const port = options.port ?? (await freePort());
  const baseUrl = `http://127.0.0.1:${port}`;
  const admin = { clientId: 'test-admin', clientSecret: 'test-admin-secret-0123456789' };
  const config = loadConfig({
    BOOTSTRAP_CLIENT_ID: admin.clientId,
    BOOTSTRAP_CLIENT_SECRET: admin.clientSecret,
    PORT: String(port),
    BASE_URL: baseUrl,
    DATA_DIR: database.dataDir,
    DATABASE_URL: database.databaseUrl,
    DATABASE_POOL_SIZE: '4',
    LOG_LEVEL: 'info',
    ...options.env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const app = await AppContext.fromConfig(config, { logger: createLogger('info', sink) });
  const http = createApp(app).listen(port, '127.0.0.1');
  applyHttpTimeouts(http, config.limits);
  answerClientErrors(http);
  await new Promise<void>((resolve) => http.once('listening', resolve));
  const websocket = await attachWebsocket(app, http);
  app.startWorkers();
  const anonymous = supertest(baseUrl);
  const tokenResponse = await anonymous
    .post('/auth/token')
    .auth(admin.clientId, admin.clientSecret)
    .type('form')
    .send({ grant_type: 'client_credentials', scope: 'system/*.cruds' });
  if (tokenResponse.status !== 200) {
    throw new Error(`The test administrator could not get a token: ${tokenResponse.status} ${JSON.stringify(tokenResponse.body)}`);
  }
  const token = tokenResponse.body.access_token as string;
  const request = supertest.agent(baseUrl).set('Authorization', `Bearer ${token}`);
  return {
    app,
    http,
    baseUrl,
    fhirBase: `${baseUrl}/fhir`,
    database,
    logs,
    request,
    anonymous,
    admin: { ...admin, token },
    async stop(stopOptions = {}) {
      websocket.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      await app.close();
      if (stopOptions.dropDatabase) {
        await database.drop();
      }
      // Every suite's logs are scanned for the secrets this harness knows: a token or the
      // client secret in a log line is a leak, whichever test caused it.
      const leaked = logs.find((line) => line.includes(token) || line.includes(admin.clientSecret));
      if (leaked) {
        throw new Error(`The server logged the test administrator's access token or client secret: ${leaked.replaceAll(token, '[token]').replaceAll(admin.clientSecret, '[secret]').slice(0, 300)}`);
      }
    },
  };
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
