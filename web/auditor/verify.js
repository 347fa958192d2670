// Checking a signed report: the auditor uploads a downloaded report (a MeasureReport, or the
// attestation's Bundle of them: the Bundle itself is not signed, each report in it is) and
// the server's MeasureReport/$verify says, per report, whether the signature is CareThread's
// and the report unchanged, with the key id or the reason.
import { h, render } from '/web/dom.js';
import { errorText } from './fhir-api.js';
import { measureId } from './measure-report.js';

export function verifyCard(client) {
  const file = h('input', { id: 'verify-file', type: 'file', accept: '.json,application/json,application/fhir+json', required: true });
  const result = h('div', { id: 'verify-result', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'verify-title' },
    h('h2', { id: 'verify-title' }, 'Check a signed report'),
    h('p', { class: 'muted' }, 'Upload a signed report downloaded from CareThread (one report or a whole attestation).'),
    h('label', { for: 'verify-file' }, 'Signed report (JSON)'),
    file,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Verify signature')),
    result
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen) {
      return;
    }
    render(result, h('p', { class: 'muted' }, 'Checking…'));
    render(result, await verifyFile(client, chosen));
  });
  return form;
}

async function verifyFile(client, chosen) {
  let reports;
  try {
    const parsed = JSON.parse(await chosen.text());
    reports = parsed.resourceType === 'Bundle' ? (parsed.entry ?? []).map((e) => e.resource).filter((r) => r?.resourceType === 'MeasureReport') : [parsed];
  } catch {
    return outcome(false, 'The file is not JSON.', []);
  }
  if (!reports.length || reports.some((r) => r?.resourceType !== 'MeasureReport')) {
    return outcome(false, 'The file holds no MeasureReport.', []);
  }
  const checks = [];
  for (const report of reports) {
    try {
      const answer = await client.request({
        url: 'MeasureReport/$verify',
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify(report),
      });
      const get = (name) => answer.parameter?.find((p) => p.name === name);
      checks.push({ measure: measureId(report), valid: get('valid')?.valueBoolean === true, kid: get('kid')?.valueString, reason: get('reason')?.valueString });
    } catch (err) {
      checks.push({ measure: measureId(report), valid: false, reason: errorText(err) });
    }
  }
  const valid = checks.every((c) => c.valid);
  const keys = [...new Set(checks.map((c) => c.kid).filter(Boolean))];
  const summary = valid
    ? `All ${checks.length} report(s) carry CareThread's signature and are unchanged${keys.length ? ` (key ${keys.join(', ')})` : ''}.`
    : `${checks.filter((c) => !c.valid).length} of ${checks.length} report(s) failed the check.`;
  return outcome(valid, summary, checks);
}

function outcome(valid, summary, checks) {
  return h(
    'div',
    { class: `verify-outcome ${valid ? 'is-valid' : 'is-invalid'}`, role: 'status' },
    h('p', { class: 'verdict' }, h('strong', { id: 'verify-verdict' }, valid ? 'valid' : 'not valid'), ` — ${summary}`),
    checks.length
      ? h(
          'ul',
          { class: 'checks' },
          checks.map((c) => h('li', {}, `${c.measure}: ${c.valid ? 'valid' : 'not valid'}`, c.kid ? ` (key ${c.kid})` : '', c.reason ? ` — ${c.reason}` : ''))
        )
      : null
  );
}
