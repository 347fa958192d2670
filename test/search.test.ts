/**
 * FHIR search through the HTTP API, over a small dataset whose every expected result is
 * known: each parameter kind (string, token, reference, date), the modifiers and prefixes,
 * chains, sorting, includes, totals, POST `_search`, and the 400s for bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const CATEGORY = 'http://carethread.example/CodeSystem/message-category';
const ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';

let server: TestServer;
/** An instant after the dataset was written and before `pat-doe` was updated. */
let betweenWrites: string;

beforeAll(async () => {
  server = await startTestServer();
  await putAll(dataset(server.fhirBase));
  await sleep(15);
  betweenWrites = new Date().toISOString();
  await sleep(15);
  await putAll([patient('pat-doe', { name: [{ family: 'Doe', given: ['Jane'] }], telecom: [{ system: 'phone', value: '555-0100' }] })]);
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

// ---- the dataset ------------------------------------------------------------------------

function patient(id: string, fields: Record<string, unknown>) {
  return { resourceType: 'Patient', id, ...fields };
}

function dataset(fhirBase: string): Record<string, unknown>[] {
  const medicalQuestion = [{ coding: [{ system: CATEGORY, code: 'medical-question' }] }];
  const renewal = { coding: [{ system: CATEGORY, code: 'prescription-renewal' }] };
  const message = (id: string, fields: Record<string, unknown>) => ({
    resourceType: 'Communication',
    id,
    status: 'completed',
    payload: [{ contentString: `text of ${id}` }],
    ...fields,
  });
  return [
    patient('pat-muller', {
      name: [{ family: 'Müller', given: ['Ann'] }],
      gender: 'female',
      birthDate: '1980-05-01',
      identifier: [{ system: 'urn:mrn', value: 'M-1' }],
    }),
    patient('pat-mueller', {
      name: [{ family: 'Mueller', given: ['Bob'] }],
      gender: 'male',
      birthDate: '1975-12-31',
      identifier: [
        { system: 'urn:mrn', value: 'M-2' },
        { system: 'urn:ssn', value: '111' },
      ],
    }),
    // Year precision: the birth date is the whole of 1990.
    patient('pat-angstrom', {
      name: [{ family: 'Ångström', given: ['Zoë'] }],
      gender: 'female',
      birthDate: '1990',
      identifier: [{ value: 'NOSYS-1' }],
    }),
    // Same identifier value as pat-muller, another system.
    patient('pat-smith', {
      name: [{ family: 'Smith', given: ['Annabel'] }],
      gender: 'other',
      birthDate: '1980-05-02',
      identifier: [{ system: 'urn:other', value: 'M-1' }],
    }),
    patient('pat-doe', { name: [{ family: 'Doe', given: ['Jane'] }] }),
    { resourceType: 'Practitioner', id: 'pr-house', name: [{ family: 'House', given: ['Gregory'] }], identifier: [{ system: 'urn:npi', value: '111' }] },
    { resourceType: 'Practitioner', id: 'pr-wilson', name: [{ family: 'Wilson', given: ['James'] }] },
    {
      resourceType: 'Encounter',
      id: 'enc-1',
      status: 'finished',
      class: { system: ACT_CODE, code: 'AMB' },
      subject: { reference: 'Patient/pat-muller' },
      period: { start: '2024-03-05T09:00:00Z', end: '2024-03-05T10:00:00Z' },
    },
    {
      resourceType: 'Encounter',
      id: 'enc-2',
      status: 'finished',
      class: { system: ACT_CODE, code: 'VR' },
      subject: { reference: 'Patient/pat-mueller' },
      period: { start: '2024-03-01T00:00:00Z', end: '2024-03-10T00:00:00Z' },
    },
    // Still open: the period has no end.
    {
      resourceType: 'Encounter',
      id: 'enc-3',
      status: 'in-progress',
      class: { system: ACT_CODE, code: 'AMB' },
      subject: { reference: 'Patient/pat-smith' },
      period: { start: '2024-04-01T12:00:00Z' },
    },
    {
      resourceType: 'Encounter',
      id: 'enc-4',
      status: 'finished',
      class: { system: ACT_CODE, code: 'IMP' },
      subject: { reference: 'Patient/pat-muller' },
      period: { start: '2023-12-31T22:00:00Z', end: '2024-01-01T02:00:00Z' },
    },
    // Thread 1: a header and three messages about pat-muller.
    {
      resourceType: 'Communication',
      id: 'th-1',
      status: 'in-progress',
      category: medicalQuestion,
      subject: { reference: 'Patient/pat-muller' },
      recipient: [{ reference: 'Practitioner/pr-house' }],
      topic: { text: 'Knee pain' },
    },
    message('msg-1', {
      partOf: [{ reference: 'Communication/th-1' }],
      category: medicalQuestion,
      subject: { reference: 'Patient/pat-muller' },
      sender: { reference: 'Patient/pat-muller' },
      recipient: [{ reference: 'Practitioner/pr-house' }],
      sent: '2024-03-05T10:15:00Z',
    }),
    message('msg-2', {
      partOf: [{ reference: 'Communication/th-1' }],
      inResponseTo: [{ reference: 'Communication/msg-1' }],
      category: medicalQuestion,
      subject: { reference: 'Patient/pat-muller' },
      sender: { reference: 'Practitioner/pr-house' },
      recipient: [{ reference: 'Patient/pat-muller' }],
      sent: '2024-03-05T14:30:00+02:00', // 12:30 UTC
    }),
    message('msg-3', {
      partOf: [{ reference: 'Communication/th-1' }],
      inResponseTo: [{ reference: 'Communication/msg-2' }],
      category: medicalQuestion,
      subject: { reference: 'Patient/pat-muller' },
      sender: { reference: 'Patient/pat-muller' },
      recipient: [{ reference: 'Practitioner/pr-house' }, { reference: 'Practitioner/pr-wilson' }],
      sent: '2024-03-06T08:00:00Z',
    }),
    // Thread 2: two categories, one without a system.
    {
      resourceType: 'Communication',
      id: 'th-2',
      status: 'in-progress',
      category: [renewal, { coding: [{ code: 'urgent' }] }],
      subject: { reference: 'Patient/pat-smith' },
      recipient: [{ reference: 'Practitioner/pr-wilson' }],
    },
    message('msg-4', {
      partOf: [{ reference: 'Communication/th-2' }],
      category: [renewal],
      subject: { reference: 'Patient/pat-smith' },
      sender: { reference: 'Patient/pat-smith' },
      recipient: [{ reference: 'Practitioner/pr-wilson' }],
      sent: '2024-04-01', // day precision
    }),
    // A message outside any thread, addressed by this server's absolute URL.
    message('msg-5', {
      category: [{ coding: [{ system: CATEGORY, code: 'billing' }] }],
      subject: { reference: 'Patient/pat-mueller' },
      recipient: [{ reference: `${fhirBase}/Practitioner/pr-house` }],
      sent: '2023-12-31T23:59:59Z',
    }),
    {
      resourceType: 'Provenance',
      id: 'prov-1',
      target: [{ reference: 'Communication/msg-1' }],
      recorded: '2024-03-05T10:15:00Z',
      agent: [{ who: { reference: 'Patient/pat-muller' } }],
    },
    {
      resourceType: 'Provenance',
      id: 'prov-4',
      target: [{ reference: 'Communication/msg-4' }],
      recorded: '2024-04-01T00:00:00Z',
      agent: [{ who: { reference: 'Patient/pat-smith' } }],
    },
  ];
}

async function putAll(resources: Record<string, unknown>[]): Promise<void> {
  const res = await server.request
    .post('/fhir')
    .set('content-type', 'application/fhir+json')
    .send({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: resources.map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } })),
    });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- helpers ----------------------------------------------------------------------------

interface Entry {
  fullUrl: string;
  resource: { resourceType: string; id: string };
  search: { mode: string };
}

async function search(path: string) {
  const res = await server.request.get(`/fhir/${path}`);
  expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(200);
  expect(res.body.resourceType).toBe('Bundle');
  expect(res.body.type).toBe('searchset');
  return res.body as { total?: number; link: { relation: string; url: string }[]; entry?: Entry[] };
}

/** Ids of the matches, in the order the server returned them. */
async function matchIds(path: string): Promise<string[]> {
  const bundle = await search(path);
  return (bundle.entry ?? []).filter((e) => e.search.mode === 'match').map((e) => e.resource.id);
}

/** Ids of the matches as a sorted set, for searches whose order is not the point. */
async function found(path: string): Promise<string[]> {
  return (await matchIds(path)).sort();
}

function sorted(...ids: string[]): string[] {
  return [...ids].sort();
}

async function expectBadRequest(path: string): Promise<void> {
  const res = await server.request.get(`/fhir/${path}`);
  expect(res.status, path).toBe(400);
  expect(res.body.resourceType).toBe('OperationOutcome');
  expect(res.body.issue[0].severity).toBe('error');
}

// ---- strings ----------------------------------------------------------------------------

describe('string parameters', () => {
  it('match the start of any name part, ignoring case and accents', async () => {
    expect(await found('Patient?name=muller')).toEqual(['pat-muller']);
    expect(await found('Patient?name=MÜL')).toEqual(['pat-muller']);
    expect(await found('Patient?family=mu')).toEqual(sorted('pat-muller', 'pat-mueller'));
    expect(await found('Patient?name=ann')).toEqual(sorted('pat-muller', 'pat-smith'));
    expect(await found('Patient?given=zoe')).toEqual(['pat-angstrom']);
    expect(await found('Patient?family=ANGSTRÖM')).toEqual(['pat-angstrom']);
    // A prefix match, not a substring match.
    expect(await found('Patient?family=ller')).toEqual([]);
    expect(await found('Practitioner?name=hou')).toEqual(['pr-house']);
  });

  it(':exact matches the whole text with its case and accents', async () => {
    expect(await found('Patient?family:exact=Müller')).toEqual(['pat-muller']);
    expect(await found('Patient?family:exact=müller')).toEqual([]);
    expect(await found('Patient?family:exact=Muller')).toEqual([]);
    expect(await found('Patient?family:exact=Mül')).toEqual([]);
    expect(await found('Patient?given:exact=Zoë')).toEqual(['pat-angstrom']);
  });

  it(':contains matches anywhere in the text, ignoring case and accents', async () => {
    expect(await found('Patient?family:contains=LL')).toEqual(sorted('pat-muller', 'pat-mueller'));
    expect(await found('Patient?family:contains=ell')).toEqual(['pat-mueller']);
    expect(await found('Patient?name:contains=strö')).toEqual(['pat-angstrom']);
    expect(await found('Patient?given:contains=bel')).toEqual(['pat-smith']);
  });

  it('treats LIKE wildcards in the value as text', async () => {
    expect(await found('Patient?family=%25')).toEqual([]);
    expect(await found('Patient?family=_')).toEqual([]);
    expect(await found('Patient?family:contains=%25')).toEqual([]);
  });
});

// ---- tokens -----------------------------------------------------------------------------

describe('token parameters', () => {
  it('match code, system|code, |code and system|', async () => {
    expect(await found('Patient?identifier=M-1')).toEqual(sorted('pat-muller', 'pat-smith'));
    expect(await found('Patient?identifier=urn:mrn|M-1')).toEqual(['pat-muller']);
    expect(await found('Patient?identifier=urn:other|M-1')).toEqual(['pat-smith']);
    expect(await found('Patient?identifier=|NOSYS-1')).toEqual(['pat-angstrom']);
    expect(await found('Patient?identifier=|M-1')).toEqual([]);
    expect(await found('Patient?identifier=urn:mrn|')).toEqual(sorted('pat-muller', 'pat-mueller'));
    expect(await found('Patient?identifier=urn:ssn|111')).toEqual(['pat-mueller']);
    expect(await found('Patient?gender=female')).toEqual(sorted('pat-muller', 'pat-angstrom'));
    expect(await found(`Encounter?class=AMB`)).toEqual(sorted('enc-1', 'enc-3'));
    expect(await found(`Encounter?class=${encodeURIComponent(ACT_CODE)}|VR`)).toEqual(['enc-2']);
    expect(await found(`Communication?category=${encodeURIComponent(CATEGORY)}|medical-question`)).toEqual(
      sorted('th-1', 'msg-1', 'msg-2', 'msg-3')
    );
    expect(await found('Communication?category=urgent')).toEqual(['th-2']);
    expect(await found('Communication?category=|urgent')).toEqual(['th-2']);
    expect(await found(`Communication?category=${encodeURIComponent(CATEGORY)}|urgent`)).toEqual([]);
  });

  it(':not excludes the code, and keeps resources without a value', async () => {
    expect(await found('Patient?gender:not=female')).toEqual(sorted('pat-mueller', 'pat-smith', 'pat-doe'));
    expect(await found('Patient?identifier:not=urn:mrn|')).toEqual(sorted('pat-angstrom', 'pat-smith', 'pat-doe'));
    expect(await found('Patient?gender:not=female,male')).toEqual(sorted('pat-smith', 'pat-doe'));
  });
});

// ---- references -------------------------------------------------------------------------

describe('reference parameters', () => {
  const smithThread = sorted('th-2', 'msg-4');

  it('match Type/id, a bare id, and an absolute URL of this server', async () => {
    expect(await found('Communication?subject=Patient/pat-smith')).toEqual(smithThread);
    expect(await found('Communication?subject=pat-smith')).toEqual(smithThread);
    expect(await found(`Communication?subject=${encodeURIComponent(`${server.fhirBase}/Patient/pat-smith`)}`)).toEqual(smithThread);
    expect(await found('Communication?part-of=Communication/th-1')).toEqual(sorted('msg-1', 'msg-2', 'msg-3'));
    expect(await found('Communication?part-of=th-1')).toEqual(sorted('msg-1', 'msg-2', 'msg-3'));
    expect(await found('Communication?subject=Patient/nobody')).toEqual([]);
  });

  it('store a reference written as an absolute URL of this server as Type/id', async () => {
    expect(await found('Communication?recipient=Practitioner/pr-house')).toEqual(sorted('th-1', 'msg-1', 'msg-3', 'msg-5'));
  });

  it(':Type restricts a bare id to one target type', async () => {
    expect(await found('Communication?recipient:Practitioner=pr-wilson')).toEqual(sorted('th-2', 'msg-3', 'msg-4'));
    expect(await found('Communication?sender:Patient=pat-muller')).toEqual(sorted('msg-1', 'msg-3'));
    expect(await found('Communication?sender:Practitioner=pat-muller')).toEqual([]);
    expect(await found('Communication?recipient:Patient=pat-muller')).toEqual(['msg-2']);
  });
});

// ---- dates ------------------------------------------------------------------------------

describe('date parameters', () => {
  // Birth dates: muller 1980-05-01, mueller 1975-12-31, angstrom 1990 (the whole year),
  // smith 1980-05-02, doe none.
  it('compare day- and year-precision dates with every prefix', async () => {
    expect(await found('Patient?birthdate=1980-05-01')).toEqual(['pat-muller']);
    expect(await found('Patient?birthdate=eq1980-05')).toEqual(sorted('pat-muller', 'pat-smith'));
    expect(await found('Patient?birthdate=1980')).toEqual(sorted('pat-muller', 'pat-smith'));
    expect(await found('Patient?birthdate=1990')).toEqual(['pat-angstrom']);
    // A day inside 1990 does not contain the whole year.
    expect(await found('Patient?birthdate=1990-06-15')).toEqual([]);
    expect(await found('Patient?birthdate=ap1990-06-15')).toEqual(['pat-angstrom']);
    expect(await found('Patient?birthdate=ne1980-05-01')).toEqual(sorted('pat-mueller', 'pat-angstrom', 'pat-smith'));
    expect(await found('Patient?birthdate=lt1980-05-01')).toEqual(['pat-mueller']);
    expect(await found('Patient?birthdate=le1980-05-01')).toEqual(sorted('pat-mueller', 'pat-muller'));
    expect(await found('Patient?birthdate=gt1980-05-01')).toEqual(sorted('pat-smith', 'pat-angstrom'));
    expect(await found('Patient?birthdate=ge1980-05-02')).toEqual(sorted('pat-smith', 'pat-angstrom'));
    expect(await found('Patient?birthdate=sa1980-05-01')).toEqual(sorted('pat-smith', 'pat-angstrom'));
    expect(await found('Patient?birthdate=eb1980-05-02')).toEqual(sorted('pat-mueller', 'pat-muller'));
    // 1990 reaches past mid-1990 (gt) but does not start after it (sa).
    expect(await found('Patient?birthdate=gt1990-06-15')).toEqual(['pat-angstrom']);
    expect(await found('Patient?birthdate=sa1990-06-15')).toEqual([]);
    expect(await found('Patient?birthdate=lt1990-06-15')).toEqual(sorted('pat-muller', 'pat-mueller', 'pat-smith', 'pat-angstrom'));
    expect(await found('Patient?birthdate=eb1990-06-15')).toEqual(sorted('pat-muller', 'pat-mueller', 'pat-smith'));
  });

  // Sent: msg-1 2024-03-05T10:15Z, msg-2 2024-03-05T12:30Z (written +02:00),
  // msg-3 2024-03-06T08:00Z, msg-4 2024-04-01 (a whole day), msg-5 2023-12-31T23:59:59Z.
  it('compare dateTimes, including time zones and day-precision values', async () => {
    expect(await found('Communication?sent=2024-03-05')).toEqual(sorted('msg-1', 'msg-2'));
    expect(await found('Communication?sent=2024-03-05T12:30:00Z')).toEqual(['msg-2']);
    expect(await found(`Communication?sent=${encodeURIComponent('2024-03-05T14:30:00+02:00')}`)).toEqual(['msg-2']);
    expect(await found('Communication?sent=lt2024-03-05T12:30:00Z')).toEqual(sorted('msg-1', 'msg-5'));
    expect(await found('Communication?sent=le2024-03-05T12:30:00Z')).toEqual(sorted('msg-1', 'msg-2', 'msg-5'));
    expect(await found('Communication?sent=gt2024-03-05T12:30:00Z')).toEqual(sorted('msg-3', 'msg-4'));
    expect(await found('Communication?sent=ge2024-03-05T12:30:00Z')).toEqual(sorted('msg-2', 'msg-3', 'msg-4'));
    expect(await found('Communication?sent=2024')).toEqual(sorted('msg-1', 'msg-2', 'msg-3', 'msg-4'));
    expect(await found('Communication?sent=ne2024')).toEqual(['msg-5']);
    expect(await found('Communication?sent=eb2024-01-01')).toEqual(['msg-5']);
    expect(await found('Communication?sent=sa2024-03-31')).toEqual(['msg-4']);
    // The day 2024-04-01 is wider than one of its seconds.
    expect(await found('Communication?sent=2024-04-01T09:00:00Z')).toEqual([]);
    expect(await found('Communication?sent=ap2024-04-01T09:00:00Z')).toEqual(['msg-4']);
    expect(await found('Communication?sent=gt2024-04-01T09:00:00Z')).toEqual(['msg-4']);
    expect(await found('Communication?sent=sa2024-04-01T09:00:00Z')).toEqual([]);
  });

  // Periods: enc-1 2024-03-05 09:00-10:00Z, enc-2 2024-03-01 to 2024-03-10, enc-3 from
  // 2024-04-01T12:00Z with no end, enc-4 2023-12-31T22:00Z to 2024-01-01T02:00Z.
  it('compare Periods, an open end reaching forever', async () => {
    expect(await found('Encounter?date=2024-03-05')).toEqual(['enc-1']);
    expect(await found('Encounter?date=2024-03')).toEqual(sorted('enc-1', 'enc-2'));
    expect(await found('Encounter?date=2024')).toEqual(sorted('enc-1', 'enc-2'));
    expect(await found('Encounter?date=ap2024-03-05')).toEqual(sorted('enc-1', 'enc-2'));
    expect(await found('Encounter?date=ne2024-03-05')).toEqual(sorted('enc-2', 'enc-3', 'enc-4'));
    expect(await found('Encounter?date=ge2024-04-01')).toEqual(['enc-3']);
    expect(await found('Encounter?date=gt2030-01-01')).toEqual(['enc-3']);
    expect(await found('Encounter?date=lt2024-01-01')).toEqual(['enc-4']);
    expect(await found('Encounter?date=le2024-03-05')).toEqual(sorted('enc-1', 'enc-2', 'enc-4'));
    expect(await found('Encounter?date=sa2024-03-05')).toEqual(['enc-3']);
    expect(await found('Encounter?date=eb2024-03-05')).toEqual(['enc-4']);
  });
});

// ---- :missing, _id, _lastUpdated --------------------------------------------------------

describe('special parameters and :missing', () => {
  it(':missing finds resources with and without a value', async () => {
    expect(await found('Patient?birthdate:missing=true')).toEqual(['pat-doe']);
    expect(await found('Patient?birthdate:missing=false')).toEqual(sorted('pat-muller', 'pat-mueller', 'pat-angstrom', 'pat-smith'));
    expect(await found('Patient?gender:missing=true')).toEqual(['pat-doe']);
    expect(await found('Communication?sent:missing=true')).toEqual(sorted('th-1', 'th-2'));
    expect(await found('Communication?part-of:missing=true')).toEqual(sorted('th-1', 'th-2', 'msg-5'));
    expect(await found('Patient?family:missing=false&gender=female')).toEqual(sorted('pat-muller', 'pat-angstrom'));
  });

  it('_id takes one id or a comma list', async () => {
    expect(await found('Patient?_id=pat-smith')).toEqual(['pat-smith']);
    expect(await found('Patient?_id=pat-smith,pat-doe,nobody')).toEqual(sorted('pat-smith', 'pat-doe'));
    expect(await found('Patient?_id=nobody')).toEqual([]);
  });

  it('_lastUpdated compares with the time each resource was last written', async () => {
    const earlier = sorted('pat-muller', 'pat-mueller', 'pat-angstrom', 'pat-smith');
    const at = encodeURIComponent(betweenWrites);
    expect(await found(`Patient?_lastUpdated=gt${at}`)).toEqual(['pat-doe']);
    expect(await found(`Patient?_lastUpdated=ge${at}`)).toEqual(['pat-doe']);
    expect(await found(`Patient?_lastUpdated=lt${at}`)).toEqual(earlier);
    expect(await found(`Patient?_lastUpdated=le${at}`)).toEqual(earlier);
    expect(await found('Patient?_lastUpdated=gt2000-01-01')).toEqual(sorted(...earlier, 'pat-doe'));
    expect(await found('Patient?_lastUpdated=lt2000-01-01')).toEqual([]);
    expect(await found(`Patient?_lastUpdated=gt2000-01-01&_lastUpdated=lt${at}`)).toEqual(earlier);
  });
});

// ---- combinations -----------------------------------------------------------------------

describe('combining values and parameters', () => {
  it('ORs comma-separated values and ANDs parameters, also a repeated one', async () => {
    expect(await found('Patient?gender=male,other')).toEqual(sorted('pat-mueller', 'pat-smith'));
    expect(await found('Patient?family=mu&gender=male')).toEqual(['pat-mueller']);
    expect(await found('Patient?birthdate=1980-05-01,1990')).toEqual(sorted('pat-muller', 'pat-angstrom'));
    expect(await found('Communication?sent=ge2024-03-05&sent=lt2024-03-06')).toEqual(sorted('msg-1', 'msg-2'));
    expect(await found('Communication?recipient=Practitioner/pr-house&recipient=Practitioner/pr-wilson')).toEqual(['msg-3']);
    expect(await found('Communication?recipient=Practitioner/pr-house,Practitioner/pr-wilson&sent:missing=false')).toEqual(
      sorted('msg-1', 'msg-3', 'msg-4', 'msg-5')
    );
  });

  it('a backslash-escaped comma is part of the value', async () => {
    expect(await found('Patient?family=a%5C,b')).toEqual([]);
  });
});

describe('chained search', () => {
  it('filters on a parameter of the referenced resource', async () => {
    expect(await found('Communication?subject:Patient.name=müller')).toEqual(sorted('th-1', 'msg-1', 'msg-2', 'msg-3'));
    expect(await found('Communication?subject.name=smi')).toEqual(sorted('th-2', 'msg-4'));
    expect(await found('Encounter?subject.identifier=urn:mrn|M-2')).toEqual(['enc-2']);
    expect(await found('Encounter?subject:Patient.birthdate=1980-05')).toEqual(sorted('enc-1', 'enc-3', 'enc-4'));
    expect(await found('Communication?recipient:Practitioner.identifier=urn:npi|111')).toEqual(sorted('th-1', 'msg-1', 'msg-3', 'msg-5'));
    expect(await found('Communication?subject:Patient.gender=male&category=billing')).toEqual(['msg-5']);
  });

  it('rejects a chain through a parameter no target has', async () => {
    await expectBadRequest('Communication?subject.nosuchparam=x');
    await expectBadRequest('Communication?subject:Practitioner.name=x');
  });
});

// ---- result parameters ------------------------------------------------------------------

describe('sorting and _count', () => {
  it('sorts by one key, ascending or descending', async () => {
    expect(await matchIds('Patient?_sort=family')).toEqual(['pat-angstrom', 'pat-doe', 'pat-mueller', 'pat-muller', 'pat-smith']);
    expect(await matchIds('Patient?_sort=-family')).toEqual(['pat-smith', 'pat-muller', 'pat-mueller', 'pat-doe', 'pat-angstrom']);
    expect(await matchIds('Communication?sent:missing=false&_sort=sent')).toEqual(['msg-5', 'msg-1', 'msg-2', 'msg-3', 'msg-4']);
    expect(await matchIds('Communication?sent:missing=false&_sort=-sent')).toEqual(['msg-4', 'msg-3', 'msg-2', 'msg-1', 'msg-5']);
    expect(await matchIds('Patient?_sort=_id')).toEqual(sorted('pat-angstrom', 'pat-doe', 'pat-mueller', 'pat-muller', 'pat-smith'));
  });

  it('sorts a missing value after every value ascending, before them descending', async () => {
    expect(await matchIds('Patient?_sort=birthdate')).toEqual(['pat-mueller', 'pat-muller', 'pat-smith', 'pat-angstrom', 'pat-doe']);
    expect(await matchIds('Patient?_sort=-birthdate')).toEqual(['pat-doe', 'pat-angstrom', 'pat-smith', 'pat-muller', 'pat-mueller']);
  });

  it('sorts by several keys, each in its own direction', async () => {
    // female (angstrom 1990, muller 1980), male, other, then no gender.
    expect(await matchIds('Patient?_sort=gender,-birthdate')).toEqual(['pat-angstrom', 'pat-muller', 'pat-mueller', 'pat-smith', 'pat-doe']);
    expect(await matchIds('Communication?subject=pat-muller,pat-smith&_sort=subject,-sent')).toEqual([
      'th-1',
      'msg-3',
      'msg-2',
      'msg-1',
      'th-2',
      'msg-4',
    ]);
    expect(await matchIds('Communication?subject=pat-muller,pat-smith&_sort=-subject,sent')).toEqual([
      'msg-4',
      'th-2',
      'msg-1',
      'msg-2',
      'msg-3',
      'th-1',
    ]);
  });

  it('_count limits the page and links the next one', async () => {
    const bundle = await search('Patient?_sort=family&_count=2');
    expect(bundle.entry!.map((e) => e.resource.id)).toEqual(['pat-angstrom', 'pat-doe']);
    expect(bundle.link.find((l) => l.relation === 'next')).toBeDefined();
    const all = await search('Patient?_sort=family&_count=5');
    expect(all.entry).toHaveLength(5);
    expect(all.link.find((l) => l.relation === 'next')).toBeUndefined();
    const none = await search('Patient?_count=0&_total=accurate');
    expect(none.entry).toBeUndefined();
    expect(none.total).toBe(5);
  });
});

describe('_include and _revinclude', () => {
  it('_include adds the referenced resources with search mode include', async () => {
    const bundle = await search('Communication?part-of=Communication/th-1&_include=Communication:subject&_include=Communication:part-of');
    const byMode = (mode: string) =>
      (bundle.entry ?? [])
        .filter((e) => e.search.mode === mode)
        .map((e) => `${e.resource.resourceType}/${e.resource.id}`)
        .sort();
    expect(byMode('match')).toEqual(['Communication/msg-1', 'Communication/msg-2', 'Communication/msg-3']);
    expect(byMode('include')).toEqual(['Communication/th-1', 'Patient/pat-muller']);
    for (const entry of bundle.entry!) {
      expect(entry.fullUrl).toBe(`${server.fhirBase}/${entry.resource.resourceType}/${entry.resource.id}`);
    }
  });

  it('_include with a target type follows only references to that type', async () => {
    const bundle = await search('Communication?_id=msg-2,msg-3&_include=Communication:recipient:Practitioner');
    const included = bundle.entry!.filter((e) => e.search.mode === 'include').map((e) => e.resource.id);
    expect(included.sort()).toEqual(['pr-house', 'pr-wilson']);
  });

  it('_revinclude adds the resources that refer to the matches', async () => {
    const thread = await search('Communication?_id=th-1&_revinclude=Communication:part-of');
    expect(thread.entry!.filter((e) => e.search.mode === 'match').map((e) => e.resource.id)).toEqual(['th-1']);
    expect(thread.entry!.filter((e) => e.search.mode === 'include').map((e) => e.resource.id).sort()).toEqual(['msg-1', 'msg-2', 'msg-3']);

    const provenance = await search('Communication?_id=msg-1,msg-4&_revinclude=Provenance:target');
    const included = provenance.entry!.filter((e) => e.search.mode === 'include');
    expect(included.map((e) => e.resource.id)).toEqual(expect.arrayContaining(['prov-1', 'prov-4']));
    for (const entry of included) {
      expect(entry.resource.resourceType).toBe('Provenance');
      const targets = (entry.resource as unknown as { target: { reference: string }[] }).target.map((t) => t.reference);
      expect(targets.some((t) => t === 'Communication/msg-1' || t === 'Communication/msg-4')).toBe(true);
    }
  });
});

describe('totals', () => {
  it('_summary=count gives the total and no entries', async () => {
    const bundle = await search('Communication?subject=Patient/pat-muller&_summary=count');
    expect(bundle.total).toBe(4);
    expect(bundle.entry).toBeUndefined();
  });

  it('_total=accurate counts every match, not just the page', async () => {
    const bundle = await search(`Communication?category=${encodeURIComponent(CATEGORY)}|&_count=2&_total=accurate`);
    expect(bundle.total).toBe(7);
    expect(bundle.entry).toHaveLength(2);
  });
});

describe('POST _search', () => {
  it('gives the same result as GET for the same parameters', async () => {
    const query = 'subject=Patient/pat-muller&sent:missing=false&_sort=-sent&_include=Communication:part-of';
    const viaGet = await search(`Communication?${query}`);
    const viaPost = await server.request
      .post('/fhir/Communication/_search')
      .set('content-type', 'application/x-www-form-urlencoded')
      .send(query);
    expect(viaPost.status).toBe(200);
    const shape = (b: { entry?: Entry[] }) => (b.entry ?? []).map((e) => [e.resource.id, e.search.mode]);
    expect(shape(viaPost.body)).toEqual(shape(viaGet));
    expect(shape(viaGet)).toEqual([
      ['msg-3', 'match'],
      ['msg-2', 'match'],
      ['msg-1', 'match'],
      ['th-1', 'include'],
    ]);
  });
});

// ---- bad input --------------------------------------------------------------------------

describe('bad search input is a 400 OperationOutcome', () => {
  it('rejects unknown parameters, bad values and unsupported modifiers', async () => {
    await expectBadRequest('Patient?nosuchparam=1');
    await expectBadRequest('Patient?birthdate=1980-13-01');
    await expectBadRequest('Patient?birthdate=yesterday');
    await expectBadRequest('Patient?birthdate=1980-02-30');
    await expectBadRequest('Patient?_lastUpdated=gtsoon');
    await expectBadRequest('Patient?name:nosuchmodifier=x');
    await expectBadRequest('Patient?gender:exact=female');
    await expectBadRequest('Patient?birthdate:contains=1980');
    await expectBadRequest('Patient?gender:missing=maybe');
    await expectBadRequest('Patient?_sort=nosuchparam');
    await expectBadRequest('Patient?_count=-1');
    await expectBadRequest('Patient?_count=ten');
    await expectBadRequest('Patient?_include=Patient:name');
    await expectBadRequest('Communication?_include=Patient:general-practitioner');
    await expectBadRequest('Communication?subject:Practitioner=x');
    await expectBadRequest('Patient?_cursor=sideways:1');
  });
});
