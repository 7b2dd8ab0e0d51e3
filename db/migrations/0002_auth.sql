-- kchat-api's accounts: password hashes and refresh tokens. Written by the API alone; not
-- part of the read model (accounts are not events), so a rebuild never touches them.

-- One Argon2id string (libsodium crypto_pwhash_str: algorithm, parameters, salt, hash) per user.
CREATE TABLE credentials (
    user_id       text PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Refresh tokens are opaque; only their SHA-256 (hex) is kept. Every token rotated from one
-- login shares a family_id. A token is live while used_at and revoked_at are NULL and it has
-- not expired; presenting a used one revokes its whole family.
CREATE TABLE refresh_tokens (
    token_hash text        PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    family_id  text        NOT NULL,
    user_id    text        NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
