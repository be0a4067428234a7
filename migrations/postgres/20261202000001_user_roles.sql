-- Roles are granted to existing accounts by the operator
-- (`sse_notify admin grant <username>`), never by name at sign-up.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
