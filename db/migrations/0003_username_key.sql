-- Usernames that look alike are one username (api/username.h): each user gets the key the API
-- makes from a name (full-width forms mapped, NFC, case-folded), unique across users, and
-- the username itself stays as its owner typed it, shown as it is.
ALTER TABLE users ADD COLUMN username_key text;

-- For the names already there, Postgres' own NFKC and lower() stand in for the API's key:
-- the same for every name of letters and digits but a handful of letters whose case folding
-- is not their lower case (ß, ﬃ, ...). The API matches those by their exact key from now on.
UPDATE users SET username_key = lower(normalize(username, NFKC));

-- Names that now collide: the oldest account keeps its name, each other one gets the start
-- of its user id appended (its owner can pick another name later).
WITH ranked AS (
    SELECT user_id,
           row_number() OVER (PARTITION BY username_key ORDER BY created_at, user_id) AS n
    FROM users
)
UPDATE users u
SET username = left(u.username, 40) || '_' || substr(u.user_id, 3, 12),
    username_key = lower(normalize(left(u.username, 40) || '_' || substr(u.user_id, 3, 12), NFKC))
FROM ranked r
WHERE r.user_id = u.user_id AND r.n > 1;

ALTER TABLE users ALTER COLUMN username_key SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_username_key_unique UNIQUE (username_key);
