-- The user's credential version at sign-in: a password change that bumps
-- the application's version invalidates every older session.
ALTER TABLE {table} ADD COLUMN auth_version BIGINT;
