ALTER TABLE orders ADD CONSTRAINT orders_author_api_key_id_fkey
    FOREIGN KEY (author_api_key_id) REFERENCES api_keys (id);
ALTER TABLE orders ADD CONSTRAINT orders_author_account_id_fkey
    FOREIGN KEY (author_account_id) REFERENCES accounts (id);
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_api_key_id_fkey
    FOREIGN KEY (actor_api_key_id) REFERENCES api_keys (id);
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_account_id_fkey
    FOREIGN KEY (actor_account_id) REFERENCES accounts (id);
