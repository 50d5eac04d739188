-- Device pairing (issue 16, point 4): a box proves it holds an Ed25519 key by signing its
-- requests (the service checks the signature; docs/cloud.md, "Devices and pairing"), gets a
-- short pairing code, and the user enters the code in their account to bind the box to it.

-- When the box was bound to its user (NULL while unlinked).
ALTER TABLE devices ADD COLUMN linked_at TIMESTAMPTZ;

-- Pairing codes, stored as SHA-256 of the normalized code (no dash, upper case). One live code
-- per device: a new pairing start deletes the device's earlier ones. No grant to the API's
-- role: it reaches them only through the functions below.
CREATE TABLE device_pairings (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    code_hash CHAR(64) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX idx_device_pairings_device ON device_pairings (device_id);
ALTER TABLE device_pairings ENABLE ROW LEVEL SECURITY;

-- The nonces of signed device requests seen within the replay window: a request whose
-- (key, nonce) is here already is a replay. Keyed by the public key (hex), not the device, as a
-- box's first request comes before its row exists. The daily upkeep forgets those past the
-- window.
CREATE TABLE device_nonces (
    device_key CHAR(64) NOT NULL,
    nonce CHAR(32) NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (device_key, nonce)
);
CREATE INDEX idx_device_nonces_seen ON device_nonces (seen_at);
ALTER TABLE device_nonces ENABLE ROW LEVEL SECURITY;

-- A box speaks for itself, not for a user, so its requests cannot go through the user context.
-- These functions (as the owner, past row-level security) each answer one narrow question about
-- the box with key `p_key`; the service calls them only after checking the request's signature
-- by that key.

-- Records a signed request's nonce; FALSE if it was seen already (a replay).
CREATE FUNCTION minebox_device_nonce(p_key text, p_nonce text)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    INSERT INTO device_nonces (device_key, nonce) VALUES (p_key, p_nonce) ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;

-- Forgets what a box reported while bound to its user, so whoever links it next sees none of
-- it: its coins, metrics, daily stats and blocks. Metered downloads stay the user's.
CREATE FUNCTION minebox_device_forget(p_device uuid)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    DELETE FROM device_coins WHERE device_id = p_device;
    DELETE FROM device_metrics WHERE device_id = p_device;
    DELETE FROM mining_stats_daily WHERE device_id = p_device;
    DELETE FROM blocks WHERE device_id = p_device;
    UPDATE snapshot_downloads SET device_id = NULL WHERE device_id = p_device;
    DELETE FROM device_pairings WHERE device_id = p_device;
    UPDATE devices SET user_id = NULL, linked_at = NULL, updated_at = now() WHERE id = p_device;
END
$$;

-- A box starts pairing: its row is made (or its name, model and version updated) and its new
-- code stored; earlier codes are dropped. Outcome 'ok', or 'linked' (bound already: nothing
-- changed) with the device id.
CREATE FUNCTION minebox_device_start_pairing(p_key text, p_name text, p_model text, p_version text,
                                             p_code_hash text, p_minutes integer)
    RETURNS TABLE (device_id uuid, outcome text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    d devices%ROWTYPE;
BEGIN
    INSERT INTO devices (device_fingerprint, name, hardware_type, version)
    VALUES (p_key, p_name, coalesce(p_model, 'raspberry_pi_5'), p_version)
    ON CONFLICT (device_fingerprint) DO NOTHING;
    SELECT * INTO d FROM devices WHERE device_fingerprint = p_key FOR UPDATE;
    IF d.user_id IS NOT NULL THEN
        RETURN QUERY SELECT d.id, 'linked'::text;
        RETURN;
    END IF;
    UPDATE devices SET name = coalesce(p_name, name), hardware_type = coalesce(p_model, hardware_type),
                       version = coalesce(p_version, version), last_seen_at = now(), updated_at = now()
     WHERE id = d.id;
    DELETE FROM device_pairings WHERE device_pairings.device_id = d.id;
    INSERT INTO device_pairings (device_id, code_hash, expires_at)
    VALUES (d.id, p_code_hash, now() + make_interval(mins => p_minutes));
    RETURN QUERY SELECT d.id, 'ok'::text;
END
$$;

-- What a box learns about itself: its id, the user's email if bound, and when its pending code
-- expires (seconds from now). No row: an unknown key. Marks the box seen.
CREATE FUNCTION minebox_device_status(p_key text)
    RETURNS TABLE (device_id uuid, email text, name text, code_expires_in bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    UPDATE devices SET last_seen_at = now() WHERE device_fingerprint = p_key;
    RETURN QUERY
    SELECT d.id, u.email::text, d.name::text,
           (SELECT ceil(extract(epoch FROM max(p.expires_at) - now()))::bigint FROM device_pairings p
             WHERE p.device_id = d.id AND p.used_at IS NULL AND p.expires_at > now())
      FROM devices d LEFT JOIN users u ON u.id = d.user_id
     WHERE d.device_fingerprint = p_key;
END
$$;

-- A box unlinks itself. Outcome 'unlinked' (it was bound), 'was_unlinked', or 'unknown'.
CREATE FUNCTION minebox_device_unlink(p_key text)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    d devices%ROWTYPE;
BEGIN
    SELECT * INTO d FROM devices WHERE device_fingerprint = p_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    PERFORM minebox_device_forget(d.id);
    RETURN CASE WHEN d.user_id IS NULL THEN 'was_unlinked' ELSE 'unlinked' END;
END
$$;

-- The context's user unlinks one of their boxes; FALSE if they have no box `p_device` (another
-- user's box is not theirs: nothing changes).
CREATE FUNCTION minebox_unlink_device(p_device uuid)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    me uuid := minebox_user();
BEGIN
    PERFORM 1 FROM devices WHERE id = p_device AND user_id = me FOR UPDATE;
    IF me IS NULL OR NOT FOUND THEN
        RETURN FALSE;
    END IF;
    PERFORM minebox_device_forget(p_device);
    RETURN TRUE;
END
$$;

-- The context's user enters a pairing code (its hash). Outcome 'ok' (the box is theirs now),
-- 'unknown', 'used', 'expired', or 'limit' (their plan's device limit is reached: nothing
-- changed), with the box and the plan's name and limit. The limit is read here, from the plan
-- in effect, so the caller cannot raise it.
CREATE FUNCTION minebox_claim_pairing(p_code_hash text)
    RETURNS TABLE (device_id uuid, outcome text, plan text, max_devices integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    me uuid := minebox_user();
    p device_pairings%ROWTYPE;
    plan_name text;
    plan_max integer;
    linked integer;
BEGIN
    IF me IS NULL THEN
        RETURN QUERY SELECT NULL::uuid, 'unknown'::text, NULL::text, NULL::integer;
        RETURN;
    END IF;
    -- One claim per user at a time, so two codes entered at once cannot both pass the limit.
    PERFORM 1 FROM users WHERE id = me FOR UPDATE;
    SELECT * INTO p FROM device_pairings dp WHERE dp.code_hash = p_code_hash FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::uuid, 'unknown'::text, NULL::text, NULL::integer;
        RETURN;
    ELSIF p.used_at IS NOT NULL THEN
        RETURN QUERY SELECT p.device_id, 'used'::text, NULL::text, NULL::integer;
        RETURN;
    ELSIF p.expires_at <= now() THEN
        RETURN QUERY SELECT p.device_id, 'expired'::text, NULL::text, NULL::integer;
        RETURN;
    END IF;
    SELECT e.plan, e.max_devices INTO plan_name, plan_max FROM minebox_effective_plan(me) e;
    SELECT count(*) INTO linked FROM devices d WHERE d.user_id = me;
    IF plan_max IS NOT NULL AND linked >= plan_max THEN
        RETURN QUERY SELECT p.device_id, 'limit'::text, plan_name, plan_max;
        RETURN;
    END IF;
    UPDATE device_pairings SET used_at = now() WHERE id = p.id;
    UPDATE devices SET user_id = me, linked_at = now(), updated_at = now()
     WHERE id = p.device_id AND user_id IS NULL;
    RETURN QUERY SELECT p.device_id, 'ok'::text, plan_name, plan_max;
END
$$;

REVOKE ALL ON FUNCTION minebox_device_nonce(text, text), minebox_device_forget(uuid),
    minebox_device_start_pairing(text, text, text, text, text, integer), minebox_device_status(text),
    minebox_device_unlink(text), minebox_unlink_device(uuid), minebox_claim_pairing(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION minebox_device_nonce(text, text),
    minebox_device_start_pairing(text, text, text, text, text, integer), minebox_device_status(text),
    minebox_device_unlink(text), minebox_unlink_device(uuid), minebox_claim_pairing(text) TO minebox_api;
