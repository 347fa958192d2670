/**
 * SMS notices through a webhook (the practice's SMS provider, or a bridge to it): POST JSON
 * `{ to, body }`, with an `Idempotency-Key` header that is the same on every retry of one
 * notice. Errors name the HTTP status only — never the URL (it may hold a key) or the number.
 */
import { PermanentFailure } from '../outbox/outbox.js';
import { noticeText, noticeToken } from './notice.js';

export interface SmsOptions {
  webhookUrl: string;
  portalUrl: string;
  timeoutMs?: number;
}

export class SmsSender {
  constructor(private readonly options: SmsOptions) {}

  async send(to: string, idempotencyKey: string): Promise<void> {
    let response: Response;
    try {
      response = await fetch(this.options.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': noticeToken(idempotencyKey) },
        body: JSON.stringify({ to, body: noticeText(this.options.portalUrl).sms }),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        redirect: 'error',
      });
    } catch {
      throw new Error('SMS webhook unreachable');
    }
    await response.arrayBuffer().catch(() => undefined);
    if (response.ok) {
      return;
    }
    const detail = `SMS webhook answered HTTP ${response.status}`;
    // A 4xx other than timeout and throttling means this notice is refused as it is.
    if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
      throw new PermanentFailure(detail);
    }
    throw new Error(detail);
  }
}
