// Drill-down into one measure: `$evaluate-measure` with reportType=subject-list returns the
// patients (visits, for clinical summaries) of the initial population and the numerator as
// contained Lists; they are shown by name and id, with who is missing from the numerator.
import { announce, h, render } from '/web/dom.js';
import { errorText, patientNames } from './fhir-api.js';
import { subjectList } from './measure-report.js';

export async function drillDown(client, attestationParams, row, target) {
  const params = new URLSearchParams({ periodStart: attestationParams.get('periodStart'), periodEnd: attestationParams.get('periodEnd'), reportType: 'subject-list' });
  for (const name of ['practitioner', 'organization']) {
    if (attestationParams.get(name)) {
      params.set(name, attestationParams.get(name));
    }
  }
  render(target, h('div', { class: 'card' }, h('p', { class: 'muted' }, `Loading the patients of ${row.title}…`)));
  try {
    const report = await client.request(`Measure/${encodeURIComponent(row.id)}/$evaluate-measure?${params}`);
    const denominator = subjectList(report, 'initial-population');
    const numerator = subjectList(report, 'numerator');
    const inNumerator = new Set(numerator);
    const missing = denominator.filter((r) => !inNumerator.has(r));
    const names = await patientNames(client, denominator);
    const unit = row.id.startsWith('clinical-summary') ? 'visits' : 'patients';
    const list = (title, refs, id) =>
      h(
        'div',
        { class: 'population', id },
        h('h4', {}, `${title} (${refs.length})`),
        refs.length
          ? h(
              'ul',
              { class: 'subjects' },
              refs.map((ref) => h('li', {}, names.get(ref) ?? ref, names.has(ref) ? h('span', { class: 'muted' }, ` ${ref}`) : null))
            )
          : h('p', { class: 'muted' }, 'None')
      );
    render(
      target,
      h(
        'div',
        { class: 'card', 'aria-labelledby': 'drill-title' },
        h('h3', { id: 'drill-title', tabindex: '-1' }, `${row.title}: the ${unit} behind the counts`),
        h('div', { class: 'populations' }, list('Numerator', numerator, 'drill-numerator'), list('Denominator, not in the numerator', missing, 'drill-missing'))
      )
    );
    target.querySelector('#drill-title').focus();
  } catch (err) {
    render(target);
    announce(`The patient lists could not be loaded: ${errorText(err)}`, 'error');
  }
}
