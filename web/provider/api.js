// What the provider app asks of CareThread's FHIR API, through the fhirclient `client` (which
// carries the access token and refreshes it): the inbox, a thread with its messages and
// Task, read receipts, replies with attachments, claiming, reassigning, forwarding and
// closing a thread, and the display names of the people and pools involved.
import { displayName } from '/web/dom.js';
import { messagePayload } from '/web/messages.js';
import { NameBook } from '/web/names.js';

export const INBOX_EXT = 'https://carethread.dev/fhir/StructureDefinition/inbox';
export const CATEGORY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-category';
export const TAG_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/tag';
const FHIR_JSON = 'application/fhir+json';

/** The categories patients start threads with (CareThread's message-category CodeSystem). */
export const CATEGORIES = {
  'medical-question': 'Medical question',
  'prescription-renewal': 'Prescription renewal',
  'appointment-request': 'Appointment request',
  referral: 'Referral',
  billing: 'Billing',
  'test-results': 'Test results',
  'symptom-report': 'Symptom report',
};

export function categoryOf(resource) {
  const coding = (resource?.category ?? []).flatMap((c) => c.coding ?? []).find((c) => c.system === CATEGORY_SYSTEM);
  return coding?.code;
}

export function hasTag(resource, code) {
  return (resource?.meta?.tag ?? []).some((t) => t.system === TAG_SYSTEM && t.code === code);
}

export { displayName };

export class ProviderApi {
  constructor(client, me) {
    this.client = client;
    /** The signed-in practitioner, `Practitioner/…`. */
    this.me = me;
    this.nameBook = new NameBook((reference) => this.get(reference), { me, role: (name) => `${name} (role)` });
  }

  get(url) {
    return this.client.request({ url, headers: { accept: FHIR_JSON } });
  }

  write(method, url, body, contentType = FHIR_JSON) {
    return this.client.request({ url, method, headers: { 'content-type': contentType, accept: FHIR_JSON }, body: JSON.stringify(body) });
  }

  async search(query) {
    const bundle = await this.get(query);
    return (bundle.entry ?? []).map((e) => e.resource).filter(Boolean);
  }

  /** Open threads for the practitioner and their pools, with counts, urgency, due time and owner. */
  async inbox({ category, pool } = {}) {
    const params = new URLSearchParams({ _count: '200' });
    if (category) {
      params.set('category', category);
    }
    if (pool) {
      params.set('pool', pool);
    }
    const bundle = await this.get(`Communication/$inbox?${params}`);
    const rows = (bundle.entry ?? []).map((entry, order) => {
      const ext = (name) => entry.search?.extension?.find((x) => x.url === `${INBOX_EXT}#${name}`);
      return {
        order,
        header: entry.resource,
        unread: ext('unread')?.valueInteger ?? 0,
        messages: ext('messages')?.valueInteger ?? 0,
        urgent: ext('urgent')?.valueBoolean === true,
        lastSent: ext('last-sent')?.valueDateTime,
        due: ext('due')?.valueDateTime,
        owner: ext('owner')?.valueReference?.reference,
      };
    });
    // Urgent first, then unread; within each group the server's order (latest first).
    const rank = (r) => (r.urgent ? 0 : 2) + (r.unread > 0 ? 0 : 1);
    return rows.sort((a, b) => rank(a) - rank(b) || a.order - b.order);
  }

  /**
   * The practitioner's roles, pools and colleagues. The pools come with the inbox (a pool is
   * about no patient, so searches confined to the practitioner's patients do not find it);
   * colleagues are the practice's practitioners; care teams of their patients count too.
   */
  async identities() {
    const [roles, careTeams, inbox, practitioners] = await Promise.all([
      this.search(`PractitionerRole?practitioner=${this.me}&_count=50`).catch(() => []),
      this.search(`CareTeam?participant=${this.me}&_count=100`).catch(() => []),
      this.get('Communication/$inbox?_count=1'),
      this.search('Practitioner?_count=500').catch(() => []),
    ]);
    const pools = (inbox.extension ?? [])
      .filter((x) => x.url === `${INBOX_EXT}#pool` && x.valueReference?.reference)
      .map((x) => ({ reference: x.valueReference.reference, name: x.valueReference.display ?? 'Pool' }));
    for (const pool of pools) {
      this.nameBook.remember(pool.reference, pool.name);
    }
    const colleagues = practitioners
      .filter((p) => p.active !== false && `Practitioner/${p.id}` !== this.me)
      .map((p) => ({ reference: `Practitioner/${p.id}`, name: displayName(p) }));
    for (const colleague of colleagues) {
      this.nameBook.remember(colleague.reference, colleague.name);
    }
    const references = [this.me, ...roles.map((r) => `PractitionerRole/${r.id}`), ...careTeams.map((t) => `CareTeam/${t.id}`), ...pools.map((p) => p.reference)];
    return {
      references: [...new Set(references)],
      pools,
      colleagues: colleagues.sort((a, b) => a.name.localeCompare(b.name)),
    };
  }

  /** Display names for references (looked up once); see NameBook. */
  names(references, displays) {
    return this.nameBook.names(references, displays);
  }

  /** A thread: its header, its messages in the order they were sent, and its Task. */
  async thread(headerId) {
    const [header, messages, tasks] = await Promise.all([
      this.get(`Communication/${headerId}`),
      this.search(`Communication?part-of=Communication/${headerId}&_sort=sent&_count=500`),
      this.search(`Task?focus=Communication/${headerId}`),
    ]);
    return { header, messages, task: tasks[0] };
  }

  /**
   * Opens each unread message addressed to the practitioner (or their role or pool): the
   * server sets `received` on a recipient's first read and audits it (the read receipt).
   */
  async markRead(messages, identities) {
    const mine = new Set(identities);
    const unread = messages.filter((m) => !m.received && (m.recipient ?? []).some((r) => mine.has(r.reference)));
    const opened = await Promise.all(unread.map((m) => this.get(`Communication/${m.id}`)));
    const byId = new Map(opened.map((m) => [m.id, m]));
    return messages.map((m) => byId.get(m.id) ?? m);
  }

  /** A reply in the thread (to the patient side, by default), answering `inResponseTo`. */
  async reply(header, text, { file, inResponseTo } = {}) {
    const payload = await messagePayload((method, url, body) => this.write(method, url, body), header, text, file);
    return this.write('POST', 'Communication', {
      resourceType: 'Communication',
      status: 'completed',
      subject: header.subject,
      partOf: [{ reference: `Communication/${header.id}` }],
      ...(inResponseTo ? { inResponseTo: [{ reference: `Communication/${inResponseTo}` }] } : {}),
      payload,
    });
  }

  /** Sets who owns the thread's work (claim: oneself; reassign: a colleague). */
  async assign(task, owner) {
    const updated = { ...task, owner: { reference: owner } };
    if (updated.status === 'requested') {
      updated.status = 'accepted';
    }
    return this.write('PUT', `Task/${task.id}`, updated);
  }

  /** Staff close a thread by completing its header. */
  close(header) {
    return this.write('PATCH', `Communication/${header.id}`, [{ op: 'replace', path: '/status', value: 'completed' }], 'application/json-patch+json');
  }

  /**
   * Forwards a thread: the colleague or pool becomes a recipient of the header (so the
   * thread is in their inbox and the patient's next messages reach them), and the Task goes
   * to them: owned by a colleague, or waiting unowned in a pool until someone claims it.
   */
  async forward(header, task, target) {
    const already = (header.recipient ?? []).some((r) => r.reference === target);
    if (!already) {
      await this.write('PATCH', `Communication/${header.id}`, [{ op: 'add', path: '/recipient/-', value: { reference: target } }], 'application/json-patch+json');
    }
    if (!task) {
      return;
    }
    const updated = { ...task };
    if (target.startsWith('Practitioner/') || target.startsWith('PractitionerRole/')) {
      updated.owner = { reference: target };
    } else {
      delete updated.owner;
      updated.status = task.status === 'accepted' ? 'requested' : task.status;
      const pools = (task.restriction?.recipient ?? []).filter((r) => r.reference !== target);
      updated.restriction = { ...task.restriction, recipient: [...pools, { reference: target }] };
    }
    await this.write('PUT', `Task/${task.id}`, updated);
  }

  /** The bytes of an attachment, fetched with the token (a plain link would carry none). */
  async binary(url) {
    await this.client.refreshIfNeeded();
    const absolute = new URL(url, `${this.client.state.serverUrl.replace(/\/$/, '')}/`).href;
    const response = await fetch(absolute, { headers: { authorization: this.client.getAuthorizationHeader(), accept: '*/*' } });
    if (!response.ok) {
      throw new Error(`the attachment could not be fetched (${response.status})`);
    }
    return response.blob();
  }

  /** Every thread (open or closed) about a patient, latest first. */
  patientThreads(patient) {
    const tag = encodeURIComponent(`${TAG_SYSTEM}|thread`);
    return this.search(`Communication?subject=${patient}&_tag=${tag}&_sort=-sent&_count=100`);
  }
}
