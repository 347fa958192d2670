/**
 * The auditor dashboard (/auditor/) in a real Chromium against the real server: an auditor
 * signs in through the authorization server's login and consent pages (standalone SMART
 * launch with fhirclient), runs the 2014 attestation of one EP, sees the table and the
 * chart, watches the secure-messaging and VDT counts change after patients write and view
 * their record, drills into the patients of a measure, downloads the CSV and the signed
 * report, checks the signature of the download and of a tampered copy, and searches the
 * audit trail with its chain status. The page never shows a message's text.
 */
import fs from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PHONE, collectPageErrors, launchBrowser, screenshot, seriousAccessibilityViolations } from './support/browser.js';
import { PracticeBuilder } from './support/measures.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { createUser } from './support/tokens.js';

const PASSWORD = 'auditor-password-0123';
const PERIOD = { start: '2014-01-01', end: '2014-03-31' };
// Distinctive message texts: the dashboard must never show them.
const FIRST_MESSAGE_TEXT = 'Heron-lantern question about my dosage';
const LATER_MESSAGE_TEXT = 'Marigold-compass note about my knee';

let server: TestServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let errors: string[];
let auditorRef: string;

// One EP (NPI 1234567893) who saw 25 patients in an office visit on Monday 2014-02-10.
const practice = new PracticeBuilder();
const ep = practice.practitioner('aud-ep', 'Okafor', '1234567893');
practice.practitioner('aud-other', 'Lindqvist');
const clinic = practice.organization('aud-clinic', {}, '12-3456789');
const seen = Array.from({ length: 25 }, (_, i) => practice.patient(`aud-p-${i + 1}`, i === 0 ? { name: [{ given: ['Ines'], family: 'Castillo' }] } : {}));
practice.visits('aud-visit', seen, ep, '2014-02-10T15:00:00Z');
// Patient 1 wrote to the EP and viewed her record online in the period.
const firstMessage = practice.message({ id: 'aud-msg-1', patient: seen[0], from: seen[0], to: [ep], sent: '2014-02-12T09:00:00Z' });
withText(firstMessage, FIRST_MESSAGE_TEXT);
practice.portalEvent('aud-view-1', 'view', seen[0], seen[0], '2014-02-13T19:00:00Z');

function withText(reference: string, text: string): void {
  const message = practice.resources.find((r) => `${r.resourceType}/${r.id}` === reference) as { payload?: { contentString: string }[] };
  message.payload = [{ contentString: text }];
}

beforeAll(async () => {
  server = await startTestServer();
  await practice.load(server);
  const auditor = await server.request
    .post('/fhir/Practitioner')
    .set('content-type', 'application/fhir+json')
    .send(JSON.stringify({ resourceType: 'Practitioner', name: [{ given: ['Ada'], family: 'Auditor' }] }));
  expect(auditor.status).toBe(201);
  auditorRef = `Practitioner/${auditor.body.id}`;
  await createUser(server, { username: 'auditor', password: PASSWORD, fhirUser: auditorRef, roles: ['auditor'] });
  browser = await launchBrowser();
  context = await browser.newContext({ acceptDownloads: true });
  page = await context.newPage();
  errors = collectPageErrors(page);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop({ dropDatabase: true });
});

/** The shown cells of one measure's row. */
async function row(measure: string) {
  const cells = page.locator(`#measures-table tr[data-measure="${measure}"]`);
  const text = async (cls: string) => (await cells.locator(`td.${cls}`).textContent())?.trim();
  return { numerator: await text('numerator'), denominator: await text('denominator'), percentage: await text('percentage'), threshold: await text('threshold'), met: await text('met') };
}

async function runReport(): Promise<void> {
  await page.getByRole('button', { name: 'Run report' }).click();
  await page.locator('#measures-table').waitFor();
}

async function expectNoMessageText(): Promise<void> {
  const content = await page.content();
  expect(content).not.toContain(FIRST_MESSAGE_TEXT);
  expect(content).not.toContain(LATER_MESSAGE_TEXT);
}

describe('the auditor dashboard', () => {
  it('signs the auditor in through the login and consent pages', async () => {
    await page.goto(`${server.baseUrl}/auditor/`);
    await page.getByRole('heading', { name: 'Engagement reports and the audit trail' }).waitFor();
    expect(await seriousAccessibilityViolations(page)).toEqual([]);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#username').waitFor();
    await page.fill('#username', 'auditor');
    await page.fill('#password', PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(`${server.baseUrl}/auditor/**`);
    await page.getByRole('button', { name: 'Run report' }).waitFor();
    expect(await page.locator('header .who').textContent()).toBe('Ada Auditor');
  });

  it('runs the 2014 attestation of the EP as a table and a chart against the thresholds', async () => {
    // Narrow the EP list by name, then pick the EP.
    await page.locator('#ep option[value="Practitioner/aud-other"]').waitFor({ state: 'attached' });
    await page.fill('#ep-filter', 'okaf');
    await page.press('#ep-filter', 'Enter');
    await page.locator('#ep option[value="Practitioner/aud-other"]').waitFor({ state: 'detached' });
    expect(await page.locator('#ep option').allTextContents()).toEqual(['Okafor (NPI 1234567893)']);
    expect(await page.locator('#results').textContent()).toBe('');
    await page.selectOption('#ep', ep);
    await page.selectOption('#practice', clinic);
    await page.selectOption('#year', '2014');
    await page.fill('#period-start', PERIOD.start);
    await page.fill('#period-end', PERIOD.end);
    await runReport();

    // Every 2014 EP measure has a row.
    const measures = await page.locator('#measures-table tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-measure')));
    expect(measures.sort()).toEqual(['clinical-summary-2014', 'education-2014', 'reminders-2014', 'secure-messaging-2014', 'vdt-access-2014', 'vdt-use-2014']);
    expect(await page.locator('#results h2').textContent()).toContain('Okafor');
    expect(await page.locator('tr[data-measure="secure-messaging-2014"] th').textContent()).toBe('Secure electronic messagingsecure-messaging-2014');
    expect(await page.locator('#results').textContent()).toContain('NPI 1234567893');

    // 2014 secure messaging: patients seen who sent the EP a message — 1 of 25 = 4.00%, not more than 5%.
    expect(await row('secure-messaging-2014')).toEqual({ numerator: '1', denominator: '25', percentage: '4.00%', threshold: 'more than 5%', met: 'not met' });
    // 2014 VDT use: patients seen who viewed, downloaded or transmitted — 1 of 25 = 4.00%, not met.
    expect(await row('vdt-use-2014')).toEqual({ numerator: '1', denominator: '25', percentage: '4.00%', threshold: 'more than 5%', met: 'not met' });

    // The chart: one bar per measure; bars start at x=12 and are 400 units wide at 100%, so 4% is 16; the threshold mark sits at 5% (12 + 20).
    const chart = page.locator('svg.attestation-chart');
    expect(await chart.locator('g.bar-row').count()).toBe(6);
    const bar = chart.locator('g[data-measure="secure-messaging-2014"]');
    expect(await bar.locator('rect.bar').getAttribute('width')).toBe('16.0');
    expect(await bar.getAttribute('class')).toContain('is-not-met');
    expect(await bar.locator('line.threshold').getAttribute('x1')).toBe('32');
    await expectNoMessageText();
  });

  it('shows the messaging and VDT counts change after patients write and view their record', async () => {
    const later = new PracticeBuilder();
    // Patient 2 writes to the EP: she joins the secure-messaging numerator.
    const message = later.message({ id: 'aud-msg-2', patient: seen[1], from: seen[1], to: [ep], sent: '2014-03-03T10:00:00Z' });
    (later.resources.find((r) => `${r.resourceType}/${r.id}` === message) as { payload?: unknown }).payload = [{ contentString: LATER_MESSAGE_TEXT }];
    // Patient 3 views her record: she joins the VDT numerator. Patient 1 downloads hers: she is already counted.
    later.portalEvent('aud-view-3', 'view', seen[2], seen[2], '2014-03-04T18:00:00Z');
    later.portalEvent('aud-download-1', 'download', seen[0], seen[0], '2014-03-05T18:00:00Z');
    await later.load(server);

    await runReport();
    // 2 of 25 = 8.00% > 5%: both measures are now met.
    expect(await row('secure-messaging-2014')).toEqual({ numerator: '2', denominator: '25', percentage: '8.00%', threshold: 'more than 5%', met: 'met' });
    expect(await row('vdt-use-2014')).toEqual({ numerator: '2', denominator: '25', percentage: '8.00%', threshold: 'more than 5%', met: 'met' });
    const bar = page.locator('svg.attestation-chart g[data-measure="vdt-use-2014"]');
    expect(await bar.locator('rect.bar').getAttribute('width')).toBe('32.0');
    expect(await bar.getAttribute('class')).toContain('is-met');

    await screenshot(page, 'auditor-report');
    expect(await seriousAccessibilityViolations(page)).toEqual([]);
    await expectNoMessageText();

    // At phone width the page does not scroll sideways (the table and chart scroll in place).
    await page.setViewportSize(PHONE);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await screenshot(page, 'auditor-report-phone');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('drills down into the patients behind the secure-messaging counts', async () => {
    await page.getByRole('button', { name: 'Show patients of Secure electronic messaging' }).click();
    const numerator = page.locator('#drill-numerator');
    await numerator.waitFor();
    expect(await numerator.locator('h4').textContent()).toBe('Numerator (2)');
    const items = await numerator.locator('li').allTextContents();
    expect(items).toEqual(expect.arrayContaining(['Ines Castillo Patient/aud-p-1', 'aud-p-2 Patient/aud-p-2']));
    expect(items).toHaveLength(2);
    expect(await page.locator('#drill-missing h4').textContent()).toBe('Denominator, not in the numerator (23)');
    await expectNoMessageText();
  });

  it('downloads the attestation as CSV, one row per measure', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    expect(download.suggestedFilename()).toBe('attestation-aud-ep-2014-2014-01-01.csv');
    const csv = fs.readFileSync((await download.path())!, 'utf8').trim().split(/\r?\n/);
    expect(csv[0]).toBe('measure,program_year,name,npi,period_start,period_end,numerator,denominator,percentage,threshold,met,exclusion');
    expect(csv).toHaveLength(7);
    expect(csv.find((line) => line.startsWith('secure-messaging-2014,'))).toMatch(/^secure-messaging-2014,2014,Okafor,1234567893,2014-01-01,2014-03-31,2,25,8\.00,more than 5%,yes,$/);
    expect(csv.find((line) => line.startsWith('vdt-use-2014,'))).toMatch(/^vdt-use-2014,2014,Okafor,1234567893,2014-01-01,2014-03-31,2,25,8\.00,more than 5%,yes,$/);
    expect(csv.join('\n')).not.toContain(LATER_MESSAGE_TEXT);
  });

  it('downloads the signed report; its signature verifies, a tampered copy does not', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download signed report' }).click()]);
    const signedPath = (await download.path())!;
    const signed = JSON.parse(fs.readFileSync(signedPath, 'utf8'));
    expect(signed.resourceType).toBe('Bundle');
    expect(signed.entry).toHaveLength(6);

    await page.setInputFiles('#verify-file', { name: 'signed.json', mimeType: 'application/json', buffer: fs.readFileSync(signedPath) });
    await page.getByRole('button', { name: 'Verify signature' }).click();
    await page.locator('#verify-verdict').waitFor();
    expect(await page.locator('#verify-verdict').textContent()).toBe('valid');
    expect(await page.locator('#verify-result').textContent()).toMatch(/All 6 report\(s\) carry CareThread's signature and are unchanged \(key [\w-]+\)/);

    // Raise one report's numerator after signing.
    const tampered = structuredClone(signed);
    const report = tampered.entry.find((e: { resource: { measure: string } }) => e.resource.measure.endsWith('/secure-messaging-2014')).resource;
    report.group[0].population.find((p: { code: { coding: { code: string }[] } }) => p.code.coding[0].code === 'numerator').count = 20;
    await page.setInputFiles('#verify-file', { name: 'tampered.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(tampered)) });
    await page.getByRole('button', { name: 'Verify signature' }).click();
    await page.locator('#verify-verdict').waitFor();
    expect(await page.locator('#verify-verdict').textContent()).toBe('not valid');
    expect(await page.locator('#verify-result').textContent()).toContain('1 of 6 report(s) failed the check');
    expect(await page.locator('#verify-result li', { hasText: 'secure-messaging-2014' }).textContent()).toContain('not valid');
  });

  it('runs a hospital attestation with the hospital measures', async () => {
    await page.selectOption('#report-kind', 'hospital');
    await page.selectOption('#hospital', clinic);
    await runReport();
    const measures = await page.locator('#measures-table tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-measure')));
    expect(measures.sort()).toEqual(['education-eh-2014', 'vdt-access-eh-2014', 'vdt-use-eh-2014']);
    // The clinic discharged nobody: every denominator is 0.
    expect(await row('vdt-use-eh-2014')).toMatchObject({ numerator: '0', denominator: '0', percentage: '–' });
  });

  it('lists the audit trail, searchable by patient and event, with the chain status', async () => {
    await page.getByRole('button', { name: 'Audit trail' }).click();
    await page.locator('#chain-status').waitFor();
    expect(await page.locator('#chain-status').textContent()).toMatch(/^Chain intact — \d+ events checked/);
    await page.locator('#audit-table').waitFor();
    // Newest first, 20 to a page; the next page (the Bundle's next link) holds older ones.
    const ids = () => page.locator('#audit-table tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));
    const firstPage = await ids();
    expect(firstPage).toHaveLength(20);
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.locator('#audit-table').waitFor();
    const secondPage = await ids();
    expect(secondPage.length).toBeGreaterThan(0);
    expect(secondPage.filter((id) => firstPage.includes(id))).toEqual([]);

    // Patient 3's portal view, found by patient and event.
    await page.fill('#audit-patient', seen[2]);
    await page.selectOption('#audit-event', 'view');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('#audit-table').waitFor();
    const rows = page.locator('#audit-table tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.locator('td.user').textContent()).toBe(seen[2]);
    expect(await rows.locator('td.event').textContent()).toBe('view');
    expect(await rows.locator('td.action').textContent()).toBe('Read');

    // Everything about patient 1, sorted by action: reads (her view and download) before updates (the loads' PUTs).
    await page.fill('#audit-patient', seen[0]);
    await page.selectOption('#audit-event', '');
    await page.selectOption('#audit-sort', 'action,-date');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('#audit-table').waitFor();
    const actions = await page.locator('#audit-table td.action').allTextContents();
    expect(actions.length).toBeGreaterThan(1);
    expect(actions).toEqual([...actions].sort());
    expect(await page.locator('#audit-table td.event').allTextContents()).toEqual(expect.arrayContaining(['view', 'download']));
    await screenshot(page, 'auditor-audit-trail');

    // The auditor's own report runs are in the trail too.
    await page.fill('#audit-patient', '');
    await page.fill('#audit-user', auditorRef);
    await page.selectOption('#audit-event', 'operation');
    await page.selectOption('#audit-sort', '-date');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('#audit-table').waitFor();
    // The user, and the dashboard as the client they used.
    expect(await page.locator('#audit-table td.user').first().textContent()).toBe(`${auditorRef}carethread-auditor`);
    // The attestation runs (on Measure) and the drill-down (one measure).
    expect(await page.locator('#audit-table td.what').allTextContents()).toEqual(expect.arrayContaining(['Measure', 'Measure/secure-messaging-2014']));
    await page.fill('#audit-user', '');
    await page.selectOption('#audit-event', '');

    // Sorted by user: the users who are references (patients, practitioners) come in order.
    await page.fill('#audit-patient', '');
    await page.selectOption('#audit-sort', 'agent,-date');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('#audit-table').waitFor();
    const users = (await page.locator('#audit-table td.user').evaluateAll((cells) => cells.map((c) => c.firstChild?.textContent ?? ''))).filter((u) => u.includes('/'));
    expect(users.length).toBeGreaterThan(0);
    expect(users).toEqual([...users].sort());

    expect(await seriousAccessibilityViolations(page)).toEqual([]);
    await expectNoMessageText();
    await page.setViewportSize(PHONE);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
  });

  it('raised no errors in the page', () => {
    expect(errors).toEqual([]);
  });
});
