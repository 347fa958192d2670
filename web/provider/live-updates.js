// New messages without a reload: a websocket-channel Subscription on the messages addressed
// to the practitioner (and their roles and pools), bound on CareThread's `/fhir/websocket`.
// The server sends only `ping <id>` (never what a message says); the app then re-reads
// what it shows with its token. A ping missed while the socket was down is not replayed,
// so every reconnect re-reads too.

const REASON = 'CareThread provider app: new messages';

/** Finds or creates the Subscription; `recipients` are the practitioner's own references. */
async function subscriptionFor(api, recipients) {
  const criteria = `Communication?recipient=${recipients.join(',')}`;
  const existing = await api.search('Subscription?type=websocket&status=active&_count=100').catch(() => []);
  const reusable = existing.find((s) => s.channel?.type === 'websocket' && s.criteria === criteria);
  if (reusable) {
    return reusable.id;
  }
  const created = await api.write('POST', 'Subscription', { resourceType: 'Subscription', status: 'requested', reason: REASON, criteria, channel: { type: 'websocket' } });
  return created.id;
}

/**
 * Calls `onChange` (debounced) whenever a message for the practitioner is committed, and
 * after a reconnect. Returns a function that closes the socket.
 */
export async function watchMessages(api, recipients, onChange, onState = () => {}) {
  let id;
  try {
    id = await subscriptionFor(api, recipients);
  } catch {
    // A pool the server does not count as theirs: fall back to the practitioner alone.
    id = await subscriptionFor(api, [api.me]);
  }
  const base = api.client.state.serverUrl.replace(/\/$/, '');
  const socketUrl = `${base.replace(/^http/, 'ws')}/websocket`;
  let socket;
  let timer;
  let retryMs = 1000;
  let stopped = false;

  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, 150);
  };

  const bind = async () => {
    // The token travels in the bind message: browser websockets cannot send headers, and a URL would be logged.
    await api.client.refreshIfNeeded();
    socket.send(`bind ${id} ${api.client.state.tokenResponse.access_token}`);
  };

  const connect = () => {
    socket = new WebSocket(socketUrl);
    socket.addEventListener('open', () => {
      retryMs = 1000;
      bind().catch(() => socket.close());
    });
    socket.addEventListener('message', (event) => {
      const [word, subject] = String(event.data).split(' ');
      if (subject !== id) {
        return;
      }
      if (word === 'bound') {
        onState('live');
      } else if (word === 'ping') {
        changed();
      } else if (word === 'error') {
        // Most likely the token expired: bind again with a fresh one.
        onState('reconnecting');
        setTimeout(() => bind().catch(() => socket.close()), 1000);
      }
    });
    socket.addEventListener('close', () => {
      if (stopped) {
        return;
      }
      onState('reconnecting');
      setTimeout(() => {
        connect();
        changed();
      }, retryMs);
      retryMs = Math.min(retryMs * 2, 30_000);
    });
  };

  connect();
  return () => {
    stopped = true;
    socket?.close();
  };
}
