-- A sign-in ranks the user's sessions by recency to end those past the
-- per-user limit. Over an index of `user_id` alone, that read each of the
-- user's rows from the table and sorted them; this index holds the ranking
-- itself (InnoDB ends every secondary index with the primary key), so the
-- ranking reads the index alone, in order, and every other lookup by user
-- uses it too. One statement, so that the swap is all or nothing (MySQL
-- commits each DDL statement on its own).
ALTER TABLE {table}
    ADD INDEX {table}_user_recency (user_id, is_api, last_activity),
    DROP INDEX {table}_user_id;
