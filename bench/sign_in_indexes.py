#!/usr/bin/env python3
"""What the sessions table's indexes cost a returning user's sign-in on
SQLite, without HTTP, the pool or the load generator in the way.

    python3 bench/sign_in_indexes.py [ITERATIONS]   # default 4000

For each variant of the schema, a fresh WAL file (synchronous = NORMAL, as
`SqliteStore::connect` opens it) gets 20,000 anonymous sessions and 100
users with 32 sessions each (the default per-user limit), then ITERATIONS
sign-ins of a random returning user, each the three statements keycard's
SQLite store runs for one: the visitor's session inserted, rotated into the
user's (the full `UPDATE`), and the user's sessions past 32 by recency
deleted. It prints the process CPU time per sign-in, then per
renewal of a signed-in session (`touch`: the one write that moves
`last_activity` alone, which the new index holds for signed-in sessions),
the median of 5 rounds, variants alternated round by round (this machine
is noisy: compare variants with each other, in one run).

Variants: migrations 1-9 (an index of `user_id` alone), 1-10 as shipped
(the partial `user_recency` index), and 1-9 plus the same index without
its `WHERE user_id IS NOT NULL`. The statements are those of
`src/store/sqlite.rs`; the schema is read from `migrations/sqlite/`. Uses
Python's own SQLite library, not the bundled one keycard links: its figures
are for comparing the schemas, not for comparing with `run.sh`'s.
"""

import os
import random
import sqlite3
import sys
import time
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations" / "sqlite"
TABLE = "s"
USERS = 100
PER_USER = 32
ANONYMOUS = 20_000
ROUNDS = 5

INSERT = (
    "INSERT INTO s (token_hash, user_id, ip_address, is_api, auth_method, authenticated_at, "
    "persistent, created_at, last_activity, data, auth_version, credential_id, device, version) "
    "VALUES (?, NULL, '127.0.0.1', 0, NULL, NULL, 0, ?, ?, '{\"n\":1}', NULL, NULL, NULL, 1) "
    "RETURNING id"
)
ROTATE = (
    "UPDATE s SET token_hash = ?, user_id = ?, ip_address = ?, is_api = ?, auth_method = ?, "
    "authenticated_at = ?, persistent = ?, created_at = ?, last_activity = ?, data = ?, "
    "auth_version = ?, credential_id = ?, device = ?, version = version + 1 "
    "WHERE id = ? AND version = ?"
)
TOUCH = "UPDATE s SET last_activity = MAX(last_activity, ?) WHERE id = ?"
LIMIT = (
    "DELETE FROM s WHERE id IN (SELECT id FROM s WHERE user_id = ? AND is_api = ? "
    "ORDER BY last_activity DESC, id DESC LIMIT -1 OFFSET ?)"
)


def migrations(upto):
    """The SQLite migration files up to number `upto`, for table `s`."""
    files = sorted(MIGRATIONS.glob("*.sql"))
    chosen = [f for f in files if int(f.name.split("_")[0]) <= upto]
    return "\n".join(f.read_text().replace("{table}", TABLE) for f in chosen)


VARIANTS = {
    "migrations 1-9: index of user_id": migrations(9),
    "migrations 1-10: partial user_recency (shipped)": migrations(10),
    "1-9 + user_recency, not partial": migrations(9)
    + "\nCREATE INDEX s_user_recency ON s (user_id, is_api, last_activity);"
    + "\nDROP INDEX s_user_id;",
}


def sign_ins(schema, iterations, seed):
    """CPU microseconds per sign-in, then per renewal of a signed-in
    session, on a fresh file with `schema`."""
    path = "/tmp/keycard_sign_in_indexes.db"
    for p in (path, path + "-wal", path + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(schema)
    rnd = random.Random(seed)
    now = 10**15
    db.execute("BEGIN")
    for _ in range(ANONYMOUS):
        db.execute(
            "INSERT INTO s (token_hash, created_at, last_activity) VALUES (randomblob(32), ?, ?)",
            (now, now),
        )
    for u in range(USERS):
        for _ in range(PER_USER):
            now += 1
            db.execute(
                "INSERT INTO s (token_hash, user_id, created_at, last_activity) "
                "VALUES (randomblob(32), ?, ?, ?)",
                (f"u{u}", now, now),
            )
    db.execute("COMMIT")
    started = time.process_time()
    for _ in range(iterations):
        now += 1000
        user = f"u{rnd.randrange(USERS)}"
        sid = db.execute(INSERT, (os.urandom(32), now, now)).fetchone()[0]
        db.execute(
            ROTATE,
            (os.urandom(32), user, "127.0.0.1", 0, "password", now, 0, now, now,
             '{"n":1}', None, None, None, sid, 1),
        )
        db.execute(LIMIT, (user, 0, PER_USER))
    spent = time.process_time() - started
    kept = db.execute("SELECT COUNT(*) FROM s WHERE user_id IS NOT NULL").fetchone()[0]
    assert kept == USERS * PER_USER, f"the limit kept {kept} sessions"
    signed_in = [row[0] for row in db.execute("SELECT id FROM s WHERE user_id IS NOT NULL")]
    started = time.process_time()
    for _ in range(iterations):
        now += 1000
        db.execute(TOUCH, (now, rnd.choice(signed_in)))
    renewals = time.process_time() - started
    db.close()
    return spent / iterations * 1e6, renewals / iterations * 1e6


def main():
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    results = {name: [] for name in VARIANTS}
    for round_ in range(ROUNDS):
        for name, schema in VARIANTS.items():
            results[name].append(sign_ins(schema, iterations, round_))
    print(f"SQLite {sqlite3.sqlite_version}, {iterations} sign-ins and renewals per round, "
          f"{ROUNDS} rounds; CPU µs each: median, against the first variant, the rounds")
    print("| schema | sign-in | × | rounds | renewal | × | rounds |")
    print("|---|---|---|---|---|---|---|")
    first = results[next(iter(VARIANTS))]
    base = [sorted(r[i] for r in first)[ROUNDS // 2] for i in (0, 1)]
    for name, runs in results.items():
        cells = []
        for i in (0, 1):
            median = sorted(r[i] for r in runs)[ROUNDS // 2]
            spread = ", ".join(f"{r[i]:.0f}" for r in runs)
            cells.append(f"{median:.1f} µs | {median / base[i]:.2f}× | {spread}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
