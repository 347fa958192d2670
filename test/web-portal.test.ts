/**
 * The patient portal end to end, in a real Chromium at phone width against the real server:
 * a patient signs in through the authorization server's own sign-in and consent pages,
 * starts a thread with someone on their care team (with an attachment, a category, the
 * emergency notice and expected reply time in view, and text that must stay text), sees
 * the automatic reply to an urgent message, views their record, downloads it as a PDF and
 * sends it to an address on a real SMTP server; the three portal events are then in the
 * audit trail as the patient and on their activity page. Also: notification preferences,
 * and a representative who picks the patient at consent and views the record as themself.
 */
import fs from 'node:fs';
import type { AuditEvent, Communication } from '@medplum/fhirtypes';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPageErrors, launchBrowser, PHONE, screenshot, seriousAccessibilityViolations } from './support/browser.js';
import { adminCreate, adminSearch } from './support/messaging.js';
import { attachment, startMailbox } from './support/mailbox.js';
import type { Mailbox } from './support/mailbox.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { createUser } from './support/tokens.js';

const PORTAL = 'https://carethread.dev/fhir/CodeSystem/portal-event';
const PASSWORD = 'portal-password-0123';
const HOSTILE = '<img src=x onerror=alert(1)>';
const RECORDS_ADDRESS = 'records@specialist.example.org';

let server: TestServer;
let mailbox: Mailbox | undefined;
let browser: Browser;
let patient: string;
let representative: string;
let doctor: string;

/** Opens the portal and signs in through the real sign-in and consent pages. */
async function signIn(page: Page, username: string, pickPatient?: string): Promise<void> {
  await page.goto(`${server.baseUrl}/portal/`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/auth\//);
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (pickPatient) {
    await page.check(`input[name="patient"][value="${pickPatient}"]`);
  }
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL(/\/portal\//);
  await page.getByRole('heading', { name: 'Messages' }).waitFor();
}

async function expectAccessible(page: Page): Promise<void> {
  expect(await seriousAccessibilityViolations(page)).toEqual([]);
}

async function portalEvents(code: string, who: string): Promise<AuditEvent[]> {
  const events = await adminSearch<AuditEvent>(server, `AuditEvent?subtype=${encodeURIComponent(`${PORTAL}|${code}`)}&entity=${patient}&_count=100`);
  return events.filter((e) => e.agent?.some((a) => a.who?.reference === who));
}

beforeAll(async () => {
  mailbox = await startMailbox();
  const smtpPort = mailbox.port;
  server = await startTestServer({ env: { SMTP_URL: `smtp://127.0.0.1:${smtpPort}`, MAIL_FROM: 'CareThread <records@carethread.test>' } });
  patient = await adminCreate(server, { resourceType: 'Patient', name: [{ family: 'Okafor', given: ['Grace'] }], birthDate: '1984-05-17', telecom: [{ system: 'email', value: 'grace@example.test' }] });
  representative = await adminCreate(server, { resourceType: 'RelatedPerson', active: true, patient: { reference: patient }, name: [{ family: 'Okafor', given: ['Daniel'] }] });
  doctor = await adminCreate(server, { resourceType: 'Practitioner', name: [{ prefix: ['Dr.'], given: ['Ada'], family: 'Reyes' }] });
  const visit = await adminCreate(server, {
    resourceType: 'Encounter',
    status: 'finished',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: { reference: patient },
    participant: [{ individual: { reference: doctor } }],
    period: { start: '2026-11-20T15:00:00Z', end: '2026-11-20T15:30:00Z' },
  });
  await adminCreate(server, {
    resourceType: 'Communication',
    status: 'completed',
    category: [{ coding: [{ system: 'https://carethread.dev/fhir/CodeSystem/message-category', code: 'clinical-summary' }] }],
    subject: { reference: patient },
    encounter: { reference: visit },
    sender: { reference: doctor },
    recipient: [{ reference: patient }],
    sent: '2026-11-20T16:00:00Z',
    payload: [{ contentString: 'Visit summary: blood pressure 128/82. Continue lisinopril 10 mg daily.' }],
  } as Communication);
  await adminCreate(server, { resourceType: 'Appointment', status: 'booked', start: '2027-01-12T15:00:00Z', end: '2027-01-12T15:30:00Z', description: 'Blood pressure check', participant: [{ actor: { reference: patient }, status: 'accepted' }] });
  await createUser(server, { username: 'grace', password: PASSWORD, fhirUser: patient });
  // Daniel also acts for his son, so he picks the patient at consent.
  const son = await adminCreate(server, { resourceType: 'Patient', name: [{ family: 'Okafor', given: ['Leo'] }], birthDate: '2015-02-03' });
  const asFather = await adminCreate(server, { resourceType: 'RelatedPerson', active: true, patient: { reference: son }, name: [{ family: 'Okafor', given: ['Daniel'] }] });
  await createUser(server, { username: 'daniel', password: PASSWORD, fhirUser: representative, represents: [asFather] });
  browser = await launchBrowser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop({ dropDatabase: true });
  await mailbox?.stop();
});

describe('the patient portal at phone width', () => {
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    context = await browser.newContext({ viewport: PHONE, acceptDownloads: true, deviceScaleFactor: 1 });
    page = await context.newPage();
    errors = collectPageErrors(page);
    page.on('dialog', (dialog) => {
      errors.push(`dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
  });
  afterAll(async () => {
    await context?.close();
  });

  it('shows a welcome page, then signs the patient in through the sign-in and consent pages', async () => {
    await page.goto(`${server.baseUrl}/portal/`);
    await expect(page.getByRole('heading', { name: 'Welcome to your patient portal' }).isVisible()).resolves.toBe(true);
    await expectAccessible(page);
    await signIn(page, 'grace');
    expect(await page.locator('#who').innerText()).toContain('Grace Okafor');
  });

  it('sends a message with an attachment to the care team and shows it, as text, with the automatic reply', async () => {
    await page.getByRole('link', { name: 'New message' }).click();
    await page.getByRole('heading', { name: 'New message' }).waitFor();
    expect(await page.getByText('Not for emergencies - call 911').first().isVisible()).toBe(true);
    // The care team (from the visit) is offered; the categories come from the CodeSystem.
    expect(await page.locator('#recipient option').allInnerTexts()).toEqual(['Dr. Ada Reyes']);
    const categories = await page.locator('#category option').allInnerTexts();
    expect(categories).toEqual(expect.arrayContaining(['Medical question', 'Prescription renewal']));
    expect(categories).not.toContain('Clinical summary of an office visit');
    await page.selectOption('#category', 'appointment-request');
    expect(await page.locator('#reply-time').innerText()).toBe('Expected reply: within 1 business day.');
    await page.selectOption('#category', 'medical-question');
    expect(await page.locator('#reply-time').innerText()).toBe('Expected reply: within 2 business days.');
    await expectAccessible(page);

    await page.fill('#topic', 'Dizzy since the new dose');
    await page.fill('#message-text', `I feel dizzy and have chest pain since Monday. ${HOSTILE}`);
    await page.setInputFiles('#message-file', { name: 'readings.txt', mimeType: 'text/plain', buffer: Buffer.from('Mon 150/95\nTue 148/92\n') });
    await page.getByRole('button', { name: 'Send message' }).click();
    await page.getByRole('heading', { name: 'Dizzy since the new dose' }).waitFor();

    const mine = page.locator('.message.mine');
    await mine.first().waitFor();
    expect(await mine.first().innerText()).toContain(`I feel dizzy and have chest pain since Monday. ${HOSTILE}`);
    expect(await page.locator('.messages img').count()).toBe(0);
    expect(await page.getByRole('button', { name: /readings\.txt/ }).isVisible()).toBe(true);
    // The urgent phrase brought the emergency guidance into the thread at once.
    const auto = page.locator('.message.auto-reply');
    await auto.waitFor();
    expect(await auto.innerText()).toMatch(/Automatic reply[\s\S]*call 911/);
    expect(await page.locator('.reply-time').innerText()).toBe('Expected reply: within 2 business days.');

    // The message reached the doctor, with its attachment stored.
    const stored = await adminSearch<Communication>(server, `Communication?subject=${patient}&recipient=${doctor}&_count=50`);
    const message = stored.find((c) => c.payload?.some((p) => p.contentString?.includes('chest pain')));
    expect(message?.sender?.reference).toBe(patient);
    expect(message?.payload?.find((p) => p.contentAttachment)?.contentAttachment?.title).toBe('readings.txt');

    await screenshot(page, 'portal-messages');
    await expectAccessible(page);

    // The inbox lists the thread.
    await page.getByRole('link', { name: /All messages/ }).click();
    await page.getByRole('link', { name: /Dizzy since the new dose/ }).waitFor();
  });

  it('shows the doctor’s reply as new, and opening it tells the care team it was read', async () => {
    const header = (await adminSearch<Communication>(server, `Communication?subject=${patient}&_tag=https://carethread.dev/fhir/CodeSystem/tag|thread`))[0];
    // The EHR files Dr. Reyes's answer into the thread.
    const reply = await adminCreate(server, {
      resourceType: 'Communication',
      status: 'completed',
      subject: { reference: patient },
      partOf: [{ reference: `Communication/${header.id}` }],
      sender: { reference: doctor },
      recipient: [{ reference: patient }],
      sent: new Date().toISOString(),
      payload: [{ contentString: 'Please stop the new dose and come in tomorrow at 9.' }],
    } as Communication);
    await page.reload();
    const link = page.getByRole('link', { name: /Dizzy since the new dose/ });
    await link.waitFor();
    expect(await link.innerText()).toContain('1 new');
    await link.click();
    const message = page.locator(`.message[data-id="${reply.split('/')[1]}"]`);
    await message.waitFor();
    expect(await message.innerText()).toMatch(/Dr\. Ada Reyes[\s\S]*Please stop the new dose/);
    const stored = (await server.request.get(`/fhir/${reply}`)).body as Communication;
    expect(stored.received).toEqual(expect.any(String));
  });

  it('shows the health record, downloads it as a PDF and sends it to another provider', async () => {
    await page.getByRole('link', { name: 'My health record' }).click();
    await page.getByRole('heading', { name: 'My health record' }).waitFor();
    const text = await page.locator('#content').innerText();
    expect(text).toContain('Grace Okafor');
    expect(text).toContain('Continue lisinopril 10 mg daily');
    expect(text).toContain('Blood pressure check');
    expect(text).toContain('Dr. Ada Reyes');
    expect(text).toContain('Dizzy since the new dose');
    await screenshot(page, 'portal-record');
    await expectAccessible(page);

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download PDF' }).click()]);
    expect(download.suggestedFilename()).toBe('health-record.pdf');
    const file = await download.path();
    expect(fs.readFileSync(file!).subarray(0, 5).toString('latin1')).toBe('%PDF-');

    await page.fill('#transmit-to', RECORDS_ADDRESS);
    await page.getByRole('button', { name: 'Send my record' }).click();
    await page.getByText('Your record is on its way').waitFor();
    const mail = await mailbox!.mailTo(RECORDS_ADDRESS);
    expect(attachment(mail.raw, 'health-record.pdf').subarray(0, 5).toString('latin1')).toBe('%PDF-');
    expect(attachment(mail.raw, 'health-record.json').toString('utf8')).toContain('Continue lisinopril');

    // A bad address is refused with the server's reason, and nothing is sent.
    await page.fill('#transmit-to', 'someone@nowhere');
    await page.getByRole('button', { name: 'Send my record' }).click();
    await page.getByText(/Not sent: .*e-mail or Direct address/).waitFor();
    const refused = errors.findIndex((e) => /status of 400/.test(e));
    expect(refused).toBeGreaterThanOrEqual(0);
    errors.splice(refused, 1);

    // The three portal events are in the audit trail, as the patient, about the patient.
    for (const code of ['view', 'download', 'transmit']) {
      const events = await portalEvents(code, patient);
      expect(events.length, code).toBe(1);
      expect(events[0].entity?.[0]?.what?.reference).toBe(patient);
    }
  });

  it('lists the views, download and transmission on the activity page', async () => {
    await page.getByRole('link', { name: 'My activity' }).click();
    await page.getByRole('heading', { name: 'My activity' }).waitFor();
    const rows = page.locator('table.activity tbody tr');
    const actions = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-action')));
    expect(actions).toEqual(expect.arrayContaining(['view', 'download', 'transmit']));
    const table = await page.locator('table.activity').innerText();
    expect(table).toContain('Viewed');
    expect(table).toContain('Downloaded');
    expect(table).toContain('Sent to a provider');
    expect(table).toContain('Grace Okafor');
    await expectAccessible(page);
  });

  it('changes the notification preference', async () => {
    await page.getByRole('link', { name: 'Notifications' }).click();
    await page.getByRole('heading', { name: 'Notifications' }).waitFor();
    expect(await page.locator('#channel-email').isChecked()).toBe(true);
    await page.check('#channel-none');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved').waitFor();
    const res = await server.request.get(`/fhir/${patient}/$notification-preference`);
    expect(res.body.parameter.find((p: { name: string }) => p.name === 'channel').valueCode).toBe('none');
    await expectAccessible(page);
    expect(errors).toEqual([]);
  });
});

describe('a representative', () => {
  it('picks the patient at consent and views the record as themself', async () => {
    const context = await browser.newContext({ viewport: { width: 1024, height: 800 } });
    const page = await context.newPage();
    const errors = collectPageErrors(page);
    await signIn(page, 'daniel', patient);
    expect(await page.locator('#who').innerText()).toContain('Daniel Okafor for Grace Okafor');
    expect(await page.locator('#who').innerText()).not.toContain('Leo');
    await page.getByRole('link', { name: 'My health record' }).click();
    await page.getByRole('heading', { name: 'My health record' }).waitFor();
    expect((await portalEvents('view', representative)).length).toBe(1);
    await page.getByRole('link', { name: 'My activity' }).click();
    await page.getByRole('heading', { name: 'My activity' }).waitFor();
    expect(await page.locator('table.activity').innerText()).toContain('Daniel Okafor');
    expect(errors).toEqual([]);
    await context.close();
  });
});
