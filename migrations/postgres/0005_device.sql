-- A short label of the device each session was created on ("Firefox on
-- Linux"), from its User-Agent, for "your sessions" pages.
ALTER TABLE {table} ADD COLUMN device TEXT;
