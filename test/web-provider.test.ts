/**
 * The provider SMART app in a real Chromium, embedded the way an EHR embeds it: a simulated
 * EHR page on another origin (allowed by FRAME_ANCESTORS) frames /apps/provider/launch with
 * `iss` and a launch the EHR created with POST /auth/launch. The app completes the EHR launch
 * with fhirclient (no sign-in), applies smart_style_url, shows the patient banner and the
 * doctor's inbox (urgent, then unread; due times), opens the patient's thread (the text shown
 * as typed, never as HTML; opening it sets the read receipt), replies with a quick-reply
 * template (stored as the doctor, answering the patient's message; the Task completes),
 * shows the patient's next message without a reload (websocket subscription), reassigns and
 * claims the Task, sends and opens/downloads an attachment, forwards to a colleague and a
 * pool, filters the inbox, and closes the thread. Framed by a page of another site, whose
 * frames the browser denies storage, the app starts in a window of its own. Pages pass axe,
 * log no errors or CSP violations, fit a phone, and are screenshotted for the README.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { Communication, Subscription, Task } from '@medplum/fhirtypes';
import type { Browser, Frame, FrameLocator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPageErrors, launchBrowser, PHONE, screenshot, seriousAccessibilityViolations } from './support/browser.js';
import { adminCreate, adminRead, adminSearch, header, message, post, ref } from './support/messaging.js';
import { freePort, startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { createUser, userToken } from './support/tokens.js';
import type { IssuedToken } from './support/tokens.js';

const PASSWORD = 'provider-app-password-0123';
const FIRST_TEXT = 'My ankle still hurts. <b>not bold</b> & is that <script>normal</script>?';
const LATER_TEXT = 'Also: the swelling went down overnight.';
const LEAFLET = 'Ankle exercises: circles, 10 times, twice a day.\n';
const TOPIC = 'Ankle pain after the fall';
const URGENT_TOPIC = 'Breathless on the stairs';
const TEMPLATE = 'Please book an appointment so we can look at this together.';
const MR = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] };

let server: TestServer;
let ehr: http.Server;
let ehrOrigin: string;
let otherSiteOrigin: string;
const ehrPages = new Map<string, string>();
let browser: Browser;
let page: Page;
let errors: string[];
let patient: string;
let doctor: string;
let colleague: string;
let pool: string;
let thread: string;
let urgentThread: string;
let firstMessage: string;
let alma: IssuedToken;

beforeAll(async () => {
  const ehrPort = await freePort();
  // Another port is another origin (same site, like ehr.clinic.org and carethread.clinic.org);
  // "localhost" is another site altogether, whose frames a browser may deny storage.
  ehrOrigin = `http://127.0.0.1:${ehrPort}`;
  otherSiteOrigin = `http://localhost:${ehrPort}`;
  server = await startTestServer({ env: { FRAME_ANCESTORS: `${ehrOrigin} ${otherSiteOrigin}` } });

  patient = await adminCreate(server, {
    resourceType: 'Patient',
    name: [{ given: ['Alma'], family: 'Quintero' }],
    birthDate: '1961-04-09',
    gender: 'female',
    identifier: [{ type: MR, system: 'urn:example:mrn', value: 'MRN-40213' }],
  });
  doctor = await adminCreate(server, { resourceType: 'Practitioner', name: [{ prefix: ['Dr'], given: ['Nia'], family: 'Okoro' }] });
  colleague = await adminCreate(server, { resourceType: 'Practitioner', name: [{ given: ['Sam'], family: 'Lind' }] });
  pool = await adminCreate(server, { resourceType: 'Group', type: 'practitioner', actual: true, name: 'Orthopedics nurses', member: [{ entity: ref(doctor) }, { entity: ref(colleague) }] });
  await adminCreate(server, { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: ref(patient), participant: [{ individual: ref(doctor) }] });
  await createUser(server, { username: 'alma', password: PASSWORD, fhirUser: patient });
  alma = await userToken(server, { username: 'alma', password: PASSWORD, scope: 'openid fhirUser launch/patient patient/*.cruds' });

  // The patient starts threads to her doctor through the API, as the portal does: an urgent
  // one first, then the one the doctor answers (newer, so the server lists it first).
  const u = await post(alma.request, header(patient, [doctor], 'medical-question', URGENT_TOPIC));
  urgentThread = `Communication/${u.id}`;
  await post(alma.request, message(patient, urgentThread, 'I have chest pain when I climb stairs.'));
  const h = await post(alma.request, header(patient, [doctor], 'symptom-report', TOPIC));
  thread = `Communication/${h.id}`;
  firstMessage = `Communication/${(await post(alma.request, message(patient, thread, FIRST_TEXT))).id}`;

  // The simulated EHR: pages that frame the app's launch URL.
  ehr = http.createServer((req, res) => {
    const html = ehrPages.get(req.url ?? '');
    res.writeHead(html ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' }).end(html ?? 'not found');
  });
  // On every interface: the browser reaches it as 127.0.0.1 and as localhost (which may be ::1).
  await new Promise<void>((resolve) => ehr.listen(ehrPort, resolve));
  browser = await launchBrowser();
  page = await (await browser.newContext({ viewport: { width: 1200, height: 1300 }, acceptDownloads: true })).newPage();
  errors = collectPageErrors(page);
});

afterAll(async () => {
  await browser?.close();
  ehr?.closeAllConnections();
  await new Promise<void>((resolve) => (ehr ? ehr.close(() => resolve()) : resolve()));
  await server?.stop({ dropDatabase: true });
});

/** The EHR creates a launch for the doctor and this patient, and a page at `path` that frames the app with it. */
async function ehrPage(path: string, extra: Record<string, unknown> = {}): Promise<void> {
  const launch = await server.request.post('/auth/launch').send({ patient, fhirUser: doctor, client_id: 'carethread-provider-app', ...extra });
  expect(launch.status, JSON.stringify(launch.body)).toBe(201);
  const appUrl = `${server.baseUrl}/apps/provider/launch?iss=${encodeURIComponent(server.fhirBase)}&launch=${encodeURIComponent(launch.body.launch)}`;
  ehrPages.set(
    path,
    `<!doctype html><html lang="en"><head><title>Simulated EHR</title><link rel="icon" href="data:,"></head><body>
     <h1>Simulated EHR: chart of Alma Quintero</h1>
     <iframe title="CareThread messages" src="${appUrl.replace(/&/g, '&amp;')}" width="1100" height="1250"></iframe></body></html>`
  );
}

function app(): FrameLocator {
  return page.frameLocator('iframe');
}

/** The app's frame (for axe, which runs in the document it is evaluated in). */
function appFrame(): Frame {
  const frame = page.frames().find((f) => f.url().startsWith(`${server.baseUrl}/apps/provider/`));
  expect(frame, 'the app frame').toBeDefined();
  return frame!;
}

async function taskOf(): Promise<Task> {
  const tasks = await adminSearch<Task>(server, `Task?focus=${thread}`);
  expect(tasks).toHaveLength(1);
  return tasks[0];
}

async function axe(): Promise<void> {
  // seriousAccessibilityViolations only evaluates scripts: a Frame does that like a Page.
  expect(await seriousAccessibilityViolations(appFrame() as unknown as Page)).toEqual([]);
}

describe('the provider app inside the EHR', () => {
  it('launches in the EHR’s iframe without a sign-in and shows the patient banner and the inbox', async () => {
    await ehrPage('/chart');
    await page.goto(`${ehrOrigin}/chart`);
    const banner = app().locator('.patient-banner');
    await banner.waitFor({ timeout: 20_000 });
    expect(await banner.textContent()).toContain('Alma Quintero');
    expect(await banner.textContent()).toContain('MRN-40213');
    expect(await banner.textContent()).toContain('female');

    const row = app().locator(`li[data-thread="${thread.split('/')[1]}"]`);
    await row.waitFor();
    // Urgent first, then unread.
    expect(await app().locator('.inbox-list .thread-open').allTextContents()).toEqual([URGENT_TOPIC, TOPIC]);
    expect(await app().locator('.inbox-list > li').first().locator('.badge.urgent').textContent()).toBe('Urgent');
    expect(await row.locator('.badge.urgent').count()).toBe(0);
    expect(await row.locator('.thread-open').textContent()).toBe(TOPIC);
    expect(await row.locator('.unread-badge').textContent()).toBe('1 unread');
    expect(await row.locator('.due').textContent()).toMatch(/^Due .+/);
    expect(await row.locator('.patient').textContent()).toBe('Alma Quintero');
    expect(await row.locator('.owner').textContent()).toBe('Owner: you');
    await app().locator('#live', { hasText: 'Live' }).waitFor();
    // The EHR's style (smart_style_url) is applied.
    expect(await appFrame().evaluate(() => [document.documentElement.dataset.smartStyle, getComputedStyle(document.documentElement).getPropertyValue('--accent')])).toEqual([
      'applied',
      '#0b5cad',
    ]);
    await axe();
    await screenshot(page, 'provider-inbox');
  });

  it('opens the thread: the message as typed (not HTML), read receipt set', async () => {
    await app().locator('.thread-open', { hasText: TOPIC }).click();
    const text = app().locator(`li[data-message="${firstMessage.split('/')[1]}"] .message-text`);
    await text.waitFor();
    expect(await text.textContent()).toBe(FIRST_TEXT);
    expect(await text.locator('b, script').count()).toBe(0);
    expect(await app().locator('.message .sender').first().textContent()).toBe('Alma Quintero');
    // Opening it as the recipient is reading it: the server set `received`.
    await expect.poll(async () => (await adminRead<Communication>(server, firstMessage)).received).toBeDefined();
    await app().locator('.read-state.read').first().waitFor();
  });

  it('replies with a quick-reply template plus text: stored as the doctor, answering the patient; the Task completes', async () => {
    await app().locator('.quick-reply', { hasText: 'Book a visit' }).click();
    await app().locator('#reply-text').pressSequentially('Bring your X-ray.');
    await app().locator('button', { hasText: 'Send reply' }).click();
    await app().locator('.message.mine .message-text').waitFor();
    expect(await app().locator('.message.mine .message-text').textContent()).toBe(`${TEMPLATE} Bring your X-ray.`);

    const messages = await adminSearch<Communication>(server, `Communication?part-of=${thread}&_sort=sent`);
    const reply = messages.find((m) => m.sender?.reference === doctor);
    expect(reply?.payload?.[0]?.contentString).toBe(`${TEMPLATE} Bring your X-ray.`);
    expect(reply?.inResponseTo).toEqual([ref(firstMessage)]);
    expect(reply?.recipient).toEqual([ref(patient)]);
    expect((await taskOf()).status).toBe('completed');
    await app().locator('.task-status', { hasText: 'Answered' }).waitFor();
    await axe();
    await screenshot(page, 'provider-thread');
  });

  it('shows the patient’s next message without a reload (websocket)', async () => {
    const url = page.url();
    await post(alma.request, message(patient, thread, LATER_TEXT));
    await app().locator('.message-text', { hasText: LATER_TEXT }).waitFor({ timeout: 10_000 });
    expect(page.url()).toBe(url);
    // The Task is work again: the patient wrote after the answer.
    await app().locator('.task-status', { hasText: 'Waiting for an answer' }).waitFor();
  });

  it('reassigns the thread to a colleague and claims it back (Task.owner)', async () => {
    await app().locator('#reassign-to').selectOption({ label: 'Sam Lind' });
    await app().locator('button', { hasText: /^Reassign$/ }).click();
    await app().locator('.work-item .owner', { hasText: 'Owner: Sam Lind' }).waitFor();
    expect((await taskOf()).owner).toEqual(ref(colleague));
    await app().locator('.work-item button', { hasText: /^Claim$/ }).click();
    await app().locator('.work-item .owner', { hasText: 'Owner: you' }).waitFor();
    expect((await taskOf()).owner).toEqual(ref(doctor));
  });

  it('sends a file with a reply, and opens and downloads an attachment with the token', async () => {
    await app().locator('#reply-text').fill('Here is the leaflet.');
    await app().locator('#reply-file').setInputFiles({ name: 'ankle-exercises.txt', mimeType: 'text/plain', buffer: Buffer.from(LEAFLET) });
    await app().locator('button', { hasText: 'Send reply' }).click();
    const item = app().locator('.message', { hasText: 'Here is the leaflet.' });
    await item.locator('.attachment', { hasText: 'ankle-exercises.txt' }).waitFor();
    const messages = await adminSearch<Communication>(server, `Communication?part-of=${thread}&_sort=sent`);
    const withFile = messages.find((m) => m.payload?.some((p) => p.contentAttachment));
    const attachment = withFile!.payload!.find((p) => p.contentAttachment)!.contentAttachment!;
    expect(attachment).toMatchObject({ contentType: 'text/plain', title: 'ankle-exercises.txt' });
    expect(attachment.url).toMatch(/^Binary\//);

    const [download] = await Promise.all([page.waitForEvent('download'), item.locator('button', { hasText: 'Download' }).click()]);
    expect(download.suggestedFilename()).toBe('ankle-exercises.txt');
    expect(fs.readFileSync(await download.path()).toString('utf8')).toBe(LEAFLET);
    const [opened] = await Promise.all([page.context().waitForEvent('page'), item.locator('button', { hasText: 'Open' }).click()]);
    await opened.waitForLoadState();
    expect(opened.url()).toMatch(/^blob:/);
    expect(await opened.locator('body').textContent()).toContain(LEAFLET.trim());
    await opened.close();
  });

  it('forwards the thread to a colleague and to a pool: it is in their inbox, and the Task follows', async () => {
    await app().locator('#forward-to').selectOption({ label: 'Sam Lind' });
    await app().locator('button', { hasText: /^Forward$/ }).click();
    await app().locator('.thread-about', { hasText: 'Sam Lind' }).waitFor();
    expect((await adminRead<Communication>(server, thread)).recipient).toEqual([ref(doctor), ref(colleague)]);
    expect((await taskOf()).owner).toEqual(ref(colleague));
    const theirs = await server.request.get(`/fhir/Communication/$inbox?practitioner=${colleague}`);
    expect(theirs.body.entry.map((e: { resource: Communication }) => `Communication/${e.resource.id}`)).toContain(thread);

    await app().locator('#forward-to').selectOption({ label: 'Orthopedics nurses' });
    await app().locator('button', { hasText: /^Forward$/ }).click();
    await app().locator('.thread-about', { hasText: 'Orthopedics nurses' }).waitFor();
    const pooled = await taskOf();
    expect(pooled.owner).toBeUndefined();
    expect(pooled.restriction?.recipient).toContainEqual(ref(pool));
    await app().locator('.work-item .owner', { hasText: 'Unassigned' }).waitFor();
  });

  it('filters the inbox by category and pool, and claims a pooled thread from the list', async () => {
    await app().locator('button', { hasText: 'Back' }).click();
    const row = app().locator(`li[data-thread="${thread.split('/')[1]}"]`);
    const rows = app().locator('.inbox-list > li[data-thread]');
    await row.waitFor();
    expect(await row.locator('.owner').textContent()).toBe('Unassigned');
    expect(await rows.count()).toBe(2);
    await app().locator('#filter-category').selectOption({ label: 'Billing' });
    await app().locator('.inbox-list', { hasText: 'Nothing waiting.' }).waitFor();
    await app().locator('#filter-category').selectOption({ label: 'Symptom report' });
    await row.waitFor();
    expect(await rows.count()).toBe(1);
    await app().locator('#filter-category').selectOption({ label: 'All categories' });
    await expect.poll(() => rows.count()).toBe(2);
    // Only this thread went to the pool.
    await app().locator('#filter-pool').selectOption({ label: 'Orthopedics nurses' });
    await expect.poll(() => rows.count()).toBe(1);
    await row.waitFor();
    await row.locator('button.claim').click();
    await row.locator('.owner', { hasText: 'Owner: you' }).waitFor();
    expect((await taskOf()).owner).toEqual(ref(doctor));
    await app().locator('#filter-pool').selectOption({ label: 'Me and all my pools' });
    await expect.poll(() => rows.count()).toBe(2);
  });

  it('closes the thread: gone from the inbox, closed in the patient’s threads', async () => {
    await app().locator('.thread-open', { hasText: TOPIC }).click();
    await app().locator('button', { hasText: 'Close thread' }).click();
    await app().locator('.inbox-list .thread-open', { hasText: URGENT_TOPIC }).waitFor();
    expect(await app().locator('.inbox-list .thread-open').allTextContents()).toEqual([URGENT_TOPIC]);
    expect((await adminRead<Communication>(server, thread)).status).toBe('completed');
    await app().locator('nav button', { hasText: 'This patient’s threads' }).click();
    const row = app().locator(`li[data-thread="${thread.split('/')[1]}"]`);
    await row.locator('.badge', { hasText: 'Closed' }).waitFor();
    await axe();
  });

  it('logged no errors and no CSP violations', () => {
    expect(errors).toEqual([]);
  });
});

describe('embedded by an EHR on another site', () => {
  it('starts in a window of its own when the browser denies the frame its storage, at phone width, without a banner the EHR declined', async () => {
    await ehrPage('/other-site', { need_patient_banner: false });
    const context = await browser.newContext({ viewport: PHONE });
    const ehrTab = await context.newPage();
    const pageErrors = collectPageErrors(ehrTab);
    await ehrTab.goto(`${otherSiteOrigin}/other-site`);
    const framed = ehrTab.frameLocator('iframe');
    // A browser that partitions third-party storage instead of denying it runs the app in the frame.
    const button = framed.locator('#open-window');
    const inbox = framed.locator('.inbox-list');
    await Promise.race([button.waitFor({ timeout: 20_000 }), inbox.waitFor({ timeout: 20_000 })]);
    let appPage: Page = ehrTab;
    let view: FrameLocator | Page = framed;
    if (await button.isVisible()) {
      const [popup] = await Promise.all([context.waitForEvent('page'), button.click()]);
      pageErrors.push(...collectPageErrors(popup));
      appPage = popup;
      view = popup;
    }
    await view.locator('.inbox-list .thread-open', { hasText: URGENT_TOPIC }).waitFor({ timeout: 20_000 });
    expect(await view.locator('.patient-banner').count()).toBe(0);
    if (appPage !== ehrTab) {
      expect(await seriousAccessibilityViolations(appPage)).toEqual([]);
      // Nothing wider than the phone: no sideways scrolling.
      expect(await appPage.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
      await screenshot(appPage, 'provider-phone');
    }
    expect(pageErrors).toEqual([]);
    // The second launch reused the practitioner's websocket Subscription, confined to their messages.
    const subscriptions = await adminSearch<Subscription>(server, 'Subscription?type=websocket');
    expect(subscriptions).toHaveLength(1);
    expect(subscriptions[0].criteria).toMatch(new RegExp(`^Communication\\?recipient=${doctor}(,|$)`));
    await context.close();
  });
});
