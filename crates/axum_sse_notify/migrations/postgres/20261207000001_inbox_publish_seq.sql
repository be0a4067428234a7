-- The order stored notifications were published in, as a number that
-- outlives every process: stream ids carry it (`<event id>.<seq>`), so a
-- client coming back after a restart says which stored notifications it
-- has, and gets exactly the ones after (see docs/sse.md, "Restarts").
-- NULL while a transactional send's row waits to be published.
ALTER TABLE notifications ADD COLUMN published_seq BIGINT;
-- Rows published before this column existed keep their order: by id.
UPDATE notifications SET published_seq = id WHERE published_at IS NOT NULL;
CREATE INDEX notifications_published_seq ON notifications (published_seq);

-- The last number handed out. One row; taking numbers locks it until the
-- taker commits, so numbers are committed in the order they were taken.
CREATE TABLE inbox_publish_seq (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last BIGINT NOT NULL
);
INSERT INTO inbox_publish_seq (id, last)
    SELECT 1, COALESCE(MAX(published_seq), 0) FROM notifications;
