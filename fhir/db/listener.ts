/**
 * LISTEN on a PostgreSQL server, for notifications other instances (and this one) send with
 * NOTIFY. It needs a connection of its own, outside the pool: a pooled connection is handed to
 * other queries between uses and would stop listening. A dropped connection is replaced after a
 * short wait; what was sent meanwhile is lost, so notifications are wake-ups, never the data.
 */
import pg from 'pg';

export type NotifyHandler = (payload: string) => void;

const RECONNECT_MS = 1000;

/** Channel names are interpolated into LISTEN, so only plain identifiers are accepted. */
export function assertChannel(channel: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) {
    throw new Error(`Invalid notification channel name: ${channel}`);
  }
}

/** Listens on `channel` until the returned function is called. */
export async function listenPostgres(url: string, channel: string, onNotify: NotifyHandler): Promise<() => Promise<void>> {
  assertChannel(channel);
  let current: pg.Client | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const open = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: url });
    client.on('notification', (message) => {
      if (message.channel === channel && message.payload !== undefined) {
        onNotify(message.payload);
      }
    });
    client.on('error', () => lost(client));
    client.on('end', () => lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${channel}`);
    } catch (err) {
      client.end().catch(() => undefined);
      throw err;
    }
    if (stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    current = client;
  };

  const retry = () => {
    timer = setTimeout(() => open().catch(retry), RECONNECT_MS);
    timer.unref?.();
  };

  const lost = (client: pg.Client) => {
    if (client !== current || stopped) {
      return;
    }
    current = undefined;
    client.end().catch(() => undefined);
    retry();
  };

  await open();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    const client = current;
    current = undefined;
    await client?.end().catch(() => undefined);
  };
}
