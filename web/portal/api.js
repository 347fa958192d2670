// What the portal asks of CareThread's FHIR API, through the fhirclient `client` (which
// carries the access token and refreshes it): the patient's threads and messages, their
// care team (who they may write to), the record operations (view, download, transmit,
// activity) and the notification preference.
import { displayName } from '/web/dom.js';
import { messagePayload } from '/web/messages.js';
import { NameBook } from '/web/names.js';

export const CATEGORY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-category';
export const TAG_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/tag';
const FHIR_JSON = 'application/fhir+json';

export function hasTag(resource, code) {
  return (resource?.meta?.tag ?? []).some((t) => t.system === TAG_SYSTEM && t.code === code);
}

export function categoryOf(resource) {
  return (resource?.category ?? []).flatMap((c) => c.coding ?? []).find((c) => c.system === CATEGORY_SYSTEM)?.code;
}

export { displayName };

export class PortalApi {
  constructor(client) {
    this.client = client;
    /** The patient acted for, `Patient/…`. */
    this.patient = `Patient/${client.patient.id}`;
    /** The signed-in person, `Patient/…` or `RelatedPerson/…`. */
    this.me = client.getFhirUser?.() ?? this.patient;
    this.nameBook = new NameBook((reference) => this.get(reference), { me: this.me, meName: 'You', fallback: (_reference, display) => display ?? 'Care team' });
  }

  get(url) {
    return this.client.request({ url, headers: { accept: FHIR_JSON } });
  }

  write(method, url, body) {
    return this.client.request({ url, method, headers: { 'content-type': FHIR_JSON, accept: FHIR_JSON }, body: JSON.stringify(body) });
  }

  async search(query) {
    const bundle = await this.get(query);
    return (bundle.entry ?? []).map((e) => e.resource).filter(Boolean);
  }

  /** The patient's threads (headers), latest first, each with its messages' count and last time. */
  async threads() {
    const all = await this.search(`Communication?subject=${this.patient}&_count=500`);
    const headers = all.filter((c) => hasTag(c, 'thread'));
    return headers
      .map((header) => {
        const messages = all.filter((m) => m.partOf?.[0]?.reference === `Communication/${header.id}`);
        const last = messages.map((m) => m.sent).filter(Boolean).sort().at(-1) ?? header.sent;
        return { header, messages: messages.length, last, unread: messages.filter((m) => this.isUnread(m)).length, urgent: messages.some((m) => m.priority === 'urgent') };
      })
      .sort((a, b) => String(b.last ?? '').localeCompare(String(a.last ?? '')));
  }

  /** A thread: its header and its messages in the order they were sent. */
  async thread(headerId) {
    const [header, messages] = await Promise.all([
      this.get(`Communication/${headerId}`),
      this.search(`Communication?part-of=Communication/${headerId}&_sort=sent&_count=500`),
    ]);
    return { header, messages };
  }

  /** A message to the signed-in person that they have not opened yet. */
  isUnread(message) {
    return !message.received && (message.recipient ?? []).some((r) => r.reference === this.me);
  }

  /**
   * Opens each unread message addressed to the signed-in person: the server sets `received`
   * on a recipient's first read (the read receipt the care team sees).
   */
  async markRead(messages) {
    const opened = await Promise.all(messages.filter((m) => this.isUnread(m)).map((m) => this.get(`Communication/${m.id}`)));
    const byId = new Map(opened.map((m) => [m.id, m]));
    return messages.map((m) => byId.get(m.id) ?? m);
  }

  /**
   * The message categories of CareThread's CodeSystem: `{ code, display, patientMay,
   * replyDays }`, where `patientMay` says a patient may start a thread with it and
   * `replyDays` is the practice's reply time in business days (the thread Task's due time).
   */
  async categories() {
    const systems = await this.search(`CodeSystem?url=${encodeURIComponent(CATEGORY_SYSTEM)}`);
    return (systems[0]?.concept ?? []).map((c) => {
      const property = (code) => (c.property ?? []).find((p) => p.code === code);
      return {
        code: c.code,
        display: c.display ?? c.code,
        patientMay: property('sent-by')?.valueCode === 'patient',
        replyDays: property('reply-within-business-days')?.valueInteger,
      };
    });
  }

  /**
   * Who the patient may write to: the practitioners of their care team (a visit with them,
   * or the patient's own CareTeam), as the server checks it.
   */
  async careTeam() {
    const [encounters, teams] = await Promise.all([
      this.search(`Encounter?subject=${this.patient}&_count=200`).catch(() => []),
      this.search(`CareTeam?subject=${this.patient}&_count=50`).catch(() => []),
    ]);
    const references = new Set();
    for (const e of encounters) {
      (e.participant ?? []).forEach((p) => references.add(p.individual?.reference));
    }
    for (const t of teams) {
      (t.participant ?? []).forEach((p) => references.add(p.member?.reference));
    }
    const people = [...references].filter((r) => r?.startsWith('Practitioner/') || r?.startsWith('PractitionerRole/'));
    const names = await this.names(people);
    return people.map((reference) => ({ reference, name: names.get(reference) })).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Display names for references (looked up once); see NameBook. */
  names(references, displays) {
    return this.nameBook.names(references, displays);
  }

  /** Starts a thread: its header, then the first message (with the attachment, if any). */
  async startThread({ recipient, category, topic, text, file }) {
    const header = await this.write('POST', 'Communication', {
      resourceType: 'Communication',
      status: 'in-progress',
      subject: { reference: this.patient },
      recipient: [{ reference: recipient }],
      topic: { text: topic },
      category: [{ coding: [{ system: CATEGORY_SYSTEM, code: category }] }],
    });
    await this.send(header, text, file);
    return header;
  }

  /** A message in the thread (to its recipients), with text and an optional attachment. */
  async send(header, text, file) {
    const payload = await messagePayload((method, url, body) => this.write(method, url, body), header, text, file);
    return this.write('POST', 'Communication', {
      resourceType: 'Communication',
      status: 'completed',
      subject: { reference: this.patient },
      partOf: [{ reference: `Communication/${header.id}` }],
      payload,
    });
  }

  /** The record as the patient may see it (records a "view"). */
  healthRecord() {
    return this.get(`${this.patient}/$health-record`);
  }

  /** The record as a file, `pdf` or `json` (records a "download"): a Blob and its file name. */
  async download(format) {
    const response = await this.raw(`${this.patient}/$download?format=${format}`);
    const disposition = response.headers.get('content-disposition') ?? '';
    const filename = /filename="([^"]+)"/.exec(disposition)?.[1] ?? `health-record.${format}`;
    return { blob: await response.blob(), filename };
  }

  /** Sends the record to an e-mail or Direct address (records a "transmit"). */
  transmit(to) {
    return this.write('POST', `${this.patient}/$transmit`, { resourceType: 'Parameters', parameter: [{ name: 'to', valueString: to }] });
  }

  /** Who viewed, downloaded or transmitted the record, and when. */
  async activity() {
    const parameters = await this.get(`${this.patient}/$activity`);
    return (parameters.parameter ?? []).map((event) => {
      const part = (name) => event.part?.find((p) => p.name === name);
      return {
        action: part('action')?.valueCode,
        description: part('description')?.valueString,
        who: part('who')?.valueReference,
        when: part('when')?.valueInstant,
        delivery: part('delivery')?.valueCode,
      };
    });
  }

  /** The signed-in person's notification preference. */
  async preference() {
    return parametersOf(await this.get(`${this.me}/$notification-preference`));
  }

  async setPreference(channel) {
    return parametersOf(await this.write('POST', `${this.me}/$notification-preference`, { resourceType: 'Parameters', parameter: [{ name: 'channel', valueCode: channel }] }));
  }

  /** An attachment's bytes as a Blob (Binary/{id}), fetched with the token. */
  async binary(url) {
    return (await this.raw(url)).blob();
  }

  /** A request answered with something other than FHIR JSON, with the token. */
  async raw(path) {
    if (this.client.refreshIfNeeded) {
      await this.client.refreshIfNeeded();
    }
    const base = this.client.state.serverUrl.replace(/\/$/, '');
    const response = await fetch(`${base}/${path}`, { headers: { authorization: `Bearer ${this.client.state.tokenResponse.access_token}` } });
    if (!response.ok) {
      let text = `The server answered ${response.status}`;
      try {
        text = (await response.json()).issue?.[0]?.details?.text ?? text;
      } catch {
        // not an OperationOutcome
      }
      throw new Error(text);
    }
    return response;
  }
}

export function isPatientSide(reference) {
  return Boolean(reference?.startsWith('Patient/') || reference?.startsWith('RelatedPerson/'));
}

function parametersOf(parameters) {
  const values = (name) => (parameters.parameter ?? []).filter((p) => p.name === name).map((p) => p.valueCode ?? p.valueBoolean ?? p.valueString);
  return { channel: values('channel')[0], chosen: values('chosen')[0], effective: values('effectiveChannel')[0], available: values('availableChannel'), unavailableReason: values('unavailableReason')[0] };
}

/** The text of a failed request: the server's OperationOutcome when there is one. */
export function errorText(err) {
  const message = String(err?.message ?? err);
  // fhirclient's HttpError carries the response body after a blank line.
  const json = message.indexOf('\n\n{');
  if (json >= 0) {
    try {
      const issue = JSON.parse(message.slice(json + 2)).issue?.[0];
      if (issue?.details?.text || issue?.diagnostics) {
        return issue.details?.text ?? issue.diagnostics;
      }
    } catch {
      // not JSON after all
    }
  }
  return message.split('\n')[0];
}
