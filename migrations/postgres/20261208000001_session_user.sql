-- The account a session is signed in to, beside its data: loading a
-- session then reads the account's role in the same query (one query per
-- request instead of two). Sessions signed in before this have it filled
-- from their data.
ALTER TABLE sessions ADD COLUMN user_id TEXT;
UPDATE sessions SET user_id = data::json ->> 'user_id';
