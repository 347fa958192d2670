/**
 * The copy of a message that goes into the EHR's chart (pure logic): our identifier added,
 * the EHR's own fields left out, references put in the EHR's terms.
 */
import type { Communication, Provenance } from '@medplum/fhirtypes';
import { describe, expect, it } from 'vitest';
import { chartCopy, chartQuery, referencedCommunications } from '../fhir/chart/chart-copy.js';

const OURS = 'https://carethread.example.org/fhir';

const message: Communication = {
  resourceType: 'Communication',
  id: 'm2',
  meta: {
    versionId: '3',
    lastUpdated: '2025-01-02T03:04:05.000Z',
    source: 'urn:carethread',
    security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }],
  },
  status: 'completed',
  partOf: [{ reference: 'Communication/header' }],
  inResponseTo: [{ reference: `${OURS}/Communication/m1` }],
  subject: { reference: 'Patient/p1' },
  encounter: { reference: 'Encounter/e1' },
  sender: { reference: 'RelatedPerson/rp1' },
  recipient: [{ reference: 'Practitioner/d1' }, { reference: 'CareTeam/pool' }, { reference: 'https://elsewhere.example/fhir/Group/g' }],
  payload: [{ contentString: 'See the photo.' }, { contentAttachment: { contentType: 'image/png', url: 'Binary/b1' } }],
  contained: [{ resourceType: 'Basic', id: 'note', code: { text: 'x' } }],
  about: [{ reference: '#note' }],
};

describe('chartCopy', () => {
  it('finds the Communications the copy must refer to by their EHR ids', () => {
    expect(referencedCommunications(message, OURS).sort()).toEqual(['header', 'm1']);
  });

  it('keys the copy with our identifier and leaves id and server-assigned meta to the EHR', () => {
    const copy = chartCopy(message, { ourFhirBase: OURS, ehrIds: new Map([['header', 'H'], ['m1', 'M1']]) }) as Communication;
    expect(copy.id).toBeUndefined();
    expect(copy.meta).toEqual({ security: message.meta!.security });
    expect(copy.identifier).toEqual([{ system: 'urn:carethread:resource', value: 'Communication/m2' }]);
    expect(chartQuery('Communication', 'm2')).toEqual({ identifier: 'urn:carethread:resource|Communication/m2' });
    expect(copy.payload![0]).toEqual({ contentString: 'See the photo.' });
  });

  it('translates thread references, keeps shared ones, and points at us for the rest', () => {
    const copy = chartCopy(message, { ourFhirBase: OURS, ehrIds: new Map([['header', 'H'], ['m1', 'M1']]) }) as Communication;
    expect(copy.partOf).toEqual([{ reference: 'Communication/H' }]);
    expect(copy.inResponseTo).toEqual([{ reference: 'Communication/M1' }]);
    expect(copy.subject).toEqual({ reference: 'Patient/p1' });
    expect(copy.encounter).toEqual({ reference: 'Encounter/e1' });
    expect(copy.sender).toEqual({ reference: `${OURS}/RelatedPerson/rp1` });
    expect(copy.recipient).toEqual([
      { reference: 'Practitioner/d1' },
      { reference: `${OURS}/CareTeam/pool` },
      { reference: 'https://elsewhere.example/fhir/Group/g' },
    ]);
    expect(copy.payload![1].contentAttachment!.url).toBe(`${OURS}/Binary/b1`);
    expect(copy.about).toEqual([{ reference: '#note' }]);
    // The original is untouched.
    expect(message.partOf).toEqual([{ reference: 'Communication/header' }]);
  });

  it('refers at us to a Communication that is never delivered (an imported one)', () => {
    const copy = chartCopy(message, { ourFhirBase: OURS, ehrIds: new Map([['header', 'H']]) }) as Communication;
    expect(copy.inResponseTo).toEqual([{ reference: `${OURS}/Communication/m1` }]);
  });

  it('keys a Provenance (which has no identifier in R4) with a tag', () => {
    const provenance: Provenance = {
      resourceType: 'Provenance',
      id: 'pv1',
      meta: { versionId: '1', lastUpdated: '2025-01-02T03:04:05.000Z' },
      target: [{ reference: 'Communication/m2' }, { reference: 'Patient/p1' }],
      recorded: '2025-01-02T03:04:05.000Z',
      agent: [{ who: { reference: 'Practitioner/d1' }, onBehalfOf: { reference: 'Practitioner/d2' } }],
    };
    const copy = chartCopy(provenance, { ourFhirBase: OURS, ehrIds: new Map([['m2', 'M2']]) }) as Provenance;
    expect(copy.meta).toEqual({ tag: [{ system: 'urn:carethread:resource', code: 'Provenance/pv1' }] });
    expect((copy as { identifier?: unknown }).identifier).toBeUndefined();
    expect(copy.target).toEqual([{ reference: 'Communication/M2' }, { reference: 'Patient/p1' }]);
    expect(copy.agent).toEqual(provenance.agent);
    expect(chartQuery('Provenance', 'pv1')).toEqual({ _tag: 'urn:carethread:resource|Provenance/pv1' });
  });
});
