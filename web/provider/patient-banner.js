// The patient banner: who the EHR launched the app for (name, birth date, gender, MRN), shown
// when the token response says `need_patient_banner` (the EHR does not already show it).
import { formatDate, h, render } from '/web/dom.js';
import { displayName } from './api.js';

const MRN_TYPE = 'http://terminology.hl7.org/CodeSystem/v2-0203';

function mrnOf(patient) {
  const identifiers = patient.identifier ?? [];
  const mrn = identifiers.find((i) => (i.type?.coding ?? []).some((c) => c.system === MRN_TYPE && c.code === 'MR')) ?? identifiers.find((i) => i.use === 'usual');
  return mrn?.value;
}

export function showPatientBanner(target, patient) {
  const field = (label, value) => (value ? h('span', {}, h('span', { class: 'muted' }, `${label}: `), h('strong', {}, value)) : null);
  render(
    target,
    h(
      'section',
      { class: 'banner patient-banner', 'aria-label': 'Patient' },
      h('strong', { class: 'patient-name' }, displayName(patient)),
      field('Born', patient.birthDate ? formatDate(`${patient.birthDate}T12:00:00`) : undefined),
      field('Gender', patient.gender),
      field('MRN', mrnOf(patient))
    )
  );
}
