-- Single sign-on: an official may log in through the province's OpenID provider. The provider's
-- person (issuer + subject) is linked to one account; such an account may have no password.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;

CREATE TABLE user_identities (
    issuer         text NOT NULL,
    subject        text NOT NULL,
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL,
    last_login_at  timestamptz NOT NULL,
    PRIMARY KEY (issuer, subject),
    UNIQUE (user_id, issuer)
);

-- A login begun at the provider and not yet back: what the callback must find (the state
-- is also in the browser's cookie; the row is taken once). Rows older than the login form's
-- lifetime are deleted when a new login begins.
CREATE TABLE oidc_pending (
    id_hash        text PRIMARY KEY,
    state          text NOT NULL,
    nonce          text NOT NULL,
    code_verifier  text NOT NULL,
    redirect_uri   text NOT NULL,
    next_path      text,
    created_at     timestamptz NOT NULL
);
