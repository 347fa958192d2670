// The Reports view: choose an eligible professional (with the practice whose policies apply)
// or a hospital, a program year and a period; run the whole attestation
// (Measure/$attestation) and see each measure as a table row and a bar against its
// threshold; drill down into the patients behind a measure; download the CSV and the signed
// report; check a signed report's signature. Only counts and patient names are shown.
import { announce, h, render } from '/web/dom.js';
import { attestationChart, cssState } from './chart.js';
import { drillDown } from './drill-down.js';
import { downloadFile, errorText, searchAll } from './fhir-api.js';
import { PROGRAM_YEARS, summarize } from './measure-report.js';
import { verifyCard } from './verify.js';

export function reportsView(client) {
  const kind = h('select', { id: 'report-kind', name: 'kind' }, h('option', { value: 'ep' }, 'Eligible professional (EP)'), h('option', { value: 'hospital' }, 'Hospital'));
  const ep = h('select', { id: 'ep', name: 'ep', required: true });
  const epFilter = h('input', { id: 'ep-filter', type: 'search', autocomplete: 'off', placeholder: 'Part of a name' });
  const practice = h('select', { id: 'practice', name: 'practice' });
  const hospital = h('select', { id: 'hospital', name: 'hospital' });
  const year = h('select', { id: 'year', name: 'year' }, PROGRAM_YEARS.map((y) => h('option', { value: y.value }, y.label)));
  const periodStart = h('input', { id: 'period-start', name: 'periodStart', type: 'date', required: true });
  const periodEnd = h('input', { id: 'period-end', name: 'periodEnd', type: 'date', required: true });
  const epFields = h('div', { class: 'row' }, field('Find an EP by name', epFilter), field('EP', ep), field('Practice (its policies and TIN)', practice));
  // Practices with many practitioners: narrow the EP list by name (a practitioner's name, never a patient's, goes in the query).
  epFilter.addEventListener('change', () => loadPractitioners(client, ep, epFilter.value.trim()));
  epFilter.addEventListener('keydown', (event) => {
    // Enter narrows the list; it does not run the report.
    if (event.key === 'Enter') {
      event.preventDefault();
      loadPractitioners(client, ep, epFilter.value.trim());
    }
  });
  const hospitalFields = h('div', { class: 'row', hidden: true }, field('Hospital', hospital));
  const results = h('section', { id: 'results', 'aria-live': 'polite' });
  const drill = h('section', { id: 'drill-down' });

  kind.addEventListener('change', () => {
    epFields.hidden = kind.value !== 'ep';
    hospitalFields.hidden = kind.value !== 'hospital';
    ep.required = kind.value === 'ep';
  });

  const form = h(
    'form',
    { class: 'card report-form', 'aria-labelledby': 'report-form-title' },
    h('h2', { id: 'report-form-title' }, 'Run an attestation report'),
    h('div', { class: 'row' }, field('Report for', kind), field('Program year', year)),
    epFields,
    hospitalFields,
    h('div', { class: 'row' }, field('Period start', periodStart), field('Period end (included)', periodEnd)),
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Run report'))
  );

  /** The $attestation query for what the form says, as URLSearchParams. */
  const query = () => {
    const params = new URLSearchParams({ year: year.value, periodStart: periodStart.value, periodEnd: periodEnd.value });
    if (kind.value === 'ep') {
      params.set('practitioner', ep.value);
      if (practice.value) {
        params.set('organization', practice.value);
      }
    } else {
      params.set('organization', hospital.value);
    }
    return params;
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const params = query();
    render(drill);
    render(results, h('p', { class: 'muted' }, 'Running the report…'));
    try {
      const bundle = await client.request(`Measure/$attestation?${params}`);
      const reports = (bundle.entry ?? []).map((e) => e.resource);
      render(results, resultsCard(client, params, reports, drill));
    } catch (err) {
      render(results, h('p', { class: 'notice', role: 'alert' }, `The report could not be run: ${errorText(err)}`));
    }
  });

  loadChoices(client, ep, practice, hospital);
  return h('div', {}, form, results, drill, verifyCard(client));
}

function field(label, control) {
  return h('div', {}, h('label', { for: control.id }, label), control);
}

async function loadPractitioners(client, ep, name = '') {
  try {
    const practitioners = await searchAll(client, `Practitioner?_count=100&_sort=family${name ? `&name=${encodeURIComponent(name)}` : ''}`);
    render(ep, practitioners.length ? practitioners.map((p) => h('option', { value: `Practitioner/${p.id}` }, practitionerLabel(p))) : h('option', { value: '' }, 'No practitioner matches'));
  } catch (err) {
    announce(`Could not list practitioners: ${errorText(err)}`, 'error');
  }
}

async function loadChoices(client, ep, practice, hospital) {
  loadPractitioners(client, ep);
  try {
    const organizations = await searchAll(client, 'Organization?_count=100&_sort=name');
    const orgOptions = () => organizations.map((o) => h('option', { value: `Organization/${o.id}` }, o.name ?? o.id));
    render(practice, h('option', { value: '' }, 'None (default policies)'), orgOptions());
    render(hospital, orgOptions());
  } catch (err) {
    announce(`Could not list organizations: ${errorText(err)}`, 'error');
  }
}

function practitionerLabel(practitioner) {
  const name = practitioner.name?.[0];
  const text = name?.text ?? [...(name?.given ?? []), name?.family].filter(Boolean).join(' ');
  const npi = practitioner.identifier?.find((i) => i.system === 'http://hl7.org/fhir/sid/us-npi')?.value;
  return `${text || practitioner.id}${npi ? ` (NPI ${npi})` : ''}`;
}

function resultsCard(client, params, reports, drill) {
  const rows = reports.map(summarize);
  const first = rows[0] ?? {};
  const period = `${params.get('periodStart')} to ${params.get('periodEnd')}`;
  const base = `attestation-${(params.get('practitioner') ?? params.get('organization')).split('/')[1]}-${params.get('year')}-${params.get('periodStart')}`;

  // Progress and failures of the downloads are said next to their buttons.
  const downloadStatus = h('p', { class: 'muted download-status', role: 'status' });
  const downloadCsv = async () => {
    try {
      const csv = await client.request({ url: `Measure/$attestation?${params}&_format=csv`, headers: { accept: 'text/csv' } });
      downloadFile(csv, `${base}.csv`, 'text/csv');
      downloadStatus.textContent = `Downloaded ${base}.csv`;
    } catch (err) {
      downloadStatus.textContent = `CSV download failed: ${errorText(err)}`;
    }
  };
  const downloadSigned = async () => {
    try {
      const signed = await client.request(`Measure/$attestation?${params}&sign=true`);
      downloadFile(JSON.stringify(signed, null, 2), `${base}-signed.json`, 'application/fhir+json');
      downloadStatus.textContent = `Downloaded ${base}-signed.json: each of its reports is signed`;
    } catch (err) {
      downloadStatus.textContent = `Signed report download failed: ${errorText(err)}`;
    }
  };

  const table = h(
    'table',
    { id: 'measures-table' },
    h('caption', { class: 'visually-hidden' }, 'Measures of the report'),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Measure', 'Numerator', 'Denominator', 'Percentage', 'Threshold', 'Result', 'Exclusion', 'Patients'].map((label) => h('th', { scope: 'col' }, label))
      )
    ),
    h(
      'tbody',
      {},
      rows.map((row) =>
        h(
          'tr',
          { 'data-measure': row.id },
          h('th', { scope: 'row' }, row.title, h('div', { class: 'muted measure-id' }, row.id)),
          h('td', { class: 'numerator' }, String(row.numerator)),
          h('td', { class: 'denominator' }, String(row.denominator)),
          h('td', { class: 'percentage' }, row.percentage || '–'),
          h('td', { class: 'threshold' }, row.threshold),
          h('td', { class: 'met' }, h('span', { class: `result ${cssState(row.met)}` }, row.met)),
          h('td', { class: 'exclusion' }, row.exclusion),
          h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => drillDown(client, params, row, drill) }, 'Show', h('span', { class: 'visually-hidden' }, ` patients of ${row.title}`)))
        )
      )
    )
  );

  return h(
    'div',
    { class: 'card' },
    h('h2', {}, `${first.subjectName || params.get('practitioner') || params.get('organization')}: program year ${params.get('year')}`),
    h(
      'p',
      { class: 'muted' },
      [`Period ${period}`, first.npi && `NPI ${first.npi}`, first.tin && `TIN ${first.tin}`].filter(Boolean).join(' · ')
    ),
    h('div', { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Measures (scrolls sideways)' }, table),
    h('h3', {}, 'Against the thresholds'),
    h('div', { class: 'chart-scroll' }, attestationChart(rows)),
    h('p', { class: 'legend muted' }, h('span', { class: 'swatch is-met' }), ' met ', h('span', { class: 'swatch is-not-met' }), ' not met ', h('span', { class: 'swatch threshold-mark' }), ' threshold'),
    first.policies?.length ? h('details', {}, h('summary', {}, 'Policies used'), h('ul', {}, first.policies.map((p) => h('li', {}, p)))) : null,
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', id: 'download-csv', onclick: downloadCsv }, 'Download CSV'),
      h('button', { type: 'button', id: 'download-signed', onclick: downloadSigned }, 'Download signed report')
    ),
    downloadStatus
  );
}
