/**
 * The authorization endpoint's flow (SMART App Launch 2.2): validate the request, then
 * either redeem an EHR launch (the EHR already authenticated its user) or log the user in,
 * let them narrow the scopes (and pick a patient, for a representative), and answer the
 * app's redirect URI with a single-use code. The request's validated parameters travel
 * between the pages inside a short-lived token signed by this server, so a form post cannot
 * change what was asked.
 */
import { jwtVerify, SignJWT, createLocalJWKSet } from 'jose';
import type { Resource } from '@medplum/fhirtypes';
import { systemContext } from '../fhir/access.js';
import type { Client } from './clients.js';
import { SIGNING_ALG } from './keys.js';
import { grantable, narrow, splitScope } from './scopes.js';
import type { AuthServices } from './services.js';
import type { UserAccount } from './users.js';

export interface AuthorizeParams {
  response_type?: string;
  client_id?: string;
  redirect_uri?: string;
  scope?: string;
  state?: string;
  aud?: string;
  code_challenge?: string;
  code_challenge_method?: string;
  launch?: string;
  nonce?: string;
}

/** A validated request, as carried between the login and consent pages. */
export interface PendingAuthorization {
  clientId: string;
  clientName?: string;
  redirectUri: string;
  state: string;
  codeChallenge: string;
  nonce?: string;
  /** Scopes the client may be granted, of those requested. */
  scopes: string[];
  /** After login: the user and the patients they may choose between. */
  userId?: string;
  patientChoices?: { reference: string; label: string }[];
}

export type AuthorizeStep =
  | { kind: 'error-page'; message: string }
  | { kind: 'redirect'; url: string }
  | { kind: 'login'; pending: string; clientName: string; error?: string }
  | {
      kind: 'consent';
      pending: string;
      clientName: string;
      scopes: string[];
      patientChoices: { reference: string; label: string }[];
      /** Where the consent form's answer redirects (the page must allow it as a form action). */
      redirectOrigin: string;
    };

const PENDING_SECONDS = 600;

export class AuthorizeFlow {
  constructor(private readonly services: AuthServices) {}

  async start(params: AuthorizeParams): Promise<AuthorizeStep> {
    const client = params.client_id ? await this.services.clients.get(params.client_id) : undefined;
    if (!client) {
      return { kind: 'error-page', message: 'Unknown client_id: this application is not registered here.' };
    }
    if (!params.redirect_uri || !client.redirectUris.includes(params.redirect_uri)) {
      return { kind: 'error-page', message: 'The redirect_uri is not one registered for this application.' };
    }
    const redirect = (error: string, description: string): AuthorizeStep => ({
      kind: 'redirect',
      url: withQuery(params.redirect_uri!, { error, error_description: description, state: params.state }),
    });
    if (params.response_type !== 'code') {
      return redirect('unsupported_response_type', 'response_type must be code');
    }
    if (!params.state) {
      return redirect('invalid_request', 'state is required');
    }
    if (params.code_challenge_method !== 'S256' || !params.code_challenge || !/^[A-Za-z0-9\-_]{43,128}$/.test(params.code_challenge)) {
      return redirect('invalid_request', 'PKCE is required: code_challenge with code_challenge_method=S256');
    }
    if (!params.aud || params.aud.replace(/\/$/, '') !== this.services.settings.fhirBase) {
      return redirect('invalid_request', 'aud must be this server’s FHIR base URL');
    }
    const scopes = grantable(splitScope(params.scope), client.scopes).filter((s) => !s.startsWith('system/'));
    if (!scopes.length) {
      return redirect('invalid_scope', 'None of the requested scopes may be granted to this application');
    }
    const pending: PendingAuthorization = {
      clientId: client.clientId,
      clientName: client.clientName,
      redirectUri: params.redirect_uri,
      state: params.state,
      codeChallenge: params.code_challenge,
      nonce: params.nonce,
      scopes,
    };
    if (params.launch !== undefined) {
      return this.ehrLaunch(client, pending, params.launch);
    }
    return { kind: 'login', pending: await this.seal(pending), clientName: client.clientName ?? client.clientId };
  }

  /** Checks credentials; on success, the consent step (or a login page with a generic error). */
  async login(sealed: string, username: string, password: string, address: string): Promise<AuthorizeStep> {
    const pending = await this.open(sealed);
    if (!pending) {
      return { kind: 'error-page', message: 'This sign-in page has expired. Start again from the application.' };
    }
    const user = await this.services.users.authenticate(username, password, address);
    await this.services.audit.enqueue(
      { system: false, fhirUser: user?.fhirUser, clientId: pending.clientId, address },
      { interaction: 'login', outcome: user ? '0' : '4', detail: user ? 'login succeeded' : 'login failed' }
    );
    if (!user) {
      return { kind: 'login', pending: sealed, clientName: pending.clientName ?? pending.clientId, error: 'Invalid username or password.' };
    }
    const patientChoices = await this.patientChoices(user);
    const consent: PendingAuthorization = { ...pending, userId: user.id, patientChoices };
    return {
      kind: 'consent',
      pending: await this.seal(consent),
      clientName: pending.clientName ?? pending.clientId,
      scopes: pending.scopes,
      patientChoices: needsPatient(pending.scopes) ? patientChoices : [],
      redirectOrigin: new URL(pending.redirectUri).origin,
    };
  }

  /** The user's decision: approve some of the scopes (and a patient), or deny. */
  async consent(sealed: string, approve: boolean, chosenScopes: string[], chosenPatient: string | undefined): Promise<AuthorizeStep> {
    const pending = await this.open(sealed);
    if (!pending?.userId) {
      return { kind: 'error-page', message: 'This consent page has expired. Start again from the application.' };
    }
    if (!approve) {
      return { kind: 'redirect', url: withQuery(pending.redirectUri, { error: 'access_denied', error_description: 'The user denied access', state: pending.state }) };
    }
    const user = await this.services.users.byId(pending.userId);
    const scopes = narrow(pending.scopes, chosenScopes);
    if (!user || !scopes.length) {
      return { kind: 'redirect', url: withQuery(pending.redirectUri, { error: 'access_denied', error_description: 'No scopes were approved', state: pending.state }) };
    }
    let patient: string | undefined;
    if (needsPatient(scopes)) {
      const choices = pending.patientChoices ?? [];
      patient = choices.length === 1 ? choices[0].reference : choices.find((c) => c.reference === chosenPatient)?.reference;
      if (!patient) {
        return { kind: 'redirect', url: withQuery(pending.redirectUri, { error: 'access_denied', error_description: 'No patient was selected', state: pending.state }) };
      }
    }
    return this.issueCode(pending, scopes, user.fhirUser, patient?.replace(/^Patient\//, ''), undefined, true, user.id);
  }

  private async ehrLaunch(client: Client, pending: PendingAuthorization, launch: string): Promise<AuthorizeStep> {
    const context = await this.services.launches.redeem(launch, client.clientId);
    if (!context) {
      return { kind: 'redirect', url: withQuery(pending.redirectUri, { error: 'invalid_request', error_description: 'Unknown, expired or used launch', state: pending.state }) };
    }
    await this.services.audit.enqueue(
      { system: false, fhirUser: context.fhirUser, clientId: client.clientId },
      { interaction: 'launch', outcome: '0', patients: context.patient ? [`Patient/${context.patient}`] : [] }
    );
    return this.issueCode(pending, pending.scopes, context.fhirUser, context.patient, context.encounter, context.needPatientBanner);
  }

  private async issueCode(
    pending: PendingAuthorization,
    scopes: string[],
    fhirUser: string,
    patient: string | undefined,
    encounter: string | undefined,
    needPatientBanner = true,
    userId?: string
  ): Promise<AuthorizeStep> {
    const grant = await this.services.grants.create({
      clientId: pending.clientId,
      fhirUser,
      userId,
      scope: scopes.join(' '),
      patient,
      encounter,
      needPatientBanner,
    });
    const code = await this.services.grants.issueCode(grant, pending.redirectUri, pending.codeChallenge, pending.nonce);
    return { kind: 'redirect', url: withQuery(pending.redirectUri, { code, state: pending.state }) };
  }

  /** The patients a user may act for: themselves, or those they represent. */
  private async patientChoices(user: UserAccount): Promise<{ reference: string; label: string }[]> {
    if (user.fhirUser.startsWith('Patient/')) {
      return [{ reference: user.fhirUser, label: await this.label(user.fhirUser) }];
    }
    if (!user.fhirUser.startsWith('RelatedPerson/')) {
      return [];
    }
    const choices: { reference: string; label: string }[] = [];
    for (const related of [user.fhirUser, ...user.represents]) {
      const patient = await this.relatedPatient(related);
      if (patient && !choices.some((c) => c.reference === patient)) {
        choices.push({ reference: patient, label: await this.label(patient) });
      }
    }
    return choices;
  }

  private async relatedPatient(reference: string): Promise<string | undefined> {
    const [type, id] = reference.split('/');
    try {
      const stored = await this.services.store.read(systemContext(), type, id);
      return (JSON.parse(stored.content) as { patient?: { reference?: string } }).patient?.reference;
    } catch {
      return undefined;
    }
  }

  private async label(reference: string): Promise<string> {
    const [type, id] = reference.split('/');
    try {
      const resource = JSON.parse((await this.services.store.read(systemContext(), type, id)).content) as Resource & {
        name?: { text?: string; given?: string[]; family?: string }[];
      };
      const name = resource.name?.[0];
      return name?.text || [name?.given?.join(' '), name?.family].filter(Boolean).join(' ') || reference;
    } catch {
      return reference;
    }
  }

  private async seal(pending: PendingAuthorization): Promise<string> {
    const { kid, key } = this.services.keys.signingKey;
    return new SignJWT({ pending })
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'carethread-authz+jwt' })
      .setIssuer(this.services.settings.fhirBase)
      .setAudience(`${this.services.settings.baseUrl}/auth/authorize`)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + PENDING_SECONDS)
      .sign(key);
  }

  private async open(sealed: string): Promise<PendingAuthorization | undefined> {
    try {
      const { payload } = await jwtVerify(sealed, createLocalJWKSet(this.services.keys.jwks()), {
        issuer: this.services.settings.fhirBase,
        audience: `${this.services.settings.baseUrl}/auth/authorize`,
        typ: 'carethread-authz+jwt',
      });
      return payload.pending as PendingAuthorization;
    } catch {
      return undefined;
    }
  }
}

function needsPatient(scopes: string[]): boolean {
  return scopes.some((s) => s.startsWith('patient/') || s === 'launch/patient');
}

export function withQuery(url: string, params: Record<string, string | undefined>): string {
  const target = new URL(url);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) {
      target.searchParams.set(name, value);
    }
  }
  return target.toString();
}
