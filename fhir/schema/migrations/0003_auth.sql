-- The SMART authorization server's state. Secrets, codes and tokens are stored only as
-- SHA-256 hashes (passwords as scrypt hashes); a database dump yields nothing usable.

CREATE TABLE auth_keys (
  kid text PRIMARY KEY,
  alg text NOT NULL,
  private_jwk text NOT NULL,
  public_jwk text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Set when a newer key takes over signing; the key stays published until its tokens expire.
  retired_at timestamptz
);

CREATE TABLE auth_clients (
  client_id text PRIMARY KEY,
  client_name text,
  auth_method text NOT NULL,
  secret_hash text,
  jwks text,
  jwks_uri text,
  redirect_uris text[] NOT NULL DEFAULT '{}',
  scopes text[] NOT NULL DEFAULT '{}',
  -- Administrator rights: register clients, create users and EHR launches.
  admin boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_users (
  id text PRIMARY KEY,
  username text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  fhir_user text NOT NULL,
  -- Further RelatedPerson resources a representative acts through (one per patient).
  represents text[] NOT NULL DEFAULT '{}',
  roles text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_launches (
  launch_hash text PRIMARY KEY,
  client_id text,
  patient text,
  encounter text,
  fhir_user text NOT NULL,
  need_patient_banner boolean NOT NULL DEFAULT true,
  created_by text NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

CREATE TABLE auth_grants (
  id text PRIMARY KEY,
  client_id text NOT NULL,
  fhir_user text,
  -- The login account that granted it (absent for EHR launches): its roles go into tokens.
  user_id text,
  scope text NOT NULL,
  patient text,
  encounter text,
  need_patient_banner boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);
CREATE INDEX auth_grants_revoked ON auth_grants (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE auth_codes (
  code_hash text PRIMARY KEY,
  grant_id text NOT NULL REFERENCES auth_grants (id),
  client_id text NOT NULL,
  redirect_uri text NOT NULL,
  code_challenge text NOT NULL,
  nonce text,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);

CREATE TABLE auth_refresh_tokens (
  token_hash text PRIMARY KEY,
  grant_id text NOT NULL REFERENCES auth_grants (id),
  client_id text NOT NULL,
  scope text NOT NULL,
  expires_at timestamptz NOT NULL,
  rotated_at timestamptz
);

CREATE TABLE auth_revoked_tokens (
  jti text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);

-- Client-assertion ids seen within their lifetime (replay protection).
CREATE TABLE auth_assertion_ids (
  client_id text NOT NULL,
  jti text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (client_id, jti)
);
