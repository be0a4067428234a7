-- Who sent each of a user's rows, so that the per-user cap evicts from
-- the senders holding the most of that user's rows, never from whoever
-- sent the oldest (see docs/sse.md, "Retention and limits").
-- NULL: a send with no user behind it (the backend, a transactional
-- send; rows stored before this column existed), and broadcast read marks.
ALTER TABLE inbox ADD COLUMN sender TEXT;
-- The cap's per-sender counts and per-sender deletes read one range each.
CREATE INDEX inbox_user_sender ON inbox (user_id, sender, notification_id);
