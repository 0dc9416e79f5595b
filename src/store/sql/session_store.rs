//! [`SessionStore`] for every SQL backend, written once.
//!
//! Statements run on [`SqlStore::read_conn`] and [`SqlStore::write_conn`]:
//! the request's transaction when a `CnxLayer` on the same pool has one
//! open, else a pooled connection. Loads, value writes and renewals
//! outside a transaction go through the batch queues (`batch/`).

use chrono::{DateTime, Utc};

use super::backend::{Arg, Query, SqlBackend};
use super::batch::{
    Batched, Batcher, Job as _, Load, Loaded, RunBatch, Touch, Touched, ValueWrite, Waiting,
    answer_loads, answer_touches, answer_writes, load_row, touch_row, write_values,
};
use super::statements::{SessionSql, assigned_id, col, count, encode_data};
use super::{SqlStore, retry_deadlocks, rows};
use crate::store::request_tx::{self, Lent};
use crate::store::{
    ExpiryCutoffs, Merge, SessionData, SessionFields, SessionRecord, SessionStore, StoreError,
    UserSessions,
};
use crate::token::SessionId;

/// The optimistic write: succeeds only if the row still has `version`.
fn write_query<DB: SqlBackend>(
    sql: &SessionSql<sqlx::SqlStr>,
    id: SessionId,
    version: i64,
    fields: &SessionFields,
) -> Query<DB> {
    let data = encode_data(&fields.data);
    let query = DB::query(&sql.update, &rows::field_args(fields, &data));
    DB::bind(query, &[Arg::Int(id.get()), Arg::Int(version)])
}

/// One value write: its row gets the values (and `last_activity`) if it
/// still has the version.
fn value_query<DB: SqlBackend>(sql: &SessionSql<sqlx::SqlStr>, write: &ValueWrite) -> Query<DB> {
    let (id, version) = (Arg::Int(write.id), Arg::Int(write.version));
    let data = Arg::Text(Some(write.data.as_str()));
    match write.at {
        Some(at) => DB::query(&sql.update_data, &[data, Arg::Time(Some(at)), id, version]),
        None => DB::query(&sql.update_values, &[data, id, version]),
    }
}

/// The row of `id` read with `sql` on `conn`.
async fn fetch<DB: SqlBackend>(
    conn: &mut DB::Connection,
    sql: &sqlx::SqlStr,
    id: SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    let row = DB::fetch_optional(conn, DB::query(sql, &[Arg::Int(id.get())])).await?;
    row.as_ref().map(rows::session::<DB>).transpose()
}

// Crate-private methods only: the backend trait is sealed by being
// crate-private, which this lint cannot tell from a leak.
#[allow(private_bounds)]
impl<DB: SqlBackend> SqlStore<DB> {
    /// Runs a statement that changes rows on the write connection, again
    /// if it lost a deadlock; the rows it changed.
    pub(super) async fn change(
        &self,
        sql: &sqlx::SqlStr,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        retry_deadlocks(self.limits.lock, || async {
            let query = DB::query(sql, args);
            Ok(DB::execute(&mut *self.write_conn().await?, query).await?)
        })
        .await
    }

    /// One value write on a pooled connection; the id of the row if it was
    /// written.
    pub(crate) async fn write_one(&self, write: &ValueWrite) -> Result<Vec<i64>, sqlx::Error> {
        let query = value_query::<DB>(&self.sql, write);
        let written = DB::execute(&mut *self.pool.acquire().await?, query).await?;
        Ok(if written == 1 {
            vec![write.id]
        } else {
            Vec::new()
        })
    }

    /// A load from the database: in the next batch, or alone if the store
    /// does not batch.
    async fn load_stored(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        match load_row(self, id.get()).await {
            Loaded::Row(row) => row.as_ref().map(rows::session::<DB>).transpose(),
            Loaded::Alone(solo) => {
                let loaded = async {
                    let mut conn = Lent::Pooled(self.pool.acquire().await?);
                    fetch::<DB>(&mut *conn, &self.sql.load, id).await
                }
                .await;
                drop(solo);
                loaded
            }
        }
    }

    /// One renewal on a pooled connection; the id of the row if it exists.
    pub(crate) async fn touch_one(&self, touch: &Touch) -> Result<Vec<i64>, sqlx::Error> {
        let args = [Arg::Time(Some(touch.at)), Arg::Int(touch.id)];
        let query = DB::query(&self.sql.touch, &args);
        let touched = DB::execute(&mut *self.pool.acquire().await?, query).await?;
        Ok(if touched == 1 {
            vec![touch.id]
        } else {
            Vec::new()
        })
    }

    /// One try of `update_locked`, in one transaction.
    async fn update_locked_once(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut conn = self.write_conn().await?;
        // Inside the request's transaction, a savepoint: the row lock then
        // lasts until the request commits.
        let mut tx = if sqlx::Connection::is_in_transaction(&*conn) {
            sqlx::Connection::begin(&mut *conn).await?
        } else {
            DB::begin_locked(&mut *conn).await?
        };
        let Some(current) = fetch::<DB>(&mut *tx, &self.sql.load_for_update, id).await? else {
            return Ok(None);
        };
        let Some(fields) = merge(&current) else {
            return Ok(None);
        };
        let query = write_query::<DB>(&self.sql, id, current.version, &fields);
        if DB::execute(&mut *tx, query).await? != 1 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(SessionRecord {
            id,
            version: current.version + 1,
            fields,
        }))
    }
}

impl<DB: SqlBackend> RunBatch<Load<DB::Row>> for SqlStore<DB> {
    fn batcher(&self) -> Option<&std::sync::Arc<Batcher<Load<DB::Row>>>> {
        self.batching.then_some(&self.loads)
    }

    async fn run(&self, batcher: &Batcher<Load<DB::Row>>, batch: Vec<Waiting<Load<DB::Row>>>) {
        let ids: Vec<i64> = batch.iter().map(|w| w.job.session()).collect();
        let loaded = match ids.as_slice() {
            // The statement for one row costs the database less.
            [id] => match self.pool.acquire().await {
                Ok(mut conn) => {
                    let query = DB::query(&self.sql.load, &[Arg::Int(*id)]);
                    DB::fetch_optional(&mut *conn, query)
                        .await
                        .map(|row| row.into_iter().collect())
                }
                Err(error) => Err(error),
            },
            _ => DB::load_batch(self, batcher, &ids).await,
        };
        let rows = loaded.and_then(|rows| {
            rows.into_iter()
                .map(|row| Ok((DB::int(&row, col::ID)?, row)))
                .collect()
        });
        answer_loads(batch, rows);
    }
}

impl<DB: SqlBackend> RunBatch<ValueWrite> for SqlStore<DB> {
    fn batcher(&self) -> Option<&std::sync::Arc<Batcher<ValueWrite>>> {
        self.writes.as_ref().filter(|_| self.batching)
    }

    async fn run(&self, batcher: &Batcher<ValueWrite>, mut batch: Vec<Waiting<ValueWrite>>) {
        // In id order, so that batches of several servers lock rows in the
        // same order and never deadlock each other.
        batch.sort_by_key(|w| w.job.id);
        let writes: Vec<&ValueWrite> = batch.iter().map(|w| &w.job).collect();
        let written = match writes.as_slice() {
            // The statement for one row costs the database less.
            [one] => self.write_one(one).await,
            _ => DB::write_rows(self, batcher, &writes).await,
        };
        answer_writes(batch, written);
    }
}

impl<DB: SqlBackend> RunBatch<Touch> for SqlStore<DB> {
    fn batcher(&self) -> Option<&std::sync::Arc<Batcher<Touch>>> {
        self.batching.then_some(&self.touches)
    }

    async fn run(&self, batcher: &Batcher<Touch>, mut batch: Vec<Waiting<Touch>>) {
        // In id order, so that batches of several servers lock rows in the
        // same order and never deadlock each other.
        batch.sort_by_key(|w| w.job.id);
        let touches: Vec<&Touch> = batch.iter().map(|w| &w.job).collect();
        let touched = match touches.as_slice() {
            // The statement for one row costs the database less.
            [one] => self.touch_one(one).await,
            _ => DB::touch_rows(self, batcher, &touches).await,
        };
        answer_touches(batch, touched);
    }
}

#[async_trait::async_trait]
impl<DB: SqlBackend> SessionStore for SqlStore<DB> {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        // Inside the request's transaction: on it. Else in the next batch,
        // or alone if the store does not batch.
        // (Never from the cache: the transaction may hold its own writes.)
        if let Some(mut conn) = request_tx::join_read(&self.pool).await {
            return fetch::<DB>(&mut *conn, &self.sql.load, id).await;
        }
        let Some(cache) = &self.read_cache else {
            return self.load_stored(id).await;
        };
        if let Some(record) = cache.get(id).await {
            return Ok(Some(record));
        }
        let stamp = cache.stamp();
        let record = self.load_stored(id).await?;
        match &record {
            Some(record) => cache.put(|| record.clone(), stamp),
            None => cache.forget(id),
        }
        Ok(record)
    }

    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        let data = encode_data(&fields.data);
        retry_deadlocks(self.limits.lock, || async {
            let query = DB::query(&self.sql.insert, &rows::field_args(fields, &data));
            let mut conn = self.write_conn().await?;
            assigned_id(DB::insert_returning_id(&mut *conn, query).await?)
        })
        .await
    }

    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError> {
        retry_deadlocks(self.limits.lock, || async {
            let query = write_query::<DB>(&self.sql, id, expected_version, fields);
            Ok(DB::execute(&mut *self.write_conn().await?, query).await? == 1)
        })
        .await
    }

    async fn update_data(
        &self,
        id: SessionId,
        expected_version: i64,
        data: &SessionData,
        last_activity: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let write = ValueWrite {
            id: id.get(),
            version: expected_version,
            data: encode_data(data),
            at: last_activity,
        };
        // Inside the request's transaction: on it. Else in the next batch,
        // or alone if the store does not batch.
        let (write, solo) = match request_tx::join_write(&self.pool).await? {
            Some(mut conn) => {
                let query = value_query::<DB>(&self.sql, &write);
                return Ok(DB::execute(&mut *conn, query).await? == 1);
            }
            None => match write_values(self, write).await? {
                Batched::Written(written) => return Ok(written),
                Batched::Alone(write, solo) => (write, solo),
            },
        };
        let written = retry_deadlocks(self.limits.lock, || async {
            let query = value_query::<DB>(&self.sql, &write);
            Ok(DB::execute(&mut *self.pool.acquire().await?, query).await? == 1)
        })
        .await;
        drop(solo);
        written
    }

    async fn update_locked(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        // Each try borrows `merge` in turn; the lock is never contended.
        let merge = tokio::sync::Mutex::new(merge);
        retry_deadlocks(self.limits.lock, || async {
            self.update_locked_once(id, &mut *merge.lock().await).await
        })
        .await
    }

    async fn touch(&self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let args = [Arg::Time(Some(at)), Arg::Int(id.get())];
        // Inside the request's transaction: on it. Else in the next batch,
        // or alone if the store does not batch.
        let solo = match request_tx::join_write(&self.pool).await? {
            Some(mut conn) => {
                let query = DB::query(&self.sql.touch, &args);
                return Ok(DB::execute(&mut *conn, query).await? == 1);
            }
            None => match touch_row(self, Touch { id: id.get(), at }).await {
                Touched::Done(exists) => return Ok(exists),
                Touched::Alone(solo) => solo,
            },
        };
        let touched = retry_deadlocks(self.limits.lock, || async {
            let query = DB::query(&self.sql.touch, &args);
            Ok(DB::execute(&mut *self.pool.acquire().await?, query).await? == 1)
        })
        .await;
        drop(solo);
        touched
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        Ok(self.change(&self.sql.delete, &[Arg::Int(id.get())]).await? == 1)
    }

    async fn delete_expired(&self, cutoffs: ExpiryCutoffs, limit: u32) -> Result<u64, StoreError> {
        let args = [
            Arg::Time(Some(cutoffs.idle_before)),
            Arg::Time(Some(cutoffs.created_before)),
            Arg::Time(Some(cutoffs.persistent_idle_before)),
            Arg::Time(Some(cutoffs.persistent_created_before)),
            Arg::Int(i64::from(limit)),
        ];
        self.change(&self.sql.delete_expired, &args).await
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let query = DB::query(&self.sql.list_for_user, &[Arg::Text(Some(user_id))]);
        let rows = DB::fetch_all(&mut *self.read_conn().await?, query).await?;
        rows.iter().map(rows::session::<DB>).collect()
    }

    async fn delete_for_user(&self, user_id: &str, which: UserSessions) -> Result<u64, StoreError> {
        let user = Arg::Text(Some(user_id));
        match which {
            UserSessions::All => self.change(&self.sql.delete_user_all, &[user]).await,
            UserSessions::AllExcept(id) => {
                let args = [user, Arg::Int(id.get())];
                self.change(&self.sql.delete_user_except, &args).await
            }
            UserSessions::Only(id) => {
                let args = [user, Arg::Int(id.get())];
                self.change(&self.sql.delete_user_only, &args).await
            }
        }
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        self.change(&self.sql.delete_all, &[]).await
    }

    async fn delete_excess_for_user(
        &self,
        user_id: &str,
        api: bool,
        keep: u32,
    ) -> Result<u64, StoreError> {
        let args = [
            Arg::Text(Some(user_id)),
            Arg::Bool(api),
            Arg::Int(i64::from(keep)),
        ];
        self.change(&self.sql.delete_excess_for_user, &args).await
    }

    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let query = DB::query(&self.sql.count_active_since, &[Arg::Time(Some(since))]);
        let row = DB::fetch_optional(&mut *self.pool.acquire().await?, query).await?;
        let n = row.map(|row| DB::int(&row, 0)).transpose()?;
        Ok(count(n.unwrap_or(0)))
    }

    fn combines_updates(&self) -> bool {
        DB::COMBINES_UPDATES
    }
}
