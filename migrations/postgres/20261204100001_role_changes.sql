-- Role changes (`sse_notify admin grant|revoke`), one row each, so that
-- every server process ends the open streams still tagged with the old
-- role (src/ops/roles.rs). Polled by id; rows older than an hour are
-- deleted. `changed_at` is Unix seconds.
CREATE TABLE role_changes (
    id         BIGSERIAL PRIMARY KEY,
    user_id    TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
