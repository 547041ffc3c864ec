-- Officials' accounts: people log in with a login and a password (argon2 hash), keys stay for
-- machines. Accounts are disabled, never deleted, so the history that names them stays true.
CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login          text NOT NULL UNIQUE CHECK (login = lower(login) AND login <> ''),
    name           text NOT NULL CHECK (name <> ''),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('operator', 'agency', 'leader', 'admin')),
    agency         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    password_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz,
    CHECK (role <> 'agency' OR agency IS NOT NULL)
);

CREATE INDEX users_agency ON users (agency) WHERE disabled_at IS NULL;

-- A page session belongs to a key or to a user, never both.
ALTER TABLE sessions ALTER COLUMN key_id DROP NOT NULL;
ALTER TABLE sessions ADD COLUMN user_id bigint REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE sessions ADD CONSTRAINT sessions_one_holder CHECK ((key_id IS NULL) <> (user_id IS NULL));
CREATE INDEX sessions_user_id ON sessions (user_id) WHERE revoked_at IS NULL;
