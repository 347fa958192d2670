import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.stop({ dropDatabase: true });
});

describe('smoke', () => {
  it('creates and reads a patient', async () => {
    const created = await server.request
      .post('/fhir/Patient')
      .set('content-type', 'application/fhir+json')
      .send({ resourceType: 'Patient', name: [{ family: 'Müller', given: ['Ann'] }] });
    expect(created.status).toBe(201);
    const read = await server.request.get(`/fhir/Patient/${created.body.id}`);
    expect(read.status).toBe(200);
    expect(read.body.name[0].family).toBe('Müller');
    const search = await server.request.get('/fhir/Patient?name=muller');
    expect(search.body.entry).toHaveLength(1);
  });
});
