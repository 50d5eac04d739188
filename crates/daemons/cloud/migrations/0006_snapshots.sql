-- Snapshots through the cloud (issue 16, point 5; docs/cloud.md, "Snapshots through the cloud").

-- Publishers register snapshots with a bearer token an operator made with
-- `minebox-cloud admin publisher-token --name NAME`; only its SHA-256 is kept. No grant to the
-- API's role: registration runs over the owner's connection, which alone writes the catalogue.
CREATE TABLE publisher_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(100) NOT NULL UNIQUE,
    token_hash CHAR(64) NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    revoked_at TIMESTAMPTZ
);
ALTER TABLE publisher_tokens ENABLE ROW LEVEL SECURITY;

-- Who registered a snapshot.
ALTER TABLE snapshots ADD COLUMN registered_by VARCHAR(100);

-- Chunk URLs are asked for by name within one snapshot.
CREATE INDEX idx_snapshot_chunks_snapshot_hash ON snapshot_chunks (snapshot_id, checksum_sha256);

-- The chunks a download was given URLs for: each is metered once per download however often
-- the box asks again (a resumed download asks for what it still lacks).
CREATE TABLE snapshot_download_chunks (
    download_id UUID NOT NULL,
    chunk CHAR(64) NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    compressed_size_bytes INTEGER NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (download_id, chunk)
);
ALTER TABLE snapshot_download_chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY snapshot_download_chunks_own ON snapshot_download_chunks USING (user_id = (SELECT minebox_user()));
GRANT SELECT, INSERT ON snapshot_download_chunks TO minebox_api;

-- What the box said it fetched when it finished (the metered columns count the URLs given).
ALTER TABLE snapshot_downloads ADD COLUMN reported_chunks INTEGER, ADD COLUMN reported_bytes BIGINT;
