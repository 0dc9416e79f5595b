-- A sign-in ranks the user's sessions by recency to end those past the
-- per-user limit. Over an index of `user_id` alone, that read each of the
-- user's rows from the table and sorted them; this index holds the ranking
-- itself, in order (`id` last, for the tie-break), and every other lookup
-- by user uses it too. Anonymous sessions are left out of it: nothing
-- looks them up by user, and their inserts and renewals then write no
-- entry here.
CREATE INDEX IF NOT EXISTS {table}_user_recency ON {table} (user_id, is_api, last_activity, id)
    WHERE user_id IS NOT NULL;
DROP INDEX IF EXISTS {table}_user_id;
