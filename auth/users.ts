/**
 * Login accounts for patients, representatives and staff. Each names the FHIR resource the
 * person is (`fhirUser`); a representative may act through further RelatedPerson resources
 * (one per patient they represent). Failed logins are counted per username and per address;
 * past the limit, attempts are refused for a while with the same answer as a wrong password.
 */
import { randomUUID } from 'node:crypto';
import type { Database } from '../fhir/db/database.js';
import { DUMMY_HASH_PROMISE, hashPassword, verifyPassword } from './passwords.js';

export interface UserAccount {
  id: string;
  username: string;
  fhirUser: string;
  represents: string[];
  roles: string[];
}

export const USER_ROLES = ['auditor', 'admin'] as const;

export interface NewUser {
  username: string;
  password: string;
  fhirUser: string;
  represents?: string[];
  roles?: string[];
}

const LOCKOUT_MS = 15 * 60 * 1000;

export class UserDirectory {
  /** Failed attempts per key (`u:<username>` / `a:<address>`), with the time of the first. */
  private failures = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly db: Database,
    private readonly maxFailures: number
  ) {}

  async create(user: NewUser): Promise<UserAccount> {
    const account: UserAccount = {
      id: randomUUID(),
      username: user.username,
      fhirUser: user.fhirUser,
      represents: user.represents ?? [],
      roles: user.roles ?? [],
    };
    const hash = await hashPassword(user.password);
    const rows = await this.db.query(
      `INSERT INTO auth_users (id, username, password_hash, fhir_user, represents, roles) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (username) DO NOTHING RETURNING id`,
      [account.id, account.username, hash, account.fhirUser, account.represents, account.roles]
    );
    if (!rows.length) {
      throw new UsernameTaken();
    }
    return account;
  }

  async byId(id: string): Promise<UserAccount | undefined> {
    const rows = await this.db.query('SELECT id, username, fhir_user, represents, roles FROM auth_users WHERE id = $1', [id]);
    return rows[0] ? toAccount(rows[0]) : undefined;
  }

  async byFhirUser(fhirUser: string): Promise<UserAccount | undefined> {
    const rows = await this.db.query('SELECT id, username, fhir_user, represents, roles FROM auth_users WHERE fhir_user = $1 LIMIT 1', [fhirUser]);
    return rows[0] ? toAccount(rows[0]) : undefined;
  }

  /**
   * The account for these credentials, or undefined. Unknown usernames, wrong passwords and
   * locked-out attempts are indistinguishable to the caller (and take as long).
   */
  async authenticate(username: string, password: string, address: string): Promise<UserAccount | undefined> {
    const keys = [`u:${username.toLowerCase()}`, `a:${address}`];
    const locked = keys.some((k) => this.isLocked(k));
    const rows = await this.db.query('SELECT id, username, password_hash, fhir_user, represents, roles FROM auth_users WHERE username = $1', [username]);
    const hash = rows[0]?.password_hash ?? (await DUMMY_HASH_PROMISE);
    const valid = await verifyPassword(password, hash);
    if (locked || !valid || !rows[0]) {
      if (!locked) {
        keys.forEach((k) => this.recordFailure(k));
      }
      return undefined;
    }
    keys.forEach((k) => this.failures.delete(k));
    return toAccount(rows[0]);
  }

  private isLocked(key: string): boolean {
    const entry = this.failures.get(key);
    if (!entry) {
      return false;
    }
    if (Date.now() - entry.since > LOCKOUT_MS) {
      this.failures.delete(key);
      return false;
    }
    // Addresses get more room than usernames: several people may share one.
    return entry.count >= (key.startsWith('a:') ? this.maxFailures * 4 : this.maxFailures);
  }

  private recordFailure(key: string): void {
    const entry = this.failures.get(key);
    if (!entry || Date.now() - entry.since > LOCKOUT_MS) {
      this.failures.set(key, { count: 1, since: Date.now() });
    } else {
      entry.count++;
    }
  }
}

export class UsernameTaken extends Error {
  constructor() {
    super('That username is taken');
  }
}

function toAccount(row: Record<string, any>): UserAccount {
  return { id: row.id, username: row.username, fhirUser: row.fhir_user, represents: row.represents ?? [], roles: row.roles ?? [] };
}
