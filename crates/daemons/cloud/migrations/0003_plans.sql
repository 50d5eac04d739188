-- Plans and subscriptions (issue 16, point 3): the paid plans, what a subscription needs to
-- follow a payment provider (Stripe's event shape, docs/cloud.md), the record of the provider's
-- events (each applied once), and "the user's plan now", which falls back to free.

-- The paid plans. Their limits are the operator's to tune (UPDATE subscription_plans ...); the
-- provider's price names the plan by its lookup_key, which is the plan's name.
INSERT INTO subscription_plans (name, monthly_price_cents, snapshot_downloads_per_month,
                                snapshot_bytes_per_month, max_devices, coins_supported, priority_support)
VALUES ('hobbyist', 500, 5, 500 * 1024::bigint * 1024 * 1024, 2, 2, FALSE),
       ('pro', 1500, 30, 4096 * 1024::bigint * 1024 * 1024, 5, 4, TRUE);

-- expires_at (from 0001) is the end of the paid period: the provider's current_period_end, or
-- the end an admin gave (NULL: no end).
ALTER TABLE subscriptions
    ADD COLUMN current_period_start TIMESTAMPTZ,
    -- The provider's customer: how later events (invoice.paid, a new subscription) find the user.
    ADD COLUMN provider_customer_id VARCHAR(255),
    -- Who set the row last: the provider's webhook or an admin (`minebox-cloud admin grant`).
    ADD COLUMN source VARCHAR(10) NOT NULL DEFAULT 'provider' CHECK (source IN ('provider', 'admin')),
    -- The `created` time of the last provider event applied: an older event arriving late
    -- (providers do not promise order) changes nothing.
    ADD COLUMN provider_event_at TIMESTAMPTZ,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW();
-- One provider customer is one MineBox user.
CREATE UNIQUE INDEX idx_subscriptions_customer ON subscriptions (provider_customer_id)
    WHERE provider_customer_id IS NOT NULL;

-- Every provider event applied, by its id: a redelivered event (providers retry until they get
-- a 2xx) is answered and changes nothing. Only the owner reads and writes it.
CREATE TABLE billing_events (
    event_id VARCHAR(255) PRIMARY KEY,
    event_type VARCHAR(100) NOT NULL,
    event_created TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    user_id UUID REFERENCES users (id) ON DELETE SET NULL,
    -- What it did: 'applied', 'ignored' (a type or subscription that does not concern a plan),
    -- 'stale' (older than what was applied).
    outcome VARCHAR(10) NOT NULL
);

-- A user's plan changes only through the webhook and the admin commands, both as the owner:
-- SQL run as the API's role (a bug, an injection) cannot give its user a paid plan.
REVOKE INSERT, UPDATE, DELETE ON subscriptions FROM minebox_api;

-- The plan `p_user` has now, with its limits: the subscription's plan while its status is
-- active or past_due (the provider is still retrying the payment) and its period has not
-- ended; else free. Also says what the subscription is, lapsed or not. SECURITY INVOKER: called
-- by the API's role, row-level security shows it the context's own subscription only.
CREATE FUNCTION minebox_effective_plan(p_user uuid)
    RETURNS TABLE (plan text, monthly_price_cents integer, snapshot_downloads_per_month integer,
                   snapshot_bytes_per_month bigint, max_devices integer, coins_supported integer,
                   subscribed_plan text, subscription_status text, period_end timestamptz,
                   subscription_source text, in_effect boolean)
    LANGUAGE sql STABLE SET search_path = public, pg_temp
    AS $$
    WITH s AS (
        SELECT sp.name AS sub_plan, s.status, s.expires_at, s.source,
               s.status IN ('active', 'past_due') AND (s.expires_at IS NULL OR s.expires_at > now()) AS live
          FROM subscriptions s JOIN subscription_plans sp ON sp.id = s.plan_id
         WHERE s.user_id = p_user
    )
    SELECT p.name::text, p.monthly_price_cents, p.snapshot_downloads_per_month, p.snapshot_bytes_per_month,
           p.max_devices, p.coins_supported, s.sub_plan::text, s.status::text, s.expires_at, s.source::text,
           coalesce(s.live, FALSE)
      FROM subscription_plans p LEFT JOIN s ON TRUE
     WHERE p.name = CASE WHEN coalesce(s.live, FALSE) THEN s.sub_plan ELSE 'free' END
$$;
REVOKE ALL ON FUNCTION minebox_effective_plan(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION minebox_effective_plan(uuid) TO minebox_api;
