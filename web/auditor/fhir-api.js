// Small helpers over the fhirclient client for the auditor dashboard: following a search's
// next links, naming patients from their references, readable errors, file downloads.
import { displayName } from '/web/dom.js';

/** Every resource of a search, following `next` links (at most `maxPages` pages). */
export async function searchAll(client, url, maxPages = 10) {
  const resources = [];
  let next = url;
  for (let page = 0; next && page < maxPages; page++) {
    const bundle = await client.request(next);
    resources.push(...(bundle.entry ?? []).map((e) => e.resource).filter(Boolean));
    next = bundle.link?.find((l) => l.relation === 'next')?.url;
  }
  return resources;
}

/** Map of `Patient/<id>` → display name, read in batches of ids (ids only in the URL). */
export async function patientNames(client, references) {
  const ids = [...new Set(references.filter((r) => r.startsWith('Patient/')).map((r) => r.slice('Patient/'.length)))];
  const names = new Map();
  for (let i = 0; i < ids.length; i += 50) {
    const batch = ids.slice(i, i + 50);
    const patients = await searchAll(client, `Patient?_id=${batch.map(encodeURIComponent).join(',')}&_count=50`);
    for (const patient of patients) {
      names.set(`Patient/${patient.id}`, displayName(patient));
    }
  }
  return names;
}

/** The server's OperationOutcome diagnostics when there is one, else the error message. */
export function errorText(err) {
  const outcome = err?.response?.body ?? err?.body;
  const issue = outcome?.issue?.[0];
  return issue?.diagnostics ?? issue?.details?.text ?? err?.message ?? String(err);
}

/** Saves text as a file through a blob URL and an <a download>. */
export function downloadFile(text, filename, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
