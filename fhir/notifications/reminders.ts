/**
 * Appointment reminders: a periodic job that finds booked Appointments starting within the
 * lead time and, for each patient taking part, records a reminder message (a Communication
 * of category reminder, based on the Appointment, stating date, time and place only) with
 * its Provenance and its PHI-free notice, in one transaction.
 *
 * Every instance runs the job. A reminder carries an identifier made of the appointment,
 * the patient and the start time; it is created under a transaction-scoped advisory lock on
 * that identifier after checking that none exists, so instances racing each other, a pass
 * repeated after a restart, or a pass running twice make one reminder. A rescheduled
 * appointment has a new start time and so gets its own reminder.
 */
import type { Appointment, Communication } from '@medplum/fhirtypes';
import { systemContext } from '../access.js';
import type { Database, Queryable } from '../db/database.js';
import { MESSAGE_CATEGORY_SYSTEM, PRACTICE_CATEGORIES } from '../messaging/codes.js';
import type { MessageEffects } from '../messaging/effects.js';
import { AUTO_REPLY_SENDER } from '../messaging/messages.js';
import type { ResourceStore } from '../store/store.js';
import type { NoticeLog } from './notifier.js';
import { placeOf, reminderText } from './reminder-text.js';

export const REMINDER_IDENTIFIER_SYSTEM = 'https://carethread.dev/fhir/NamingSystem/appointment-reminder';

/** First key of the advisory locks this job takes (the second is the reminder's hash). */
const LOCK_CLASS = 4_204_001;

export interface ReminderOptions {
  /** Remind this many hours before the start. */
  leadHours: number;
  /** IANA time zone the date and time are stated in. */
  timeZone: string;
  /** Time between passes. */
  intervalMs?: number;
  pageSize?: number;
  log?: NoticeLog;
}

interface Due {
  appointment: Appointment;
  patient: string;
  /** The reminder's identifier value. */
  key: string;
}

export class AppointmentReminders {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = true;

  constructor(
    private readonly db: Database,
    private readonly store: ResourceStore,
    private readonly effects: MessageEffects,
    private readonly options: ReminderOptions
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One pass; returns how many reminders it created. */
  async runOnce(now = new Date()): Promise<number> {
    let created = 0;
    let after: [unknown, string] | undefined;
    for (;;) {
      const page = await this.dueAppointments(now, after);
      const due = page.flatMap(({ appointment }) => remindersFor(appointment));
      const sent = await this.alreadySent(due.map((d) => d.key));
      for (const reminder of due.filter((d) => !sent.has(d.key))) {
        if (await this.remind(reminder)) {
          created++;
        }
      }
      if (page.length < (this.options.pageSize ?? 200)) {
        return created;
      }
      const last = page[page.length - 1];
      after = [last.start, last.appointment.id!];
    }
  }

  private schedule(delay: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.runOnce()
        .catch(() => this.options.log?.warn({}, 'appointment reminders: pass failed; the next one retries'))
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) {
            this.schedule(this.options.intervalMs ?? 60_000);
          }
        });
    }, delay);
    this.timer.unref?.();
  }

  private async dueAppointments(now: Date, after: [unknown, string] | undefined): Promise<{ appointment: Appointment; start: unknown }[]> {
    const rows = await this.db.query(
      `SELECT id, content, d_date_lo FROM "Appointment"
       WHERE NOT deleted AND t_status @> ARRAY['booked']::text[]
         AND d_date_lo > $1::timestamptz AND d_date_lo <= $1::timestamptz + make_interval(hours => $2::int)
         AND ($3::timestamptz IS NULL OR (d_date_lo, id) > ($3::timestamptz, $4::text))
       ORDER BY d_date_lo, id
       LIMIT $5`,
      [now.toISOString(), this.options.leadHours, after?.[0] ?? null, after?.[1] ?? null, this.options.pageSize ?? 200]
    );
    return rows.map((r) => ({ appointment: JSON.parse(r.content) as Appointment, start: r.d_date_lo }));
  }

  /** Which of these reminders exist already (one indexed query for the whole page). */
  private async alreadySent(keys: string[]): Promise<Set<string>> {
    if (!keys.length) {
      return new Set();
    }
    const tokens = keys.map((k) => `${REMINDER_IDENTIFIER_SYSTEM}|${k}`);
    const rows = await this.db.query(`SELECT t_identifier FROM "Communication" WHERE t_identifier && $1::text[]`, [tokens]);
    const prefix = `${REMINDER_IDENTIFIER_SYSTEM}|`;
    return new Set(rows.flatMap((r) => (r.t_identifier as string[]).filter((t) => t.startsWith(prefix)).map((t) => t.slice(prefix.length))));
  }

  /** Creates one reminder unless another pass or instance already did; true when created. */
  private async remind({ appointment, patient, key }: Due): Promise<boolean> {
    const ctx = systemContext('appointment-reminders');
    const created = await this.store.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))`, [LOCK_CLASS, key]);
      if (await exists(tx, key)) {
        return false;
      }
      const reminder = this.reminder(appointment, patient, key);
      const result = await this.store.create(ctx, reminder, 'Communication', { tx });
      const stored = JSON.parse(result.stored.content) as Communication;
      await this.effects.recorded(tx, ctx, stored, {
        message: stored,
        kind: 'standalone',
        sender: AUTO_REPLY_SENDER,
        actor: AUTO_REPLY_SENDER,
        urgent: false,
        fromPatientSide: false,
        autoReply: true,
      });
      return true;
    });
    if (created) {
      this.effects.committed();
    }
    return created;
  }

  private reminder(appointment: Appointment, patient: string, key: string): Communication {
    return {
      resourceType: 'Communication',
      identifier: [{ system: REMINDER_IDENTIFIER_SYSTEM, value: key }],
      basedOn: [{ reference: `Appointment/${appointment.id}` }],
      status: 'completed',
      category: [{ coding: [{ system: MESSAGE_CATEGORY_SYSTEM, code: 'reminder', display: PRACTICE_CATEGORIES.reminder }] }],
      subject: { reference: patient },
      recipient: [{ reference: patient }],
      sender: { reference: AUTO_REPLY_SENDER, display: 'Automatic reminder' },
      sent: new Date().toISOString(),
      payload: [{ contentString: reminderText(appointment.start!, placeOf(appointment), this.options.timeZone) }],
    };
  }
}

/** One reminder per patient taking part (a patient who declined is not reminded). */
function remindersFor(appointment: Appointment): Due[] {
  const patients = new Set(
    (appointment.participant ?? [])
      .filter((p) => p.actor?.reference?.startsWith('Patient/') && p.status !== 'declined')
      .map((p) => p.actor!.reference!)
  );
  const start = new Date(appointment.start!).toISOString();
  return [...patients].map((patient) => ({ appointment, patient, key: `${appointment.id}/${patient.slice('Patient/'.length)}/${start}` }));
}

async function exists(tx: Queryable, key: string): Promise<boolean> {
  const rows = await tx.query(`SELECT 1 FROM "Communication" WHERE t_identifier @> ARRAY[$1::text] LIMIT 1`, [`${REMINDER_IDENTIFIER_SYSTEM}|${key}`]);
  return rows.length > 0;
}
