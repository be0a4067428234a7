-- The inbox: persistent notifications and their read state (SQLite).
-- Times are Unix milliseconds. See docs/sse.md, "Persistent events".

-- One row per notification, however many users receive it.
CREATE TABLE notifications (
    -- AUTOINCREMENT: ids are never reused, even after every row was
    -- deleted, so a browser's id cursor stays meaningful.
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    -- 0: the users named by `inbox` rows; 1: every user (a broadcast,
    -- which has no per-user rows until someone reads it).
    audience     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- NULL while a transactional send's row waits to be published.
    published_at BIGINT
);
CREATE INDEX notifications_unpublished ON notifications (id) WHERE published_at IS NULL;
CREATE INDEX notifications_broadcasts ON notifications (id) WHERE audience = 1;
CREATE INDEX notifications_created_at ON notifications (created_at);

-- Who received what, and whether they read it. Broadcasts get a row
-- only when one user reads one of them.
CREATE TABLE inbox (
    user_id         TEXT NOT NULL,
    notification_id BIGINT NOT NULL,
    read_at         BIGINT,
    PRIMARY KEY (user_id, notification_id)
) WITHOUT ROWID;
CREATE INDEX inbox_notification ON inbox (notification_id);

-- Per user: every broadcast up to `read_upto` is read ("mark all read");
-- broadcasts up to `since` were sent before the account existed and are
-- not shown to it.
CREATE TABLE inbox_marks (
    user_id   TEXT PRIMARY KEY,
    read_upto BIGINT NOT NULL,
    read_at   BIGINT NOT NULL,
    since     BIGINT NOT NULL DEFAULT 0
);
