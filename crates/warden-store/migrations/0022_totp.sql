-- An optional second factor for console accounts (TOTP, RFC 6238): the secret sealed like
-- key-safe codes (`enc:v1:…`), whether it is confirmed (in use at sign-in), and the last
-- time step a code was accepted for, so a code is never accepted twice.
ALTER TABLE users
    ADD COLUMN totp_secret text NULL,
    ADD COLUMN totp_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN totp_last_step bigint NULL;
