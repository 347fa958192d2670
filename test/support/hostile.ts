/**
 * Hostile input for the property-based suites (test/hostile-*.test.ts): fast-check
 * generators for malformed and malicious strings, path segments, queries, search
 * parameters, resources, JSON Patch documents, Bundles and broken JSON, and the public
 * routes read from openapi.yaml. Sending and checking is in hostile-http.ts.
 */
import fs from 'node:fs';
import fc from 'fast-check';
import { parse } from 'yaml';

// ---------------------------------------------------------------- strings

/** A marker that must never come back unescaped in an HTML page. */
export const SCRIPT_MARKER = 'hostile-xss-7f3a';

export const SQL_INJECTIONS = [
  "' OR '1'='1",
  "'; DROP TABLE \"Patient\"; --",
  '1; DELETE FROM outbox',
  "x' UNION SELECT content FROM \"Patient\" --",
  "\\'; SELECT pg_sleep(0) --",
  '$1',
  '%',
  '_',
  "') OR 1=1 --",
  "Robert'); TRUNCATE auth_users; --",
  '"; UPDATE "Patient" SET deleted = true; --',
  "' || (SELECT string_agg(password_hash, ',') FROM auth_users) || '",
  'E\'\\x00\'',
  '{"$ne": null}',
];

export const SCRIPT_INJECTIONS = [
  `<script>${SCRIPT_MARKER}()</script>`,
  `"><script>${SCRIPT_MARKER}()</script>`,
  `'><img src=x onerror=${SCRIPT_MARKER}()>`,
  `javascript:${SCRIPT_MARKER}()`,
  `<svg onload=${SCRIPT_MARKER}()>`,
  `</title><script>${SCRIPT_MARKER}()</script>`,
  `\u003cscript\u003e${SCRIPT_MARKER}()\u003c/script\u003e`,
  `{{constructor.constructor('${SCRIPT_MARKER}')()}}`,
  `<iframe srcdoc="<script>${SCRIPT_MARKER}()</script>">`,
];

export const PATH_TRICKS = [
  '..',
  '../..',
  '../../etc/passwd',
  '%2e%2e',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '..%2f..%2f',
  '%252e%252e%252f',
  'a%2Fb',
  '%2F%2F',
  '%00',
  'a%00.html',
  '%c0%ae%c0%ae',
  '%ff',
  '%',
  '%zz',
  '%E0%A4%A',
  '..\\..\\windows',
  '.',
  '~',
  'con',
  '%5C..%5C',
];

/** Strings no well-formed client sends: control characters, lone surrogates, odd Unicode. */
const oddUnicode = fc.oneof(
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => `a${String.fromCharCode(c)}b`),
  fc.constantFrom('\u0000', 'a\u0000b', '\u202e', '\ufeff', '\uffff', '\u{10ffff}', '\r\n', '\u2028', 'e\u0301\u0301\u0301', '🏥'.repeat(50)),
  fc.string({ unit: 'binary', maxLength: 40 })
);

/** One hostile value for any parameter or field. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...SQL_INJECTIONS),
  fc.constantFrom(...SCRIPT_INJECTIONS),
  fc.constantFrom(...PATH_TRICKS),
  oddUnicode,
  fc.string({ maxLength: 30 }),
  fc.constantFrom('', ' ', '-1', '0', '1e309', 'NaN', 'null', 'true', '[]', '{}', '9'.repeat(400), 'gt2020-13-45', 'eq', 'Patient/', '/Patient/x'),
  fc.integer({ min: 1000, max: 20000 }).map((n) => 'A'.repeat(n))
);

// ---------------------------------------------------------------- routes

export interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The path template from openapi.yaml, e.g. `/fhir/{type}/{id}`. */
  template: string;
}

/** Every documented operation (method and path) of openapi.yaml. */
export function documentedOperations(): Operation[] {
  const document = parse(fs.readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
  const operations: Operation[] = [];
  for (const [template, item] of Object.entries(document.paths)) {
    for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
      if (item[method]) {
        operations.push({ method: method.toUpperCase() as Operation['method'], template });
      }
    }
  }
  return operations;
}

export const RESOURCE_TYPES = [
  'Patient', 'Practitioner', 'PractitionerRole', 'RelatedPerson', 'Organization', 'CareTeam', 'Group', 'Encounter',
  'Appointment', 'Communication', 'CommunicationRequest', 'Task', 'DocumentReference', 'Binary', 'Provenance',
  'AuditEvent', 'Subscription', 'Measure', 'MeasureReport', 'CodeSystem', 'List',
];

/** A path segment: mostly plausible, often hostile; URL-encoded unless it is a path trick. */
export function segment(plausible: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...plausible) },
    { weight: 2, arbitrary: hostileString.map((s) => encodeURIComponent(wellFormed(s))) },
    { weight: 1, arbitrary: fc.constantFrom(...PATH_TRICKS) }
  );
}

/** Fills a template's `{type}`, `{id}` and `{vid}`. */
export function fillTemplate(template: string, values: { type: string; id: string; vid: string }): string {
  return template.replace('{type}', values.type).replace('{id}', values.id).replace('{vid}', values.vid);
}

/** Known search parameter names, garbage names, modifiers and chains, often repeated. */
export const queryPairs: fc.Arbitrary<[string, string][]> = fc.array(
  fc.tuple(
    fc.oneof(
      fc.constantFrom('_id', '_count', '_sort', '_include', '_revinclude', '_elements', '_summary', '_total', '_format', '_lastUpdated', '_has:Communication:subject:_id', 'name', 'subject', 'patient', 'subject:Patient.name', 'date', 'sent', 'status', '_tag', 'identifier', 'category', '_since', '_at', 'period', 'start', 'end', 'user', 'action', 'outcome', 'page', '_offset', 'access_token', 'code', 'state', 'iss', 'launch', 'name:exact', 'name:contains', 'name:missing', 'birthdate', '_text', '_content', '_filter', 'unknown-param', '__proto__', 'constructor'),
      hostileString
    ),
    hostileString
  ),
  { maxLength: 6 }
);

export function queryString(pairs: [string, string][]): string {
  if (pairs.length === 0) return '';
  return `?${pairs.map(([k, v]) => `${encodeURIComponent(wellFormed(k))}=${encodeURIComponent(wellFormed(v))}`).join('&')}`;
}

/** encodeURIComponent throws on lone surrogates; raw bytes test those separately. */
export function wellFormed(s: string): string {
  return s.replace(/[\ud800-\udfff]/g, (c, i: number, all: string) => {
    const code = c.charCodeAt(0);
    const pairedHigh = code < 0xdc00 && /[\udc00-\udfff]/.test(all[i + 1] ?? '');
    const pairedLow = code >= 0xdc00 && /[\ud800-\udbff]/.test(all[i - 1] ?? '');
    return pairedHigh || pairedLow ? c : '\ufffd';
  });
}

// ---------------------------------------------------------------- bodies

/** JSON values of every type, for elements that expect something else. */
const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, '', [], {}, [null], [[]], { '': '' }),
  hostileString,
  fc.array(hostileString, { maxLength: 3 }),
  fc.dictionary(hostileString, hostileString, { maxKeys: 3 })
);

const hostileReference = fc.oneof(
  fc.constantFrom('Patient/', '/Patient/1', 'Patient/../../x', 'Nope/1', 'Patient/1/_history/x', 'urn:uuid:not-a-uuid', '#', '#missing', 'http://evil.example/fhir/Patient/1', 'Patient/1?x=1', 'Patient/%2e%2e', 'Patient', ''),
  hostileString.map((s) => `Patient/${s}`),
  hostileString
);

/** A FHIR-looking resource whose elements hold the wrong types and hostile values. */
export function hostileResource(type: string): fc.Arbitrary<Record<string, unknown>> {
  return fc
    .record(
      {
        resourceType: fc.oneof({ weight: 4, arbitrary: fc.constant(type) }, { weight: 1, arbitrary: wrongType }),
        id: wrongType,
        meta: fc.oneof(wrongType, fc.record({ versionId: wrongType, lastUpdated: wrongType, tag: wrongType, security: wrongType })),
        status: wrongType,
        name: fc.oneof(wrongType, fc.array(fc.record({ family: wrongType, given: wrongType }), { maxLength: 2 })),
        subject: fc.oneof(wrongType, fc.record({ reference: hostileReference })),
        recipient: fc.oneof(wrongType, fc.array(fc.record({ reference: hostileReference }), { maxLength: 3 })),
        sender: fc.record({ reference: hostileReference }),
        patient: fc.record({ reference: hostileReference }),
        payload: fc.oneof(wrongType, fc.array(fc.record({ contentString: wrongType, contentAttachment: wrongType }), { maxLength: 2 })),
        birthDate: wrongType,
        sent: wrongType,
        contained: fc.oneof(wrongType, fc.array(fc.record({ resourceType: wrongType, id: wrongType }), { maxLength: 2 })),
        extension: fc.oneof(wrongType, fc.array(fc.record({ url: wrongType, valueString: wrongType }), { maxLength: 2 })),
        text: fc.record({ status: wrongType, div: fc.constantFrom(...SCRIPT_INJECTIONS.map((s) => `<div xmlns="http://www.w3.org/1999/xhtml">${s}</div>`)) }),
        entry: fc.oneof(wrongType, fc.array(fc.record({ fullUrl: wrongType, resource: wrongType, request: fc.record({ method: wrongType, url: hostileReference }) }), { maxLength: 3 })),
        type: wrongType,
        data: wrongType,
        contentType: wrongType,
        __proto__: wrongType,
        constructor: wrongType,
      },
      { requiredKeys: ['resourceType'] }
    )
    .map((r) => ({ ...r }));
}

/** JSON Patch documents with wrong ops and hostile paths. */
export const hostilePatch: fc.Arbitrary<unknown> = fc.oneof(
  wrongType,
  fc.array(
    fc.record({
      op: fc.oneof(fc.constantFrom('add', 'remove', 'replace', 'move', 'copy', 'test'), wrongType),
      path: fc.oneof(fc.constantFrom('/id', '/meta/versionId', '/resourceType', '/name/0/family', '/-', '/name/999999', '/__proto__/polluted', '/constructor/prototype/x', '', '/', '/a~2b', '/meta'), hostileString),
      from: fc.oneof(fc.constantFrom('/id', '/name', '/name/0'), wrongType),
      value: wrongType,
    }),
    { maxLength: 4 }
  )
);

/** Text that is not JSON, or JSON that no parser should be asked to walk. */
export const brokenJson: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', '{', '}', '{"resourceType":', '{"resourceType":"Patient",}', "{'a':1}", 'undefined', 'NaN', '{"a":1}{"b":2}', '\ufeff{"resourceType":"Patient"}', '[', '"unterminated', '{"a":"\\u12"}', '{"a":"\\x41"}', '{"a":01}', '{"a":1e99999}', 'null', '123', '"string"', 'true', '[]'),
  fc.json().map((s) => s.slice(0, Math.max(0, s.length - 1))),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.integer({ min: 1000, max: 20000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
  fc.integer({ min: 1000, max: 20000 }).map((depth) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)),
  fc.constant('{"resourceType":"Patient","name":' + '['.repeat(10_000) + ']'.repeat(10_000) + '}'),
  fc.constant(`{"resourceType":"Patient","extension":${'[{"url":"x","extension":'.repeat(10_000)}[]${'}]'.repeat(10_000)}}`)
);

/** Search values that look almost right: odd dates, prefixes, modifiers, chains, includes. */
export const searchValue: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'ge2020-01-01', 'lt2020-13-01', 'eq2020-02-30', 'ge2020-01-01T00:00:00+99:00', 'sa9999-12-31T23:59:59Z', 'ap0000-01-01', 'ne', 'gt', '2020', '2020-01-01T25:61:61Z', '-292275055-05-16T16:47:04.192Z', 'ge+275760-09-13',
    'Patient/x', 'Patient/', 'http://evil.example/Patient/1', 'urn:uuid:x', '|', '||', 'a|b|c', 'system|', '|code', 'x,y,,z', '\\', '\\,', 'a\\|b', '$', ':', '*', '-1', '0', '1e3', '99999999999999999999', '-_lastUpdated,name,-', ':missing', 'true', 'false', 'maybe',
    'Communication:subject', 'Communication:subject:Patient', 'Communication:*', '*', 'Patient:organization:Organization:partof', ':iterate', 'Task:focus:Communication',
  ),
  hostileString
);

export const searchName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '_id', '_count', '_sort', '_include', '_revinclude', '_include:iterate', '_elements', '_summary', '_total', '_lastUpdated', '_tag', '_security', '_profile', '_source', '_list', '_has:Communication:subject:status', '_has:Communication:recipient:_id', '_has:x', '_has',
    'subject', 'subject:Patient', 'subject:Patient.name', 'subject.name', 'patient', 'patient:missing', 'recipient', 'sender', 'part-of', 'based-on', 'focus', 'owner', 'requester', 'date', 'sent', 'received', 'authored-on', 'period', 'birthdate', 'name', 'name:exact', 'name:contains', 'name:text', 'family:above',
    'identifier', 'identifier:of-type', 'status', 'status:not', 'category', 'code:in', 'code:below', 'active', 'telecom', 'email', 'phone', 'address', 'general-practitioner', 'organization', 'member', 'participant', 'agent', 'entity', 'action', 'outcome', 'type', 'url', 'version', 'measure', 'criteria',
  ),
  hostileString
);

/** Bundles of every kind with hostile entries: methods, urls, fullUrls and references. */
export function hostileBundle(patientId: string): fc.Arbitrary<Record<string, unknown>> {
  const entry = fc.record(
    {
      fullUrl: fc.oneof(fc.constantFrom('urn:uuid:3f1b2c7e-0000-4000-8000-000000000001', 'urn:uuid:3f1b2c7e-0000-4000-8000-000000000001', 'urn:uuid:bad', `Patient/${patientId}`, ''), hostileString),
      request: fc.record({
        method: fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'get'), wrongType),
        url: fc.oneof(fc.constantFrom('Patient', `Patient/${patientId}`, 'Patient?name=x', 'Patient/_search', '/Patient', '../Patient', 'Communication/$inbox', 'metadata', '', '?', 'Patient/urn:uuid:3f1b2c7e-0000-4000-8000-000000000001', `Patient/${patientId}/_history/1`, 'http://evil.example/fhir/Patient'), hostileString),
        ifMatch: fc.oneof(fc.constantFrom('W/"1"', 'W/"999"', '*'), wrongType),
        ifNoneExist: fc.oneof(fc.constantFrom('identifier=x|y', '_id=x'), hostileString),
      }, { requiredKeys: ['method', 'url'] }),
      resource: fc.oneof(
        fc.constant({ resourceType: 'Patient', name: [{ family: 'bundle' }], generalPractitioner: [{ reference: 'urn:uuid:3f1b2c7e-0000-4000-8000-000000000001' }] }),
        fc.constantFrom('Patient', 'Communication', 'Bundle', 'Binary').chain(hostileResource),
        wrongType
      ),
    },
    { requiredKeys: ['request'] }
  );
  return fc.record({
    resourceType: fc.constant('Bundle'),
    type: fc.oneof(fc.constantFrom('transaction', 'batch', 'transaction', 'batch', 'collection', 'searchset', 'document', 'message', 'history'), wrongType),
    entry: fc.oneof({ weight: 5, arbitrary: fc.array(entry, { maxLength: 6 }) }, { weight: 1, arbitrary: wrongType }),
  });
}
