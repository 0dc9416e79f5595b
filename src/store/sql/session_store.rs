//! [`SessionStore`](crate::store::SessionStore) for every SQL backend.

/// The parts of a SQL store that differ between backends only in types:
/// binding a row's columns, the optimistic write, the locked merge, the
/// single-statement methods of [`SessionStore`](crate::store::SessionStore),
/// and how a batch of loads or value writes is run and answered
/// (`super::batch`).
///
/// The invoking module provides `read_time` (a timestamp column, decoded)
/// and, on the store type, `begin_locked` (a transaction whose first read
/// takes the row's write lock), `insert_returning_id` (backends return a
/// new row's id differently), and the batch statements `load_batch` and
/// `write_rows` (each backend passes a batch's rows its own way).
/// Statements run on `read_conn()` and `write_conn()`: the request's
/// transaction when a `CnxLayer` on the same pool
/// has one open, else a pooled connection. `time` converts a timestamp to
/// what the backend binds.
macro_rules! sql_store {
    (store: $store:ty, database: $db:ty, arguments: $args:ty, time: $time:path $(,)?) => {
        type Query<'q> = sqlx::query::Query<'q, $db, $args>;
        /// A load job of this backend's rows.
        type RowLoad = $crate::store::sql::Load<<$db as sqlx::Database>::Row>;

        /// A row as a record; a column of the wrong type or shape is
        /// [`StoreError::Corrupt`], like a value keycard never writes.
        fn decode_row(row: &<$db as sqlx::Database>::Row) -> Result<SessionRecord, StoreError> {
            decode_columns(row).map_err(|error| match error {
                StoreError::Database(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => {
                    StoreError::Corrupt {
                        id: sqlx::Row::try_get::<i64, _>(row, $crate::store::sql::col::ID)
                            .unwrap_or(0),
                        what: "a column does not decode as its type",
                    }
                }
                other => other,
            })
        }

        fn decode_columns(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<SessionRecord, StoreError> {
            use $crate::store::sql::col;
            use sqlx::Row as _;
            let id: i64 = row.try_get(col::ID)?;
            let required = |column: usize| {
                read_time(row, column)?.ok_or(StoreError::Corrupt {
                    id,
                    what: "a required timestamp is missing",
                })
            };
            $crate::store::sql::RawRow {
                id,
                version: row.try_get(col::VERSION)?,
                token_hash: row.try_get(col::TOKEN_HASH)?,
                user_id: row.try_get(col::USER_ID)?,
                ip_address: row.try_get(col::IP_ADDRESS)?,
                is_api: row.try_get(col::IS_API)?,
                auth_method: row.try_get(col::AUTH_METHOD)?,
                authenticated_at: read_time(row, col::AUTHENTICATED_AT)?,
                persistent: row.try_get(col::PERSISTENT)?,
                created_at: required(col::CREATED_AT)?,
                last_activity: required(col::LAST_ACTIVITY)?,
                data: row.try_get(col::DATA)?,
                auth_version: row.try_get(col::AUTH_VERSION)?,
                credential: row.try_get(col::CREDENTIAL_ID)?,
            }
            .into_record()
        }

        /// Binds the columns of `SessionFields` in the order both the insert
        /// and the update statement list them.
        fn bind_fields<'q>(query: Query<'q>, f: &'q SessionFields) -> Query<'q> {
            query
                .bind(f.token_hash.as_bytes().as_slice())
                .bind(f.user_id.as_deref())
                .bind(f.ip_address.as_deref())
                .bind(f.is_api)
                .bind(f.auth_method.as_deref())
                .bind(f.authenticated_at.map($time))
                .bind(f.persistent)
                .bind($time(f.created_at))
                .bind($time(f.last_activity))
                .bind($crate::store::sql::encode_data(&f.data))
                .bind(f.auth_version)
                .bind(f.credential.as_deref())
        }

        async fn fetch<'e>(
            executor: impl sqlx::Executor<'e, Database = $db>,
            sql: &sqlx::SqlStr,
            id: SessionId,
        ) -> Result<Option<SessionRecord>, StoreError> {
            let row = sqlx::query(sql.clone())
                .bind(id.get())
                .fetch_optional(executor)
                .await?;
            row.as_ref().map(decode_row).transpose()
        }

        /// The optimistic write: succeeds only if the row still has `version`.
        async fn write<'e>(
            executor: impl sqlx::Executor<'e, Database = $db>,
            sql: &$crate::store::sql::Statements,
            id: SessionId,
            version: i64,
            fields: &SessionFields,
        ) -> Result<bool, StoreError> {
            let done = bind_fields(sqlx::query(sql.update.clone()), fields)
                .bind(id.get())
                .bind(version)
                .execute(executor)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        /// One value write alone: its row gets the values (and
        /// `last_activity`) if it still has the version.
        fn value_query<'q>(
            sql: &$crate::store::sql::Statements,
            write: &'q $crate::store::sql::ValueWrite,
        ) -> Query<'q> {
            let query = match write.at {
                Some(at) => sqlx::query(sql.update_data.clone())
                    .bind(write.data.as_str())
                    .bind($time(at)),
                None => sqlx::query(sql.update_values.clone()).bind(write.data.as_str()),
            };
            query.bind(write.id).bind(write.version)
        }

        impl $store {
            /// One value write on a pooled connection; the id of the row if
            /// it was written.
            async fn write_one(
                &self,
                write: &$crate::store::sql::ValueWrite,
            ) -> Result<Vec<i64>, sqlx::Error> {
                let done = value_query(&self.sql, write).execute(&self.pool).await?;
                Ok(if done.rows_affected() == 1 {
                    vec![write.id]
                } else {
                    Vec::new()
                })
            }
        }

        impl $store {
            /// One try of `update_locked`, in one transaction.
            async fn update_locked_once(
                &self,
                id: SessionId,
                merge: &mut $crate::store::Merge<'_>,
            ) -> Result<Option<SessionRecord>, StoreError> {
                let mut conn = self.write_conn().await?;
                // Inside the request's transaction, a savepoint: the row
                // lock then lasts until the request commits.
                let mut tx = if sqlx::Connection::is_in_transaction(&*conn) {
                    sqlx::Connection::begin(&mut *conn).await?
                } else {
                    Self::begin_locked(&mut conn).await?
                };
                let Some(current) = fetch(&mut *tx, &self.sql.load_for_update, id).await? else {
                    return Ok(None);
                };
                let Some(fields) = merge(&current) else {
                    return Ok(None);
                };
                if !write(&mut *tx, &self.sql, id, current.version, &fields).await? {
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

        impl $crate::store::sql::RunBatch<RowLoad> for $store {
            fn batcher(&self) -> Option<&std::sync::Arc<$crate::store::sql::Batcher<RowLoad>>> {
                self.batching.then_some(&self.loads)
            }

            async fn run(
                &self,
                batcher: &$crate::store::sql::Batcher<RowLoad>,
                batch: Vec<$crate::store::sql::Waiting<RowLoad>>,
            ) {
                use $crate::store::sql::Job as _;
                let ids: Vec<i64> = batch.iter().map(|w| w.job.session()).collect();
                let loaded = match ids.as_slice() {
                    // The statement for one row costs the database less.
                    [id] => sqlx::query(self.sql.load.clone())
                        .bind(*id)
                        .fetch_optional(&self.pool)
                        .await
                        .map(|row| row.into_iter().collect()),
                    _ => self.load_batch(batcher, &ids).await,
                };
                let rows = loaded.and_then(|rows| {
                    rows.into_iter()
                        .map(|row| {
                            let id = sqlx::Row::try_get::<i64, _>(&row, $crate::store::sql::col::ID)?;
                            Ok((id, row))
                        })
                        .collect()
                });
                $crate::store::sql::answer_loads(batch, rows);
            }
        }

        impl $crate::store::sql::RunBatch<$crate::store::sql::ValueWrite> for $store {
            fn batcher(
                &self,
            ) -> Option<&std::sync::Arc<$crate::store::sql::Batcher<$crate::store::sql::ValueWrite>>>
            {
                self.writes.as_ref().filter(|_| self.batching)
            }

            async fn run(
                &self,
                batcher: &$crate::store::sql::Batcher<$crate::store::sql::ValueWrite>,
                mut batch: Vec<$crate::store::sql::Waiting<$crate::store::sql::ValueWrite>>,
            ) {
                // In id order, so that batches of several servers lock rows
                // in the same order and never deadlock each other.
                batch.sort_by_key(|w| w.job.id);
                let writes: Vec<&$crate::store::sql::ValueWrite> =
                    batch.iter().map(|w| &w.job).collect();
                let written = match writes.as_slice() {
                    // The statement for one row costs the database less.
                    [one] => self.write_one(one).await,
                    _ => self.write_rows(batcher, &writes).await,
                };
                $crate::store::sql::answer_writes(batch, written);
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
                // Inside the request's transaction: on it. Else in the next
                // batch, or alone if the store does not batch.
                if let Some(mut conn) = $crate::store::request_tx::join_read(&self.pool).await {
                    return fetch(&mut *conn, &self.sql.load, id).await;
                }
                match $crate::store::sql::load_row(self, id.get()).await {
                    $crate::store::sql::Loaded::Row(row) => {
                        row.as_ref().map(decode_row).transpose()
                    }
                    $crate::store::sql::Loaded::Alone(turn) => {
                        let loaded = fetch(&self.pool, &self.sql.load, id).await;
                        drop(turn);
                        loaded
                    }
                }
            }

            async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    let query = bind_fields(sqlx::query(this.sql.insert.clone()), fields);
                    $crate::store::sql::assigned_id(this.insert_returning_id(query).await?)
                })
                .await
            }

            async fn update(
                &self,
                id: SessionId,
                expected_version: i64,
                fields: &SessionFields,
            ) -> Result<bool, StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    write(
                        &mut *this.write_conn().await?,
                        &this.sql,
                        id,
                        expected_version,
                        fields,
                    )
                    .await
                })
                .await
            }

            async fn update_data(
                &self,
                id: SessionId,
                expected_version: i64,
                data: &$crate::store::SessionData,
                last_activity: Option<chrono::DateTime<chrono::Utc>>,
            ) -> Result<bool, StoreError> {
                let write = $crate::store::sql::ValueWrite {
                    id: id.get(),
                    version: expected_version,
                    data: $crate::store::sql::encode_data(data),
                    at: last_activity,
                };
                // Inside the request's transaction: on it. Else in the next
                // batch, or alone if the store does not batch.
                let (write, turn) = match $crate::store::request_tx::join_write(&self.pool).await? {
                    Some(mut conn) => {
                        let done = value_query(&self.sql, &write).execute(&mut *conn).await?;
                        return Ok(done.rows_affected() == 1);
                    }
                    None => match $crate::store::sql::write_values(self, write).await? {
                        $crate::store::sql::Batched::Written(written) => return Ok(written),
                        $crate::store::sql::Batched::Alone(write, turn) => (write, turn),
                    },
                };
                let this = self;
                let write = &write;
                let written = $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    let done = value_query(&this.sql, write).execute(&this.pool).await?;
                    Ok(done.rows_affected() == 1)
                })
                .await;
                drop(turn);
                written
            }

            async fn update_locked(
                &self,
                id: SessionId,
                merge: &mut $crate::store::Merge<'_>,
            ) -> Result<Option<SessionRecord>, StoreError> {
                let started = std::time::Instant::now();
                let mut attempt = 1;
                loop {
                    match self.update_locked_once(id, merge).await {
                        Err(error)
                            if $crate::store::sql::may_retry(
                                &error,
                                attempt,
                                started,
                                self.limits.lock,
                            ) =>
                        {
                            $crate::store::sql::deadlock_pause(attempt).await;
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }

            async fn touch(
                &self,
                id: SessionId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    Ok(sqlx::query(this.sql.touch.clone())
                        .bind($time(at))
                        .bind(id.get())
                        .execute(&mut *this.write_conn().await?)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    Ok(sqlx::query(this.sql.delete.clone())
                        .bind(id.get())
                        .execute(&mut *this.write_conn().await?)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_expired(
                &self,
                cutoffs: $crate::store::ExpiryCutoffs,
                limit: u32,
            ) -> Result<u64, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    Ok(sqlx::query(this.sql.delete_expired.clone())
                        .bind($time(cutoffs.idle_before))
                        .bind($time(cutoffs.created_before))
                        .bind($time(cutoffs.persistent_idle_before))
                        .bind($time(cutoffs.persistent_created_before))
                        .bind(i64::from(limit))
                        .execute(&mut *this.write_conn().await?)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
                let rows = sqlx::query(self.sql.list_for_user.clone())
                    .bind(user_id)
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?;
                rows.iter().map(decode_row).collect()
            }

            async fn delete_for_user(
                &self,
                user_id: &str,
                which: $crate::store::UserSessions,
            ) -> Result<u64, StoreError> {
                use $crate::store::UserSessions;
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    let query = match which {
                        UserSessions::All => {
                            sqlx::query(this.sql.delete_user_all.clone()).bind(user_id)
                        }
                        UserSessions::AllExcept(id) => {
                            sqlx::query(this.sql.delete_user_except.clone())
                                .bind(user_id)
                                .bind(id.get())
                        }
                        UserSessions::Only(id) => sqlx::query(this.sql.delete_user_only.clone())
                            .bind(user_id)
                            .bind(id.get()),
                    };
                    Ok(query.execute(&mut *this.write_conn().await?).await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn delete_all(&self) -> Result<u64, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    Ok(sqlx::query(this.sql.delete_all.clone())
                        .execute(&mut *this.write_conn().await?)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn delete_excess_for_user(
                &self,
                user_id: &str,
                api: bool,
                keep: u32,
            ) -> Result<u64, StoreError> {
                let this = self;
                let done = $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    Ok(sqlx::query(this.sql.delete_excess_for_user.clone())
                        .bind(user_id)
                        .bind(api)
                        .bind(i64::from(keep))
                        .execute(&mut *this.write_conn().await?)
                        .await?)
                })
                .await?;
                Ok(done.rows_affected())
            }

            async fn count_active_since(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar(self.sql.count_active_since.clone())
                    .bind($time(since))
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::store::sql::count(n))
            }
        }
    };
}

pub(crate) use sql_store;
