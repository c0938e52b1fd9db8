-- The key-safe reveal limit counts each user's reveals of the last hour from the audit trail
-- (so that a restart does not start the count again): an index for exactly that question,
-- small because reveals are a tiny share of the audit lines.
CREATE INDEX audit_key_safe_reveals ON audit (user_id, at) WHERE action = 'client.key_safe.reveal';
