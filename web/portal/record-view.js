// My health record: a readable summary of what CareThread holds for the patient (opening it
// is a "view"), downloads of the PDF and the FHIR JSON Bundle (a "download"), and sending
// the record to another provider's e-mail or Direct address (a "transmit").
import { displayName, formatDate, formatDateTime, h, render } from '/web/dom.js';
import { categoryOf, errorText, hasTag } from './api.js';
import { flash } from './flash.js';

export async function showRecord({ api }, target) {
  const bundle = await api.healthRecord();
  const resources = (bundle.entry ?? []).map((e) => e.resource).filter(Boolean);
  const of = (type) => resources.filter((r) => r.resourceType === type);
  const patient = of('Patient')[0];
  const encounters = of('Encounter').sort(by((e) => e.period?.start)).reverse();
  const documents = of('DocumentReference').sort(by((d) => d.date)).reverse();
  const appointments = of('Appointment').sort(by((a) => a.start)).reverse();
  const communications = of('Communication');
  const summaries = communications.filter((c) => categoryOf(c) === 'clinical-summary').sort(by((c) => c.sent)).reverse();
  const threads = communications.filter((c) => hasTag(c, 'thread'));
  const inThread = (t) => communications.filter((m) => m.partOf?.[0]?.reference === `Communication/${t.id}`);
  // The record carries the people it names; their names need no further requests.
  for (const r of resources.filter((x) => ['Practitioner', 'RelatedPerson', 'Organization'].includes(x.resourceType))) {
    api.nameBook.remember(`${r.resourceType}/${r.id}`, displayName(r));
  }
  const names = await api.names(encounters.flatMap((e) => (e.participant ?? []).map((p) => p.individual?.reference)));

  render(
    target,
    h('h2', {}, 'My health record'),
    h('p', { class: 'muted' }, `What the practice holds for you in CareThread, as of ${formatDateTime(bundle.timestamp)}.`),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'about-title' },
      h('h3', { id: 'about-title' }, 'About you'),
      h('dl', { class: 'facts' }, fact('Name', displayName(patient)), patient?.birthDate ? fact('Date of birth', formatDate(patient.birthDate)) : null, patient?.gender ? fact('Gender', patient.gender) : null)
    ),
    section('visits', 'Visits', encounters, (e) =>
      h(
        'li',
        {},
        h('strong', {}, formatDate(e.period?.start) || 'Date not recorded'),
        ' - ',
        e.type?.[0]?.text ?? e.type?.[0]?.coding?.[0]?.display ?? visitKind(e),
        (e.participant ?? []).some((p) => p.individual) ? h('div', { class: 'muted' }, `With ${(e.participant ?? []).map((p) => names.get(p.individual?.reference)).filter(Boolean).join(', ')}`) : null
      )
    ),
    section('summaries', 'Clinical summaries and documents', [...summaries, ...documents], (r) =>
      h(
        'li',
        {},
        h('strong', {}, formatDate(r.sent ?? r.date) || 'Date not recorded'),
        ' - ',
        r.resourceType === 'Communication' ? 'Visit summary' : (r.description ?? r.type?.text ?? 'Document'),
        r.resourceType === 'Communication' ? (r.payload ?? []).filter((p) => p.contentString).map((p) => h('p', { class: 'record-text' }, p.contentString)) : null
      )
    ),
    section('appointments', 'Appointments', appointments, (a) =>
      h('li', {}, h('strong', {}, formatDateTime(a.start) || 'Date not set'), ' - ', a.description ?? 'Appointment', h('span', { class: 'muted' }, ` (${a.status})`))
    ),
    section('conversations', 'Messages', threads, (t) =>
      h('li', {}, h('a', { href: `#thread/${t.id}` }, t.topic?.text ?? 'Conversation'), h('span', { class: 'muted' }, ` - ${inThread(t).length} message(s), ${t.status === 'in-progress' ? 'open' : 'closed'}`))
    ),
    downloadCard(api),
    transmitCard(api)
  );
}

function fact(label, value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

function section(id, title, items, item) {
  return h(
    'section',
    { class: 'card', 'aria-labelledby': `${id}-title` },
    h('h3', { id: `${id}-title` }, title),
    items.length ? h('ul', { class: 'list' }, items.map(item)) : h('p', { class: 'muted' }, 'None recorded.')
  );
}

function downloadCard(api) {
  const save = (format) => async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const { blob, filename } = await api.download(format);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      flash(`Downloaded ${filename}`);
    } catch (err) {
      flash(`The download failed: ${errorText(err)}`, 'error');
    } finally {
      button.disabled = false;
    }
  };
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'download-title' },
    h('h3', { id: 'download-title' }, 'Download'),
    h('p', {}, 'Save a copy: a PDF to read or print, or the same record as a FHIR file for another health app.'),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', class: 'primary', id: 'download-pdf', onclick: save('pdf') }, 'Download PDF'),
      h('button', { type: 'button', id: 'download-json', onclick: save('json') }, 'Download FHIR JSON')
    )
  );
}

function transmitCard(api) {
  const address = h('input', { id: 'transmit-to', name: 'to', type: 'email', autocomplete: 'off', required: true, 'aria-describedby': 'transmit-help' });
  const button = h('button', { class: 'primary', type: 'submit' }, 'Send my record');
  const result = h('p', { id: 'transmit-result', role: 'status' });
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'transmit-title' },
    h('h3', { id: 'transmit-title' }, 'Send to another provider'),
    h(
      'form',
      {
        'aria-labelledby': 'transmit-title',
        onsubmit: async (event) => {
          event.preventDefault();
          button.disabled = true;
          try {
            await api.transmit(address.value.trim());
            render(result, 'Your record is on its way. It is sent as a PDF and a FHIR file.');
            address.value = '';
          } catch (err) {
            render(result, `Not sent: ${errorText(err)}`);
          } finally {
            button.disabled = false;
          }
        },
      },
      h('label', { for: 'transmit-to' }, 'E-mail or Direct address'),
      address,
      h('p', { id: 'transmit-help', class: 'muted' }, 'For example records@clinic.example.org. Only send your record to someone you trust: they will be able to read all of it.'),
      h('div', { class: 'actions' }, button),
      result
    )
  );
}

function visitKind(e) {
  return { AMB: 'Office visit', VR: 'Virtual visit', IMP: 'Hospital stay', EMER: 'Emergency visit' }[e.class?.code] ?? 'Visit';
}

function by(key) {
  return (a, b) => String(key(a) ?? '').localeCompare(String(key(b) ?? ''));
}
