/**
 * Stored notification choices, one row per person (`Patient/…` or `RelatedPerson/…` in the
 * `patient` column of `notification_preferences`). No row: the default applies.
 */
import type { Queryable } from '../db/database.js';
import type { Channel } from './channels.js';
import { isChannel } from './channels.js';

export async function storedPreference(db: Queryable, person: string): Promise<Channel | undefined> {
  const rows = await db.query(`SELECT channel FROM notification_preferences WHERE patient = $1`, [person]);
  const channel = rows[0]?.channel;
  return isChannel(channel) ? channel : undefined;
}

export async function storePreference(tx: Queryable, person: string, channel: Channel): Promise<void> {
  await tx.query(
    `INSERT INTO notification_preferences (patient, channel) VALUES ($1, $2)
     ON CONFLICT (patient) DO UPDATE SET channel = EXCLUDED.channel, updated_at = now()`,
    [person, channel]
  );
}
