-- 0013 browser sessions of the review page (both flavours).
--
-- A session is created by a login and ends at logout, after `idle` without a request, or at
-- its absolute expiry, whichever comes first. Only the SHA-256 of the cookie's token is kept,
-- so a copy of this table logs nobody in. The CSRF token is per session and goes into every
-- form the page renders; a POST without it is refused.
CREATE TABLE web_sessions (
    token_sha256 text        PRIMARY KEY CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    username     text        NOT NULL,
    csrf         text        NOT NULL CHECK (length(csrf) >= 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    remote       text,
    CHECK (expires_at > created_at)
);
CREATE INDEX web_sessions_user_idx ON web_sessions (username);
CREATE INDEX web_sessions_expiry_idx ON web_sessions (expires_at);
