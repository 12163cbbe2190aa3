-- Retries of an event that came before what it is about (a txack before its hand-over) are
-- counted apart from its claims, so they do not use up the error budget (attempts − these).
ALTER TABLE inbound_events ADD COLUMN early_retries integer NOT NULL DEFAULT 0
    CHECK (early_retries >= 0);
