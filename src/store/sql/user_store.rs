//! [`UserStore`](crate::store::UserStore) for every SQL backend.

/// [`UserStore`](crate::store::UserStore) for a SQL store, like
/// [`sql_store!`]. The invoking module provides `USERS_SQL` (its
/// [`UserStatementTexts`]), `read_time` (a timestamp column, decoded) and,
/// on the store type, `users_sql`, `begin_locked` and `insert_returning_id`.
macro_rules! user_store {
    (store: $store:ty, database: $db:ty, time: $time:path $(,)?) => {
        fn decode_user(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::UserRecord, StoreError> {
            use sqlx::Row as _;
            let failures: i64 = row.try_get("failures")?;
            let disabled: bool = row.try_get("disabled")?;
            Ok($crate::store::UserRecord {
                username: row.try_get("username")?,
                display_name: row.try_get("display_name")?,
                password_hash: row.try_get("password_hash")?,
                disabled,
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                locked_until: read_time(row, "locked_until")?,
                created_at: read_time(row, "created_at")?.ok_or(StoreError::Corrupt {
                    id: 0,
                    what: "an account has no `created_at`",
                })?,
                credential_version: row.try_get("credential_version")?,
            })
        }

        fn decode_token(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::ApiTokenRecord, StoreError> {
            use sqlx::Row as _;
            let id: i64 = row.try_get("id")?;
            Ok($crate::store::ApiTokenRecord {
                id,
                user_id: row.try_get("user_id")?,
                name: row.try_get("name")?,
                created_at: read_time(row, "created_at")?.ok_or(StoreError::Corrupt {
                    id,
                    what: "an API token has no `created_at`",
                })?,
                last_used_at: read_time(row, "last_used_at")?,
            })
        }

        impl $store {
            async fn record_failure_once(
                &self,
                username: &str,
                now: chrono::DateTime<chrono::Utc>,
                policy: $crate::store::LockoutPolicy,
            ) -> Result<Option<$crate::store::UserRecord>, StoreError> {
                let sql = &self.users_sql;
                // Never the request's transaction: a failure counted here must stand
                // whatever the response.
                let mut conn = self.pool.acquire().await?;
                let mut tx = Self::begin_locked(&mut conn).await?;
                let row = sqlx::query(sql.find_user_for_update.clone())
                    .bind(username)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(mut user) = row.as_ref().map(decode_user).transpose()? else {
                    return Ok(None);
                };
                let (failures, locked_until) =
                    policy.after_failure(user.failures, user.locked_until, now);
                sqlx::query(sql.write_failures.clone())
                    .bind(i64::from(failures))
                    .bind(locked_until.map($time))
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                user.failures = failures;
                user.locked_until = locked_until;
                Ok(Some(user))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::UserStore for $store {
            async fn create_user(
                &self,
                user: &$crate::store::UserRecord,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.create_user.clone())
                    .bind(&user.username)
                    .bind(&user.display_name)
                    .bind(&user.password_hash)
                    .bind(user.disabled)
                    .bind($time(user.created_at))
                    .execute(&self.pool)
                    .await;
                match done {
                    Ok(_) => Ok(true),
                    Err(error) if $crate::store::sql::is_unique_violation(&error) => Ok(false),
                    Err(error) => Err(error.into()),
                }
            }

            async fn find_user(
                &self,
                username: &str,
            ) -> Result<Option<$crate::store::UserRecord>, StoreError> {
                let row = sqlx::query(self.users_sql.find_user.clone())
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(decode_user).transpose()
            }

            async fn set_password_hash(
                &self,
                username: &str,
                hash: &str,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.set_password_hash.clone())
                    .bind(hash)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_disabled(
                &self,
                username: &str,
                disabled: bool,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.set_disabled.clone())
                    .bind(disabled)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_failure(
                &self,
                username: &str,
                now: chrono::DateTime<chrono::Utc>,
                policy: $crate::store::LockoutPolicy,
            ) -> Result<Option<$crate::store::UserRecord>, StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    this.record_failure_once(username, now, policy).await
                })
                .await
            }

            async fn clear_failures(&self, username: &str) -> Result<(), StoreError> {
                let this = self;
                $crate::store::sql::retry_deadlocks(this.limits.lock, move || async move {
                    sqlx::query(this.users_sql.clear_failures.clone())
                        .bind(username)
                        .execute(&this.pool)
                        .await?;
                    Ok(())
                })
                .await
            }

            async fn insert_api_token(
                &self,
                token: &$crate::store::NewApiToken,
            ) -> Result<i64, StoreError> {
                let query = sqlx::query(self.users_sql.insert_api_token.clone())
                    .bind(token.token_hash.as_bytes().as_slice())
                    .bind(&token.user_id)
                    .bind(&token.name)
                    .bind($time(token.created_at));
                match self.insert_returning_id(query).await {
                    Err(StoreError::Database(error))
                        if $crate::store::sql::is_unique_violation(&error) =>
                    {
                        Err(StoreError::AlreadyExists)
                    }
                    other => other,
                }
            }

            async fn find_api_token(
                &self,
                hash: &$crate::token::TokenHash,
            ) -> Result<Option<$crate::store::ApiTokenRecord>, StoreError> {
                let row = sqlx::query(self.users_sql.find_api_token.clone())
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(decode_token).transpose()
            }

            async fn touch_api_token(
                &self,
                id: i64,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(self.users_sql.touch_api_token.clone())
                    .bind($time(at))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_api_tokens(
                &self,
                user_id: &str,
            ) -> Result<Vec<$crate::store::ApiTokenRecord>, StoreError> {
                let rows = sqlx::query(self.users_sql.list_api_tokens.clone())
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(decode_token).collect()
            }

            async fn delete_api_token(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(self.users_sql.delete_api_token.clone())
                    .bind(user_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use user_store;
