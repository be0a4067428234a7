-- Service tokens: other services publish (and mint stream tokens) with
-- these. Only the SHA-256 of a secret is kept; the secret itself is shown
-- once, when it is created. A revoked token keeps its row (for `token
-- list`) until a token of the same name replaces it.
CREATE TABLE sse_service_tokens (
    name TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    -- Comma-separated: publish, subscribe.
    scopes TEXT NOT NULL,
    rate_per_minute BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- The key stream tokens are signed with when the host configures none:
-- made once, shared by every process on this database.
CREATE TABLE sse_signing_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_hex TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
