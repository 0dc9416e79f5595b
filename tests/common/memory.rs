//! An in-memory store written from keycard's public API alone (no sqlx):
//! the proof that a third party can implement the store contract. It uses
//! the trait's defaults for `update_data` and `delete_excess_for_user`, and
//! runs the whole session behaviour suite (`tests/memory.rs`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keycard::SessionId;
use keycard::auth::LockoutPolicy;
use keycard::store::{
    ApiTokenRecord, ExpiryCutoffs, Merge, NewApiToken, OneTimeToken, PasskeyRecord,
    RememberedDevice, SessionFields, SessionRecord, SessionStore, StoreError, TotpRecord,
    UserRecord, UserSessions, UserStore,
};
use keycard::token::TokenHash;

use super::{TestStore, TwinFactory};

/// Every row, behind one lock (never held across an `await`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: i64,
    sessions: BTreeMap<SessionId, SessionRecord>,
    /// Rows a test made unreadable, as a hand-edited SQL row would be.
    corrupt: HashSet<SessionId>,
    users: BTreeMap<String, UserRecord>,
    next_token: i64,
    tokens: BTreeMap<i64, (TokenHash, ApiTokenRecord)>,
    /// One-time tokens by hash, with whether they were used.
    one_time: Vec<(OneTimeToken, bool)>,
    next_remembered: i64,
    remembered: BTreeMap<i64, RememberedDevice>,
    /// TOTP enrolments by user.
    totp: BTreeMap<String, TotpRecord>,
    /// Recovery codes: user, hash, whether used.
    recovery: Vec<(String, TokenHash, bool)>,
    next_passkey: i64,
    passkeys: BTreeMap<i64, PasskeyRecord>,
}

impl MemoryStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the row unreadable: `load` answers `StoreError::Corrupt`.
    pub fn corrupt(&self, id: SessionId) {
        self.state().corrupt.insert(id);
    }
}

fn expired(record: &SessionRecord, cutoffs: &ExpiryCutoffs) -> bool {
    let f = &record.fields;
    if f.persistent {
        f.last_activity < cutoffs.persistent_idle_before
            || f.created_at < cutoffs.persistent_created_before
    } else {
        f.last_activity < cutoffs.idle_before || f.created_at < cutoffs.created_before
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let state = self.state();
        if state.corrupt.contains(&id) {
            return Err(StoreError::Corrupt {
                id: id.get(),
                what: "made unreadable by the test",
            });
        }
        Ok(state.sessions.get(&id).cloned())
    }

    async fn insert(&self, fields: &SessionFields) -> Result<SessionId, StoreError> {
        let mut state = self.state();
        state.next_id += 1;
        let id = SessionId::new(state.next_id).ok_or(StoreError::Corrupt {
            id: state.next_id,
            what: "ids ran out",
        })?;
        let record = SessionRecord {
            id,
            version: 1,
            fields: fields.clone(),
        };
        state.sessions.insert(id, record);
        Ok(id)
    }

    async fn update(
        &self,
        id: SessionId,
        expected_version: i64,
        fields: &SessionFields,
    ) -> Result<bool, StoreError> {
        // A database's write waits for its reply; this one lets the other
        // tasks run once, as a write would (the suite's tests of
        // concurrent writers need them to meet).
        tokio::task::yield_now().await;
        let mut state = self.state();
        match state.sessions.get_mut(&id) {
            Some(record) if record.version == expected_version => {
                record.version += 1;
                record.fields = fields.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn update_locked(
        &self,
        id: SessionId,
        merge: &mut Merge<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        // The lock is the row lock: nobody writes between the read and the
        // write.
        let mut state = self.state();
        let Some(record) = state.sessions.get_mut(&id) else {
            return Ok(None);
        };
        let Some(fields) = merge(record) else {
            return Ok(None);
        };
        record.version += 1;
        record.fields = fields;
        Ok(Some(record.clone()))
    }

    async fn touch(&self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(record) = state.sessions.get_mut(&id) else {
            return Ok(false);
        };
        record.fields.last_activity = record.fields.last_activity.max(at);
        Ok(true)
    }

    async fn delete(&self, id: SessionId) -> Result<bool, StoreError> {
        let mut state = self.state();
        state.corrupt.remove(&id);
        Ok(state.sessions.remove(&id).is_some())
    }

    async fn delete_expired(&self, cutoffs: ExpiryCutoffs, limit: u32) -> Result<u64, StoreError> {
        let mut state = self.state();
        let doomed: Vec<SessionId> = state
            .sessions
            .values()
            .filter(|r| expired(r, &cutoffs))
            .map(|r| r.id)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        for id in &doomed {
            state.sessions.remove(id);
        }
        Ok(doomed.len() as u64)
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let state = self.state();
        let mut rows: Vec<SessionRecord> = state
            .sessions
            .values()
            .filter(|r| r.fields.user_id.as_deref() == Some(user_id))
            .cloned()
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.fields.last_activity, r.id)));
        Ok(rows)
    }

    async fn delete_for_user(&self, user_id: &str, which: UserSessions) -> Result<u64, StoreError> {
        let mut state = self.state();
        let doomed: Vec<SessionId> = state
            .sessions
            .values()
            .filter(|r| r.fields.user_id.as_deref() == Some(user_id))
            .filter(|r| match which {
                UserSessions::All => true,
                UserSessions::AllExcept(keep) => r.id != keep,
                UserSessions::Only(only) => r.id == only,
            })
            .map(|r| r.id)
            .collect();
        for id in &doomed {
            state.sessions.remove(id);
        }
        Ok(doomed.len() as u64)
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let mut state = self.state();
        let count = state.sessions.len() as u64;
        state.sessions.clear();
        Ok(count)
    }

    async fn count_active_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        // Kept at whole microseconds, like every time keycard writes.
        let since = DateTime::from_timestamp_micros(since.timestamp_micros()).unwrap_or(since);
        let state = self.state();
        Ok(state
            .sessions
            .values()
            .filter(|r| r.fields.last_activity >= since)
            .count() as u64)
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.users.contains_key(&user.username) {
            return Ok(false);
        }
        state.users.insert(user.username.clone(), user.clone());
        Ok(true)
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.state().users.get(username).cloned())
    }

    async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(user) = state.users.get_mut(username) else {
            return Ok(false);
        };
        hash.clone_into(&mut user.password_hash);
        user.failures = 0;
        user.locked_until = None;
        user.credential_version += 1;
        Ok(true)
    }

    async fn set_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(user) = state.users.get_mut(username) else {
            return Ok(false);
        };
        user.disabled = disabled;
        user.credential_version += 1;
        Ok(true)
    }

    async fn record_failure(
        &self,
        username: &str,
        now: DateTime<Utc>,
        policy: LockoutPolicy,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut state = self.state();
        let Some(user) = state.users.get_mut(username) else {
            return Ok(None);
        };
        let (failures, locked_until) = policy.after_failure(user.failures, user.locked_until, now);
        user.failures = failures;
        user.locked_until = locked_until;
        Ok(Some(user.clone()))
    }

    async fn clear_failures(&self, username: &str) -> Result<(), StoreError> {
        if let Some(user) = self.state().users.get_mut(username) {
            user.failures = 0;
            user.locked_until = None;
        }
        Ok(())
    }

    async fn insert_api_token(&self, token: &NewApiToken) -> Result<i64, StoreError> {
        let mut state = self.state();
        if state
            .tokens
            .values()
            .any(|(hash, _)| hash == &token.token_hash)
        {
            return Err(StoreError::AlreadyExists);
        }
        state.next_token += 1;
        let id = state.next_token;
        let record = ApiTokenRecord::new(id, &token.user_id, &token.name, token.created_at);
        state.tokens.insert(id, (token.token_hash, record));
        Ok(id)
    }

    async fn find_api_token(&self, hash: &TokenHash) -> Result<Option<ApiTokenRecord>, StoreError> {
        Ok(self
            .state()
            .tokens
            .values()
            .find(|(stored, _)| stored.ct_eq(hash))
            .map(|(_, record)| record.clone()))
    }

    async fn touch_api_token(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some((_, record)) = self.state().tokens.get_mut(&id) {
            record.last_used_at = Some(at);
        }
        Ok(())
    }

    async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenRecord>, StoreError> {
        Ok(self
            .state()
            .tokens
            .values()
            .filter(|(_, r)| r.user_id == user_id)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn delete_api_token(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let mut state = self.state();
        let theirs = state
            .tokens
            .get(&id)
            .is_some_and(|(_, r)| r.user_id == user_id);
        if theirs {
            state.tokens.remove(&id);
        }
        Ok(theirs)
    }

    async fn insert_one_time_token(&self, token: &OneTimeToken) -> Result<(), StoreError> {
        let mut state = self.state();
        if state
            .one_time
            .iter()
            .any(|(t, _)| t.token_hash == token.token_hash)
        {
            return Err(StoreError::AlreadyExists);
        }
        state.one_time.push((token.clone(), false));
        Ok(())
    }

    async fn find_one_time_token(
        &self,
        hash: &TokenHash,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        Ok(self
            .state()
            .one_time
            .iter()
            .find(|(t, used)| {
                !used && t.token_hash == *hash && t.purpose == purpose && t.expires_at > now
            })
            .map(|(t, _)| t.clone()))
    }

    async fn delete_expired_one_time_tokens(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let before = state.one_time.len();
        state.one_time.retain(|(t, _)| t.expires_at > now);
        Ok((before - state.one_time.len()) as u64)
    }

    async fn take_one_time_token(
        &self,
        hash: &TokenHash,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        let mut state = self.state();
        let found = state.one_time.iter_mut().find(|(t, used)| {
            !*used && t.token_hash == *hash && t.purpose == purpose && t.expires_at > now
        });
        Ok(found.map(|(t, used)| {
            *used = true;
            t.clone()
        }))
    }

    async fn insert_remembered(&self, device: &RememberedDevice) -> Result<i64, StoreError> {
        let mut state = self.state();
        if state
            .remembered
            .values()
            .any(|d| d.series_hash == device.series_hash)
        {
            return Err(StoreError::AlreadyExists);
        }
        state.next_remembered += 1;
        let id = state.next_remembered;
        let mut device = device.clone();
        device.id = id;
        state.remembered.insert(id, device);
        Ok(id)
    }

    async fn find_remembered(
        &self,
        series_hash: &TokenHash,
    ) -> Result<Option<RememberedDevice>, StoreError> {
        let state = self.state();
        Ok(state
            .remembered
            .values()
            .find(|d| d.series_hash == *series_hash)
            .cloned())
    }

    async fn rotate_remembered(
        &self,
        id: i64,
        current: &TokenHash,
        next: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.remembered.get_mut(&id) {
            Some(device) if device.token_hash == *current => {
                device.previous_hash = Some(*current);
                device.token_hash = *next;
                device.rotated_at = Some(now);
                device.last_used_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_remembered(&self, user_id: &str) -> Result<Vec<RememberedDevice>, StoreError> {
        let state = self.state();
        Ok(state
            .remembered
            .values()
            .filter(|d| d.user_id == user_id)
            .cloned()
            .collect())
    }

    async fn delete_remembered(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state
            .remembered
            .get(&id)
            .is_some_and(|d| d.user_id == user_id)
        {
            state.remembered.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn delete_remembered_of(
        &self,
        user_id: &str,
        except: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let before = state.remembered.len();
        state
            .remembered
            .retain(|id, d| d.user_id != user_id || Some(*id) == except);
        Ok((before - state.remembered.len()) as u64)
    }

    async fn delete_expired_remembered(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let before = state.remembered.len();
        state.remembered.retain(|_, d| d.expires_at > now);
        Ok((before - state.remembered.len()) as u64)
    }

    async fn find_totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        Ok(self.state().totp.get(user_id).cloned())
    }

    async fn insert_totp(&self, record: &TotpRecord) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state
            .totp
            .get(&record.user_id)
            .is_some_and(|t| t.confirmed_at.is_some())
        {
            return Ok(false);
        }
        state.totp.insert(record.user_id.clone(), record.clone());
        Ok(true)
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        secret: &[u8],
        step: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(record) = state
            .totp
            .get_mut(user_id)
            .filter(|t| t.confirmed_at.is_none() && t.secret == secret)
        else {
            return Ok(false);
        };
        record.confirmed_at = Some(at);
        record.last_step = Some(step);
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(record) = state
            .totp
            .get_mut(user_id)
            .filter(|t| t.confirmed_at.is_some() && t.last_step.is_none_or(|last| last < step))
        else {
            return Ok(false);
        };
        record.last_step = Some(step);
        Ok(true)
    }

    async fn delete_second_factor(&self, user_id: &str) -> Result<bool, StoreError> {
        let mut state = self.state();
        state.recovery.retain(|(user, _, _)| user != user_id);
        Ok(state.totp.remove(user_id).is_some())
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[TokenHash],
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        state.recovery.retain(|(user, _, _)| user != user_id);
        state
            .recovery
            .extend(hashes.iter().map(|h| (user_id.to_owned(), *h, false)));
        Ok(())
    }

    async fn unused_recovery_codes(&self, user_id: &str) -> Result<Vec<TokenHash>, StoreError> {
        Ok(self
            .state()
            .recovery
            .iter()
            .filter(|(user, _, used)| user == user_id && !used)
            .map(|(_, hash, _)| *hash)
            .collect())
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &TokenHash,
        _at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let found = state
            .recovery
            .iter_mut()
            .find(|(user, h, used)| user == user_id && h == hash && !used);
        Ok(found.map(|(_, _, used)| *used = true).is_some())
    }

    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> Result<Option<i64>, StoreError> {
        let mut state = self.state();
        let taken = state
            .passkeys
            .values()
            .any(|p| p.credential_id == passkey.credential_id);
        if taken {
            return Ok(None);
        }
        state.next_passkey += 1;
        let id = state.next_passkey;
        let mut stored = passkey.clone();
        stored.id = id;
        state.passkeys.insert(id, stored);
        Ok(Some(id))
    }

    async fn find_passkey(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        let state = self.state();
        let found = state
            .passkeys
            .values()
            .find(|p| p.credential_id == credential_id);
        Ok(found.cloned())
    }

    async fn list_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        let state = self.state();
        let mine = state.passkeys.values().filter(|p| p.user_id == user_id);
        Ok(mine.cloned().collect())
    }

    async fn use_passkey(&self, used: &PasskeyRecord) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(stored) = state.passkeys.get_mut(&used.id) else {
            return Ok(false);
        };
        let forward =
            stored.sign_count < used.sign_count || (stored.sign_count == 0 && used.sign_count == 0);
        if !forward {
            return Ok(false);
        }
        stored.credential = used.credential.clone();
        stored.sign_count = used.sign_count;
        stored.backup_eligible = used.backup_eligible;
        stored.backup_state = used.backup_state;
        stored.last_used_at = used.last_used_at;
        Ok(true)
    }

    async fn delete_passkey(&self, user_id: &str, id: i64) -> Result<bool, StoreError> {
        let mut state = self.state();
        let theirs = state
            .passkeys
            .get(&id)
            .is_some_and(|p| p.user_id == user_id);
        Ok(theirs && state.passkeys.remove(&id).is_some())
    }
}

/// A fresh in-memory store; its "second app server" shares the memory.
pub async fn memory() -> Option<TestStore> {
    super::stores::init_logs();
    let store = Arc::new(MemoryStore::default());
    let shared = store.clone();
    let twin: TwinFactory = Arc::new(move || {
        let shared = shared.clone();
        Box::pin(async move { shared as Arc<dyn SessionStore> })
    });
    let corrupt = store.clone();
    let corrupter: super::Corrupter = Arc::new(move |id| {
        corrupt.corrupt(id);
        Box::pin(async {})
    });
    Some(TestStore::new(store, twin, Box::new(())).with_corrupter(corrupter))
}
