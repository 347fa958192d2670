/**
 * Entry point: read the configuration, build the application context (database,
 * migrations), listen, and shut down gracefully on SIGTERM/SIGINT: stop accepting
 * connections, let in-flight requests finish, flush the audit queue, close the database.
 */
import type { Server } from 'node:http';
import { createApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { answerClientErrors } from './errors.js';
import { AppContext } from './context.js';
import { applyHttpTimeouts } from './request-timeout.js';
import { attachWebsocket } from './websocket.js';

export async function start(): Promise<{ server: Server; app: AppContext }> {
  const config = loadConfig();
  const app = await AppContext.fromConfig(config);
  const server = createApp(app).listen(config.port);
  applyHttpTimeouts(server, config.limits);
  answerClientErrors(server);
  app.startWorkers();
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const websocket = await attachWebsocket(app, server);
  app.logger.info({ port: config.port, baseUrl: config.baseUrl, database: app.db.engine }, 'CareThread listening');
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      return;
    }
    stopping = true;
    app.logger.info({ signal }, 'shutting down');
    websocket.close();
    server.close(async () => {
      await app.close();
      app.logger.info('stopped');
      process.exit(0);
    });
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 10_000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return { server, app };
}

start().catch((err) => {
  if (err instanceof ConfigError) {
    console.error(err.message);
  } else {
    console.error('CareThread failed to start:', err);
  }
  process.exit(1);
});
