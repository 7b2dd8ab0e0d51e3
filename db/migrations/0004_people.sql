-- People: a display name each user may set, and the prefix lookups of the people picker
-- (GET /users?prefix=). display_key is the display name as the API folds it for comparison
-- (full-width forms mapped, NFC, case-folded: api/username.h), as username_key is the
-- username's; both are searched by prefix, so each has an index that LIKE 'prefix%' can use
-- whatever the database's collation.
ALTER TABLE users ADD COLUMN display_name text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN display_key text NOT NULL DEFAULT '';
CREATE INDEX users_username_key_prefix ON users (username_key text_pattern_ops);
CREATE INDEX users_display_key_prefix ON users (display_key text_pattern_ops)
    WHERE display_key <> '';
