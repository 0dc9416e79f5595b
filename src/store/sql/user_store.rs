//! [`UserStore`] for every SQL backend, written once.
//!
//! Account statements run in the request's transaction when a `CnxLayer`
//! on the same pool has one open, and on a pooled connection otherwise.
//! In the transaction, a change commits or rolls back with the request's
//! work (an account created, a password set, a factor enrolled, an API
//! token issued); on SQLite a pooled write would also wait for that
//! transaction's own write lock, and on PostgreSQL and MySQL for the row
//! locks it holds. Each runs in a savepoint there, so that a refused row
//! (a name already taken) leaves the rest of the transaction usable.
//!
//! Some writes must stand whatever the response: a counted failed sign-in,
//! a one-time token, second-factor code or passkey counter used up, a
//! remember-me token's rotation (the browser gets the new one), a
//! remembered browser forgotten. In the
//! transaction they are also kept to be made again, on a pooled connection,
//! if it rolls back ([`request_tx::Redo`]); a use that another request
//! made meanwhile fails the rolled-back request instead
//! ([`StoreError::UsedMeanwhile`]).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::backend::{Arg, SqlBackend};
use super::statements::is_unique_violation;
use super::{SqlStore, retry_deadlocks, rows};
use crate::store::request_tx::{self, Lent};
use crate::store::{
    ApiTokenRecord, LockoutPolicy, NewApiToken, OneTimeToken, PasskeyRecord, RememberedDevice,
    StoreError, TotpRecord, UserRecord, UserStore,
};
use crate::token::TokenHash;

/// What an account write changed, and where.
struct Changed {
    /// The rows the statement changed.
    rows: u64,
    /// Whether it ran in the request's transaction.
    joined: bool,
}

// Crate-private methods only: the backend trait is sealed by being
// crate-private, which this lint cannot tell from a leak.
#[allow(private_bounds)]
impl<DB: SqlBackend> SqlStore<DB> {
    /// Begins a transaction of the account write's own on `conn`: a
    /// savepoint in the request's transaction, or a locking transaction on
    /// a pooled connection.
    async fn begin_on(conn: &mut Lent<DB>) -> Result<sqlx::Transaction<'_, DB>, StoreError> {
        Ok(match conn {
            Lent::Joined(conn) => sqlx::Connection::begin(&mut ***conn).await?,
            Lent::Pooled(conn) => DB::begin_locked(&mut **conn).await?,
        })
    }

    /// Runs a statement that changes account rows (see the module docs for
    /// where); the rows it changed.
    async fn change_users(
        &self,
        sql: &sqlx::SqlStr,
        args: &[Arg<'_>],
    ) -> Result<Changed, StoreError> {
        let mut conn = self.write_conn().await?;
        if let Lent::Pooled(conn) = &mut conn {
            // One statement commits on its own: no transaction to begin.
            let rows = DB::execute(&mut **conn, DB::query(sql, args)).await?;
            return Ok(Changed {
                rows,
                joined: false,
            });
        }
        let mut tx = Self::begin_on(&mut conn).await?;
        let rows = DB::execute(&mut *tx, DB::query(sql, args)).await?;
        tx.commit().await?;
        Ok(Changed { rows, joined: true })
    }

    /// Runs `statements` together (see the module docs for where); the rows
    /// the first one changed.
    async fn change_together(
        &self,
        statements: &[(&sqlx::SqlStr, &[Arg<'_>])],
    ) -> Result<u64, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = Self::begin_on(&mut conn).await?;
        let mut first = None;
        for (sql, args) in statements {
            let changed = DB::execute(&mut *tx, DB::query(sql, args)).await?;
            first.get_or_insert(changed);
        }
        tx.commit().await?;
        Ok(first.unwrap_or(0))
    }

    /// Runs an `INSERT` of an account row (see the module docs for where);
    /// the new row's id.
    async fn insert_users(&self, sql: &sqlx::SqlStr, args: &[Arg<'_>]) -> Result<i64, StoreError> {
        let mut conn = self.write_conn().await?;
        if let Lent::Pooled(conn) = &mut conn {
            return DB::insert_returning_id(&mut **conn, DB::query(sql, args)).await;
        }
        let mut tx = Self::begin_on(&mut conn).await?;
        let id = DB::insert_returning_id(&mut *tx, DB::query(sql, args)).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A write that must stand: if it ran in the request's transaction
    /// (`joined`), `again` makes it again should that roll back.
    fn stand<F, Fut>(&self, joined: bool, again: F)
    where
        F: FnOnce(Self) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        if joined {
            let store = self.clone();
            request_tx::redo_after_rollback(Box::new(move || Box::pin(again(store))));
        }
    }

    /// A one-time use that `changed` made if it changed one row: it stands
    /// (see [`stand`](Self::stand)), and `again`, which says whether it
    /// made the use again, fails with [`StoreError::UsedMeanwhile`] when
    /// another request made it first. Whether the use was made.
    fn stand_use<F, Fut>(&self, changed: &Changed, again: F) -> bool
    where
        F: FnOnce(Self) -> Fut + Send + 'static,
        Fut: Future<Output = Result<bool, StoreError>> + Send + 'static,
    {
        let made = changed.rows == 1;
        if made {
            self.stand(changed.joined, move |store| async move {
                if again(store).await? {
                    Ok(())
                } else {
                    Err(StoreError::UsedMeanwhile)
                }
            });
        }
        made
    }

    /// One try of `record_failure`, in one transaction (a savepoint of the
    /// request's); the account after it, and whether it joined the
    /// request's transaction.
    async fn record_failure_once(
        &self,
        username: &str,
        now: DateTime<Utc>,
        policy: LockoutPolicy,
    ) -> Result<(Option<UserRecord>, bool), StoreError> {
        let sql = &self.users_sql;
        let mut conn = self.write_conn().await?;
        let joined = matches!(conn, Lent::Joined(_));
        let mut tx = Self::begin_on(&mut conn).await?;
        let query = DB::query(&sql.find_user_for_update, &[Arg::Text(Some(username))]);
        let row = DB::fetch_optional(&mut *tx, query).await?;
        let Some(mut user) = row.as_ref().map(rows::user::<DB>).transpose()? else {
            return Ok((None, joined));
        };
        let (failures, locked_until) = policy.after_failure(user.failures, user.locked_until, now);
        let args = [
            Arg::Int(i64::from(failures)),
            Arg::Time(locked_until),
            Arg::Text(Some(username)),
        ];
        DB::execute(&mut *tx, DB::query(&sql.write_failures, &args)).await?;
        tx.commit().await?;
        user.failures = failures;
        user.locked_until = locked_until;
        Ok((Some(user), joined))
    }
}

#[async_trait::async_trait]
impl<DB: SqlBackend> UserStore for SqlStore<DB> {
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let args = [
            Arg::Text(Some(&user.username)),
            Arg::Text(Some(&user.display_name)),
            Arg::Text(Some(&user.password_hash)),
            Arg::Bool(user.disabled),
            Arg::Time(Some(user.created_at)),
        ];
        match self.change_users(&self.users_sql.create_user, &args).await {
            Ok(_) => Ok(true),
            Err(StoreError::Database(error)) if is_unique_violation(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let query = DB::query(&self.users_sql.find_user, &[Arg::Text(Some(username))]);
        let row = DB::fetch_optional(&mut *self.read_conn().await?, query).await?;
        row.as_ref().map(rows::user::<DB>).transpose()
    }

    async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError> {
        let args = [Arg::Text(Some(hash)), Arg::Text(Some(username))];
        Ok(self
            .change_users(&self.users_sql.set_password_hash, &args)
            .await?
            .rows
            == 1)
    }

    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError> {
        let args = [Arg::Bool(disabled), Arg::Text(Some(username))];
        Ok(self
            .change_users(&self.users_sql.set_disabled, &args)
            .await?
            .rows
            == 1)
    }

    async fn record_failure(
        &self,
        username: &str,
        now: DateTime<Utc>,
        policy: LockoutPolicy,
    ) -> Result<Option<UserRecord>, StoreError> {
        let (user, joined) = retry_deadlocks(self.limits.lock, || {
            self.record_failure_once(username, now, policy)
        })
        .await?;
        if user.is_some() {
            let username = username.to_owned();
            self.stand(joined, move |store| async move {
                // Counted again from the row as it is after the rollback.
                store.record_failure(&username, now, policy).await.map(drop)
            });
        }
        Ok(user)
    }

    async fn clear_failures(&self, username: &str) -> Result<(), StoreError> {
        let args = [Arg::Text(Some(username))];
        retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.users_sql.clear_failures, &args)
        })
        .await
        .map(drop)
    }

    async fn insert_api_token(&self, token: &NewApiToken) -> Result<i64, StoreError> {
        let args = [
            Arg::Bytes(token.token_hash.as_bytes().as_slice()),
            Arg::Text(Some(&token.user_id)),
            Arg::Text(Some(&token.name)),
            Arg::Time(Some(token.created_at)),
        ];
        match self
            .insert_users(&self.users_sql.insert_api_token, &args)
            .await
        {
            Err(StoreError::Database(error)) if is_unique_violation(&error) => {
                Err(StoreError::AlreadyExists)
            }
            other => other,
        }
    }

    async fn find_api_token(&self, hash: &TokenHash) -> Result<Option<ApiTokenRecord>, StoreError> {
        let args = [Arg::Bytes(hash.as_bytes().as_slice())];
        let query = DB::query(&self.users_sql.find_api_token, &args);
        let row = DB::fetch_optional(&mut *self.read_conn().await?, query).await?;
        row.as_ref().map(rows::token::<DB>).transpose()
    }

    async fn touch_api_token(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let args = [Arg::Time(Some(at)), Arg::Int(id)];
        self.change_users(&self.users_sql.touch_api_token, &args)
            .await
            .map(drop)
    }

    async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let query = DB::query(&self.users_sql.list_api_tokens, &[Arg::Text(Some(user_id))]);
        let rows = DB::fetch_all(&mut *self.read_conn().await?, query).await?;
        rows.iter().map(rows::token::<DB>).collect()
    }

    async fn delete_api_token(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let args = [Arg::Text(Some(user_id)), Arg::Int(id)];
        Ok(self
            .change_users(&self.users_sql.delete_api_token, &args)
            .await?
            .rows
            == 1)
    }

    async fn insert_one_time_token(&self, token: &OneTimeToken) -> Result<(), StoreError> {
        let args = [
            Arg::Bytes(token.token_hash.as_bytes().as_slice()),
            Arg::Text(Some(&token.user_id)),
            Arg::Text(Some(&token.purpose)),
            Arg::Int(token.credential_version),
            Arg::Time(Some(token.created_at)),
            Arg::Time(Some(token.expires_at)),
        ];
        match self
            .change_users(&self.users_sql.insert_one_time_token, &args)
            .await
        {
            Err(StoreError::Database(error)) if is_unique_violation(&error) => {
                Err(StoreError::AlreadyExists)
            }
            other => other.map(drop),
        }
    }

    async fn find_one_time_token(
        &self,
        hash: &TokenHash,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        let args = [
            Arg::Bytes(hash.as_bytes().as_slice()),
            Arg::Text(Some(purpose)),
            Arg::Time(Some(now)),
        ];
        let query = DB::query(&self.users_sql.find_one_time_token, &args);
        let row = DB::fetch_optional(&mut *self.read_conn().await?, query).await?;
        row.as_ref()
            .map(|row| rows::one_time::<DB>(row, hash))
            .transpose()
    }

    async fn delete_expired_one_time_tokens(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let args = [Arg::Time(Some(now))];
        retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.users_sql.delete_expired_one_time_tokens, &args)
        })
        .await
        .map(|changed| changed.rows)
    }

    async fn take_one_time_token(
        &self,
        hash: &TokenHash,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        let bytes = Arg::Bytes(hash.as_bytes().as_slice());
        let args = [
            Arg::Time(Some(now)),
            bytes,
            Arg::Text(Some(purpose)),
            Arg::Time(Some(now)),
        ];
        // The update decides: of two concurrent takes, one changes the row.
        let taken = retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.users_sql.use_one_time_token, &args)
        })
        .await?;
        let (hash_again, purpose) = (*hash, purpose.to_owned());
        let made = self.stand_use(&taken, move |store| async move {
            let taken = store
                .take_one_time_token(&hash_again, &purpose, now)
                .await?;
            Ok(taken.is_some())
        });
        if !made {
            return Ok(None);
        }
        let query = DB::query(&self.users_sql.read_one_time_token, &[bytes]);
        let row = DB::fetch_optional(&mut *self.read_conn().await?, query).await?;
        row.as_ref()
            .map(|row| rows::one_time::<DB>(row, hash))
            .transpose()
    }

    async fn insert_remembered(&self, device: &RememberedDevice) -> Result<i64, StoreError> {
        let args = [
            Arg::Bytes(device.series_hash.as_bytes().as_slice()),
            Arg::Bytes(device.token_hash.as_bytes().as_slice()),
            Arg::Text(Some(&device.user_id)),
            Arg::Int(device.credential_version),
            Arg::Time(Some(device.created_at)),
            Arg::Time(Some(device.last_used_at)),
            Arg::Time(Some(device.expires_at)),
            Arg::Text(device.device.as_deref()),
        ];
        // On the request's transaction when there is one, like a new API
        // token: the device is remembered only if the sign-in commits.
        match self
            .insert_users(&self.users_sql.insert_remembered, &args)
            .await
        {
            Err(StoreError::Database(error)) if is_unique_violation(&error) => {
                Err(StoreError::AlreadyExists)
            }
            other => other,
        }
    }

    async fn find_remembered(
        &self,
        series_hash: &TokenHash,
    ) -> Result<Option<RememberedDevice>, StoreError> {
        let args = [Arg::Bytes(series_hash.as_bytes().as_slice())];
        let query = DB::query(&self.users_sql.find_remembered, &args);
        let row = DB::fetch_optional(&mut *self.write_conn().await?, query).await?;
        row.as_ref().map(rows::remembered::<DB>).transpose()
    }

    async fn rotate_remembered(
        &self,
        id: i64,
        current: &TokenHash,
        next: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let args = [
            Arg::Bytes(current.as_bytes().as_slice()),
            Arg::Bytes(next.as_bytes().as_slice()),
            Arg::Time(Some(now)),
            Arg::Time(Some(now)),
            Arg::Int(id),
            Arg::Bytes(current.as_bytes().as_slice()),
        ];
        // The update decides: of two concurrent rotations, one changes the
        // row. It stands whatever the response: the browser gets the new
        // token.
        let changed = self
            .change_users(&self.users_sql.rotate_remembered, &args)
            .await?;
        let (current, next) = (*current, *next);
        Ok(self.stand_use(&changed, move |store| async move {
            store.rotate_remembered(id, &current, &next, now).await
        }))
    }

    async fn list_remembered(&self, user_id: &str) -> Result<Vec<RememberedDevice>, StoreError> {
        let query = DB::query(&self.users_sql.list_remembered, &[Arg::Text(Some(user_id))]);
        let rows = DB::fetch_all(&mut *self.write_conn().await?, query).await?;
        rows.iter().map(rows::remembered::<DB>).collect()
    }

    async fn delete_remembered(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let args = [Arg::Text(Some(user_id)), Arg::Int(id)];
        // A browser forgotten stays forgotten, whatever the response.
        let changed = self
            .change_users(&self.users_sql.delete_remembered, &args)
            .await?;
        let user_id = user_id.to_owned();
        self.stand(changed.joined, move |store| async move {
            store.delete_remembered(&user_id, id).await.map(drop)
        });
        Ok(changed.rows == 1)
    }

    async fn delete_remembered_of(
        &self,
        user_id: &str,
        except: Option<i64>,
    ) -> Result<u64, StoreError> {
        // Ids are positive: 0 keeps none.
        let args = [Arg::Text(Some(user_id)), Arg::Int(except.unwrap_or(0))];
        // Forgotten for good, whatever the response (a copied cookie's
        // alarm among the callers).
        let changed = self
            .change_users(&self.users_sql.delete_remembered_of, &args)
            .await?;
        let user_id = user_id.to_owned();
        self.stand(changed.joined, move |store| async move {
            store.delete_remembered_of(&user_id, except).await.map(drop)
        });
        Ok(changed.rows)
    }

    async fn delete_expired_remembered(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        // On the request's transaction when there is one, as the series
        // `Remember::this_device` inserts next: a pooled write would wait
        // for that transaction's lock on SQLite. Housekeeping: rolled back
        // with it, it is done again by the next new series.
        let args = [Arg::Time(Some(now))];
        self.change(&self.users_sql.delete_expired_remembered, &args)
            .await
    }

    async fn find_totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        let query = DB::query(&self.factor_sql.find_totp, &[Arg::Text(Some(user_id))]);
        let row = DB::fetch_optional(&mut *self.read_conn().await?, query).await?;
        row.as_ref().map(rows::totp::<DB>).transpose()
    }

    async fn insert_totp(&self, record: &TotpRecord) -> Result<bool, StoreError> {
        let sql = &self.factor_sql;
        let user = [Arg::Text(Some(&record.user_id))];
        let insert = [
            Arg::Text(Some(&record.user_id)),
            Arg::Bytes(&record.secret),
            Arg::Time(Some(record.created_at)),
        ];
        // A confirmed enrolment survives the delete, and the insert then
        // meets its key: the account keeps the factor it has.
        let statements = [
            (&sql.delete_unconfirmed_totp, &user[..]),
            (&sql.insert_totp, &insert[..]),
        ];
        match retry_deadlocks(self.limits.lock, || self.change_together(&statements)).await {
            Ok(_) => Ok(true),
            Err(StoreError::Database(error)) if is_unique_violation(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        step: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let args = [
            Arg::Time(Some(at)),
            Arg::Int(step),
            Arg::Text(Some(user_id)),
            Arg::Bytes(secret),
        ];
        let changed = retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.factor_sql.confirm_totp, &args)
        })
        .await?;
        Ok(changed.rows == 1)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let args = [Arg::Int(step), Arg::Text(Some(user_id)), Arg::Int(step)];
        // The update decides: of two concurrent uses of one step, one
        // changes the row.
        let changed = retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.factor_sql.use_totp_step, &args)
        })
        .await?;
        let user_id = user_id.to_owned();
        Ok(self.stand_use(&changed, move |store| async move {
            store.use_totp_step(&user_id, step).await
        }))
    }

    async fn delete_second_factor(&self, user_id: &str) -> Result<bool, StoreError> {
        let sql = &self.factor_sql;
        let user = [Arg::Text(Some(user_id))];
        let statements = [
            (&sql.delete_totp, &user[..]),
            (&sql.delete_recovery_codes, &user[..]),
        ];
        let deleted =
            retry_deadlocks(self.limits.lock, || self.change_together(&statements)).await?;
        Ok(deleted > 0)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[TokenHash],
    ) -> Result<(), StoreError> {
        let sql = &self.factor_sql;
        let user = [Arg::Text(Some(user_id))];
        let inserts: Vec<[Arg<'_>; 2]> = hashes
            .iter()
            .map(|hash| {
                [
                    Arg::Text(Some(user_id)),
                    Arg::Bytes(hash.as_bytes().as_slice()),
                ]
            })
            .collect();
        let mut statements = vec![(&sql.delete_recovery_codes, &user[..])];
        statements.extend(
            inserts
                .iter()
                .map(|args| (&sql.insert_recovery_code, &args[..])),
        );
        retry_deadlocks(self.limits.lock, || self.change_together(&statements))
            .await
            .map(drop)
    }

    async fn unused_recovery_codes(&self, user_id: &str) -> Result<Vec<TokenHash>, StoreError> {
        let args = [Arg::Text(Some(user_id))];
        let query = DB::query(&self.factor_sql.unused_recovery_codes, &args);
        let rows = DB::fetch_all(&mut *self.read_conn().await?, query).await?;
        rows.iter().map(rows::code_hash::<DB>).collect()
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &TokenHash,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let args = [
            Arg::Time(Some(at)),
            Arg::Text(Some(user_id)),
            Arg::Bytes(hash.as_bytes().as_slice()),
        ];
        // The update decides: of two concurrent uses, one changes the row.
        let changed = retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.factor_sql.use_recovery_code, &args)
        })
        .await?;
        let (user_id, hash) = (user_id.to_owned(), *hash);
        Ok(self.stand_use(&changed, move |store| async move {
            store.use_recovery_code(&user_id, &hash, at).await
        }))
    }

    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<Option<i64>, StoreError> {
        let args = [
            Arg::Text(Some(&passkey.user_id)),
            Arg::Bytes(&passkey.credential_id),
            Arg::Bytes(&passkey.user_handle),
            Arg::Text(Some(&passkey.credential)),
            Arg::Int(passkey.sign_count),
            Arg::Bool(passkey.backup_eligible),
            Arg::Bool(passkey.backup_state),
            Arg::Text(Some(&passkey.label)),
            Arg::Time(Some(passkey.created_at)),
        ];
        match self
            .insert_users(&self.factor_sql.insert_passkey, &args)
            .await
        {
            Ok(id) => Ok(Some(id)),
            // Credential ids are unique across accounts: a second
            // registration of one authenticator's credential is refused.
            Err(StoreError::Database(error)) if is_unique_violation(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn find_passkey(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        let query = DB::query(&self.factor_sql.find_passkey, &[Arg::Bytes(credential_id)]);
        let row = DB::fetch_optional(&mut *self.read_conn().await?, query).await?;
        row.as_ref().map(rows::passkey::<DB>).transpose()
    }

    async fn list_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        let query = DB::query(&self.factor_sql.list_passkeys, &[Arg::Text(Some(user_id))]);
        let rows = DB::fetch_all(&mut *self.read_conn().await?, query).await?;
        rows.iter().map(rows::passkey::<DB>).collect()
    }

    async fn use_passkey(&self, used: &PasskeyRecord) -> Result<bool, StoreError> {
        let args = [
            Arg::Text(Some(&used.credential)),
            Arg::Int(used.sign_count),
            Arg::Bool(used.backup_eligible),
            Arg::Bool(used.backup_state),
            Arg::Time(used.last_used_at),
            Arg::Int(used.id),
            Arg::Int(used.sign_count),
            Arg::Int(used.sign_count),
        ];
        // The update decides: of two sign-ins with one counter value, one
        // changes the row.
        let changed = retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.factor_sql.use_passkey, &args)
        })
        .await?;
        let used = used.clone();
        Ok(self.stand_use(&changed, move |store| async move {
            store.use_passkey(&used).await
        }))
    }

    async fn delete_passkey(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let args = [Arg::Text(Some(user_id)), Arg::Int(id)];
        let deleted = retry_deadlocks(self.limits.lock, || {
            self.change_users(&self.factor_sql.delete_passkey, &args)
        })
        .await?;
        Ok(deleted.rows > 0)
    }
}
