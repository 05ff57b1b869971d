-- The embedded store's tables (hub/store/sqlite.py). {not_finished} is filled in
-- with the terminal statuses, so the due-sessions index covers open sessions only.

CREATE TABLE IF NOT EXISTS machines (
    machine_id TEXT PRIMARY KEY, name TEXT NOT NULL, location TEXT,
    key_hash TEXT UNIQUE, created_at INTEGER NOT NULL,
    callback_url TEXT, webhook_secret TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, machine_id TEXT NOT NULL, status TEXT NOT NULL,
    expires_at INTEGER NOT NULL, phone_token TEXT UNIQUE, seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL, state BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (expires_at)
    WHERE {not_finished};
CREATE INDEX IF NOT EXISTS sessions_machine ON sessions (machine_id, created_at);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, frame BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS payments (
    scope TEXT NOT NULL, transaction_id TEXT NOT NULL, session_id TEXT NOT NULL,
    PRIMARY KEY (scope, transaction_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, machine_id TEXT NOT NULL,
    url TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL, PRIMARY KEY (session_id, seq)) WITHOUT ROWID;
-- outbox.n (added by hub/store/sqlite.py when missing): commit order, so a machine's
-- webhooks go out in the order their events were committed, even within one ms
CREATE TABLE IF NOT EXISTS images (
    session_id TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL);
