-- Everything that leaves the process goes through the outbox: written in the same
-- transaction as the change that causes it, delivered by a worker with retries and backoff.
CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  kind text NOT NULL,
  -- One delivery per key: enqueueing the same key twice is a no-op.
  idempotency_key text NOT NULL UNIQUE,
  -- Deliveries sharing an ordering key go out in id order (an EHR receives a thread in order).
  ordering_key text,
  payload text NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  -- The resource the delivery is about (for delivery status through the API).
  subject text,
  created_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_ordering ON outbox (ordering_key, id) WHERE status <> 'delivered';
CREATE INDEX outbox_subject ON outbox (subject);

-- How a patient wants to hear about new messages: email, sms or none.
CREATE TABLE notification_preferences (
  patient text PRIMARY KEY,
  channel text NOT NULL CHECK (channel IN ('email', 'sms', 'none')),
  updated_at timestamptz NOT NULL DEFAULT now()
);
