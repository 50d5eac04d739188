-- Accounts (issue 16, point 2): web sessions, API tokens, single-use mail tokens, and the
-- record of failed logins the throttle counts. Secrets are stored only as SHA-256 hashes (hex)
-- of random 256-bit tokens: a copy of the database logs no one in.

CREATE TABLE sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash CHAR(64) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX idx_sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    -- The token's first characters, shown in lists so the owner can tell tokens apart.
    prefix VARCHAR(12) NOT NULL,
    token_hash CHAR(64) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX idx_api_tokens_user ON api_tokens (user_id);

-- Links mailed for email verification and password reset: single use, expiring.
CREATE TABLE email_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose VARCHAR(10) NOT NULL CHECK (purpose IN ('verify', 'reset')),
    token_hash CHAR(64) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX idx_email_tokens_user ON email_tokens (user_id);

-- Failed logins, keyed by a hash of 'account:<email>' or 'ip:<address>' (no addresses or
-- emails in clear). Not per-user data: a failure for an unknown email counts too.
CREATE TABLE login_failures (
    key_hash CHAR(64) NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_login_failures_key ON login_failures (key_hash, failed_at);

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY sessions_own ON sessions USING (user_id = (SELECT minebox_user()));
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_tokens_own ON api_tokens USING (user_id = (SELECT minebox_user()));
ALTER TABLE email_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY email_tokens_own ON email_tokens USING (user_id = (SELECT minebox_user()));

GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, api_tokens, email_tokens, login_failures TO minebox_api;

-- Before the API knows who is asking, it may only learn a user id through these functions,
-- each answering one narrow question (they run as the owner, past row-level security).

-- The account an email logs in to: its id, password hash and whether it is verified.
CREATE FUNCTION minebox_login_lookup(p_email text)
    RETURNS TABLE (user_id uuid, password_hash text, email_verified boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id, password_hash, email_verified FROM users WHERE lower(email) = lower(p_email) $$;

-- The user a live session (p_kind 'session') or API token ('api') belongs to; NULL if the
-- token is unknown, expired or revoked. Marks an API token used.
CREATE FUNCTION minebox_token_user(p_kind text, p_hash text)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    owner_id uuid;
BEGIN
    IF p_kind = 'session' THEN
        SELECT s.user_id INTO owner_id FROM sessions s
         WHERE s.token_hash = p_hash AND s.revoked_at IS NULL AND s.expires_at > now();
    ELSIF p_kind = 'api' THEN
        UPDATE api_tokens t SET last_used_at = now()
         WHERE t.token_hash = p_hash AND t.revoked_at IS NULL
        RETURNING t.user_id INTO owner_id;
    END IF;
    RETURN owner_id;
END
$$;

-- Takes a mailed token: 'ok' (and marks it used, so it works once), or 'used', 'expired',
-- 'unknown' (also for a token of the other purpose), with its user when known.
CREATE FUNCTION minebox_take_email_token(p_purpose text, p_hash text)
    RETURNS TABLE (user_id uuid, outcome text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    t email_tokens%ROWTYPE;
BEGIN
    -- FOR UPDATE: two requests with one token cannot both find it unused.
    SELECT * INTO t FROM email_tokens e WHERE e.token_hash = p_hash AND e.purpose = p_purpose FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::uuid, 'unknown'::text;
    ELSIF t.used_at IS NOT NULL THEN
        RETURN QUERY SELECT t.user_id, 'used'::text;
    ELSIF t.expires_at <= now() THEN
        RETURN QUERY SELECT t.user_id, 'expired'::text;
    ELSE
        UPDATE email_tokens SET used_at = now() WHERE id = t.id;
        RETURN QUERY SELECT t.user_id, 'ok'::text;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION minebox_login_lookup(text), minebox_token_user(text, text),
    minebox_take_email_token(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION minebox_login_lookup(text), minebox_token_user(text, text),
    minebox_take_email_token(text, text) TO minebox_api;
