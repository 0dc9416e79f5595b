//! The connection suite: `Cnx` and `CnxLayer` on one pool shared with the
//! session store, run unchanged on every database by `cnx_suite!` (the
//! tests are generic over the database type, so they are written once in
//! the macro and expanded per backend).

/// Expands the connection suite for one database type and fixture.
/// Attributes before the database type go on every test, e.g. a
/// `cfg_attr(…, ignore = …)` for a database that is not configured:
/// `cnx_suite!(#[cfg_attr(cond, ignore = "why")] Db, path::to::fixture)`.
/// The module's items pass through `@items`, which adds them after each
/// `#[tokio::test]`, so a test written here needs nothing more.
#[macro_export]
macro_rules! cnx_suite {
    (@items [$($attr:tt)*] [$($pending:tt)*]) => {};
    (@items [$($attr:tt)*] [$($pending:tt)*]
        #[tokio::test $($args:tt)*]
        $(#[$($post:tt)*])*
        async fn $name:ident() $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        $($pending)*
        #[tokio::test $($args)*]
        $($attr)*
        $(#[$($post)*])*
        async fn $name() $(-> $ret)? $body
        $crate::cnx_suite!(@items [$($attr)*] [] $($rest)*);
    };
    // Another attribute (a doc comment): kept for the item it belongs to.
    (@items [$($attr:tt)*] [$($pending:tt)*] #[$($a:tt)*] $($rest:tt)*) => {
        $crate::cnx_suite!(@items [$($attr)*] [$($pending)* #[$($a)*]] $($rest)*);
    };
    (@items [$($attr:tt)*] [$($pending:tt)*] $item:item $($rest:tt)*) => {
        $($pending)*
        $item
        $crate::cnx_suite!(@items [$($attr)*] [] $($rest)*);
    };
    ($(#[$attr:meta])* $db:ty, $fixture:path) => {
        mod cnx { $crate::cnx_suite!(@items [$(#[$attr])*] []
            use std::sync::{Arc, Mutex};
            use std::time::Duration;

            use axum::Router;
            use axum::extract::Path;
            use axum::http::{Request, StatusCode};
            use axum::routing::{get, post};
            use chrono::TimeDelta;
            use keycard::clock::ManualClock;
            use keycard::cnx::{Cnx, CnxLayer, CommitState, EndReason, HookEvent, Scope, Veto};
            use keycard::store::{CachedStore, SessionStore as _};
            use keycard::{Session, SessionLayer};
            use tower::ServiceExt as _;

            use $crate::common::Client;
            use $crate::common::cnx::Fixture;

            type Db = $db;
            type F = Arc<Fixture<Db>>;
            type Reply = Result<(StatusCode, String), keycard::Error>;
            /// What operations and hooks saw, in order.
            type Probe = Arc<Mutex<Vec<String>>>;

            async fn fixture(size: u32) -> Option<F> {
                $fixture(size).await.map(Arc::new)
            }

            fn status(code: u16) -> StatusCode {
                StatusCode::from_u16(code).expect("status")
            }

            async fn add_note(
                f: &F,
                cnx: &Cnx<Db>,
                owner: &str,
                body: &str,
            ) -> Result<(), keycard::Error> {
                sqlx::query(f.sql("INSERT INTO {t}_notes (owner, body) VALUES (?, ?)"))
                    .bind(owner.to_owned())
                    .bind(body.to_owned())
                    .execute(&mut *cnx.write().await?)
                    .await?;
                Ok(())
            }

            async fn count(f: &F, table: &str) -> i64 {
                let sql = format!("SELECT COUNT(*) FROM {{t}}{table}");
                sqlx::query_scalar(f.sql(&sql))
                    .fetch_one(&f.pool)
                    .await
                    .expect("count")
            }

            /// Accounts and one-time tokens on the fixture's store, with
            /// password hashing cheap enough for a test.
            fn accounts(
                f: &F,
                sessions: &SessionLayer,
            ) -> (keycard::auth::PasswordAuthenticator, keycard::auth::OneTimeTokens) {
                use keycard::auth::{OneTimeTokens, PasswordAuthenticator};
                let users: Arc<dyn keycard::store::UserStore> = Arc::new(f.store.clone());
                let passwords = PasswordAuthenticator::with_shared_store(users.clone(), sessions.admin())
                    .argon2_params(argon2::Params::new(8, 1, 1, None).expect("params"));
                let links = OneTimeTokens::with_shared_store(users, passwords.clone());
                (passwords, links)
            }

            fn record(probe: &Probe, what: String) {
                probe.lock().expect("probe").push(what);
            }

            fn seen(probe: &Probe) -> Vec<String> {
                probe.lock().expect("probe").clone()
            }

            /// An audit hook: a row per sign-in, sign-out, purge and commit.
            fn audited(f: &F, layer: CnxLayer<Db>, on_commit: bool) -> CnxLayer<Db> {
                let f = f.clone();
                layer.hook("audit", move |cnx: Cnx<Db>, event: HookEvent| {
                    let f = f.clone();
                    async move {
                        let what = match event {
                            HookEvent::Login { user_id, .. } => format!("login {user_id}"),
                            HookEvent::Logout { user_id, .. } => format!("logout {user_id}"),
                            HookEvent::SessionsEnded {
                                count,
                                reason: EndReason::Purge,
                                ..
                            } => format!("purge {count}"),
                            HookEvent::SessionsEnded {
                                count,
                                reason: EndReason::Policy,
                                ..
                            } => format!("policy {count}"),
                            HookEvent::SessionsEnded {
                                user_id: Some(user),
                                count,
                                reason: EndReason::Theft,
                            } => format!("theft {user} {count}"),
                            HookEvent::Commit if on_commit => "commit".to_owned(),
                            _ => return Ok(()),
                        };
                        sqlx::query(f.sql("INSERT INTO {t}_audit (what) VALUES (?)"))
                            .bind(what)
                            .execute(&mut *cnx.write().await?)
                            .await?;
                        Ok(())
                    }
                })
            }

            /// The application: session routes and routes that write notes.
            fn app(
                f: &F,
                session_layer: SessionLayer,
                cnx_layer: CnxLayer<Db>,
                probe: &Probe,
            ) -> Router {
                let note = {
                    let f = f.clone();
                    move |cnx: Cnx<Db>, Path((body, code)): Path<(String, u16)>| async move {
                        add_note(&f, &cnx, "anon", &body).await?;
                        Reply::Ok((status(code), "noted".into()))
                    }
                };
                let login_note = {
                    let f = f.clone();
                    move |session: Session,
                          cnx: Cnx<Db>,
                          Path((user, code)): Path<(String, u16)>| async move {
                        session.login(user.clone()).await?;
                        add_note(&f, &cnx, &user, "signed in").await?;
                        Reply::Ok((status(code), "signed in".into()))
                    }
                };
                let incr_note = {
                    let f = f.clone();
                    move |session: Session, cnx: Cnx<Db>, Path(code): Path<u16>| async move {
                        add_note(&f, &cnx, "anon", "incr").await?;
                        let n = session
                            .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                            .await?;
                        Reply::Ok((status(code), n.to_string()))
                    }
                };
                let held = {
                    let f = f.clone();
                    move |session: Session, cnx: Cnx<Db>| async move {
                        let mut conn = cnx.write().await?;
                        sqlx::query(f.sql("INSERT INTO {t}_notes (owner, body) VALUES (?, ?)"))
                            .bind("anon")
                            .bind("held")
                            .execute(&mut *conn)
                            .await?;
                        // The guard is still alive: the session's write must
                        // not wait for it forever.
                        session
                            .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                            .await?;
                        drop(conn);
                        Reply::Ok((StatusCode::OK, "unreachable".into()))
                    }
                };
                let veto = {
                    let (f, probe) = (f.clone(), probe.clone());
                    move |cnx: Cnx<Db>, Path(refuse): Path<bool>| async move {
                        add_note(&f, &cnx, "anon", "vetoed?").await?;
                        let p = probe.clone();
                        cnx.on_precommit(move |cnx: Cnx<Db>| async move {
                            record(&p, format!("precommit {:?}", cnx.commit_state()));
                            if refuse {
                                return Err(Veto::new("notes are closed").into());
                            }
                            Ok(())
                        });
                        let p = probe.clone();
                        let kept = cnx.clone();
                        cnx.on_postcommit(move || async move {
                            record(&p, format!("postcommit {:?}", kept.commit_state()));
                        });
                        let p = probe.clone();
                        cnx.on_rollback(move || async move { record(&p, "rollback".into()) });
                        record(&probe, format!("handler {:?}", cnx.commit_state()));
                        Reply::Ok((StatusCode::OK, "done".into()))
                    }
                };
                let scopes = {
                    let f = f.clone();
                    move |cnx: Cnx<Db>| async move {
                        #[derive(Clone, Debug, PartialEq)]
                        struct Visitor(&'static str);
                        #[derive(Clone, Debug, PartialEq)]
                        struct Batch(u32);
                        cnx.insert_data(Scope::Connection, Visitor("ada"));
                        cnx.insert_data(Scope::Transaction, Batch(1));
                        add_note(&f, &cnx, "anon", "scoped").await?;
                        cnx.commit().await?;
                        let mut wrong = Vec::new();
                        if cnx.data::<Batch>(Scope::Transaction).is_some() {
                            wrong.push("transaction data survived a commit");
                        }
                        cnx.insert_data(Scope::Transaction, Batch(2));
                        cnx.begin().await?;
                        cnx.rollback().await;
                        if cnx.data::<Batch>(Scope::Transaction).is_some() {
                            wrong.push("transaction data survived a rollback");
                        }
                        if cnx.data::<Visitor>(Scope::Connection) != Some(Visitor("ada")) {
                            wrong.push("connection data was lost");
                        }
                        if cnx.commit_state() != CommitState::RolledBack {
                            wrong.push("the state is not RolledBack");
                        }
                        Reply::Ok((StatusCode::OK, wrong.join("; ")))
                    }
                };
                let import = {
                    let f = f.clone();
                    move |cnx: Cnx<Db>| async move {
                        cnx.disable_hooks("audit");
                        add_note(&f, &cnx, "anon", "imported").await?;
                        Reply::Ok((StatusCode::OK, "imported".into()))
                    }
                };
                let count_notes = {
                    let f = f.clone();
                    move |cnx: Cnx<Db>| async move {
                        let n: i64 = sqlx::query_scalar(f.sql("SELECT COUNT(*) FROM {t}_notes"))
                            .fetch_one(&mut *cnx.read().await?)
                            .await?;
                        Reply::Ok((StatusCode::OK, format!("{n} {}", cnx.in_transaction())))
                    }
                };
                Router::new()
                    .route("/note/{body}/{code}", post(note))
                    .route("/login-note/{user}/{code}", post(login_note))
                    .route("/incr-note/{code}", post(incr_note))
                    .route("/held", post(held))
                    .route("/veto/{refuse}", post(veto))
                    .route("/scopes", post(scopes))
                    .route("/import", post(import))
                    .route("/count", get(count_notes))
                    .route("/plain", get(|| async { "ok" }))
                    .route(
                        "/logout",
                        post(|session: Session| async move {
                            session.logout().await?;
                            Reply::Ok((StatusCode::OK, "signed out".into()))
                        }),
                    )
                    .route(
                        "/refuse",
                        post({
                            let f = f.clone();
                            move |cnx: Cnx<Db>| async move {
                                add_note(&f, &cnx, "anon", "refused").await?;
                                cnx.set_uncommitable(
                                    Veto::new("read-only today").with_status(StatusCode::CONFLICT),
                                );
                                assert_eq!(cnx.commit_state(), CommitState::Uncommitable);
                                Reply::Ok((StatusCode::OK, "refused?".into()))
                            }
                        }),
                    )
                    .route(
                        "/set/{key}/{value}",
                        post(
                            |session: Session, Path((k, v)): Path<(String, String)>| async move {
                                session.insert(&k, v).await?;
                                Reply::Ok((StatusCode::OK, "set".into()))
                            },
                        ),
                    )
                    .route(
                        "/get/{key}",
                        get(|session: Session, Path(k): Path<String>| async move {
                            let v: Option<serde_json::Value> = session.get(&k).await?;
                            Reply::Ok((
                                StatusCode::OK,
                                v.map(|v| v.to_string()).unwrap_or_default(),
                            ))
                        }),
                    )
                    .route(
                        "/whoami",
                        get(|session: Session| async move {
                            let user = session.user_id().await?.unwrap_or_else(|| "nobody".into());
                            Reply::Ok((StatusCode::OK, user))
                        }),
                    )
                    .layer(session_layer)
                    .layer(cnx_layer)
            }

            /// The application with default layers and a probe nobody reads.
            fn plain_app(f: &F) -> Router {
                app(
                    f,
                    SessionLayer::new(f.store.clone()),
                    CnxLayer::new(f.pool.clone()),
                    &probe(),
                )
            }

            fn probe() -> Probe {
                Arc::new(Mutex::new(Vec::new()))
            }

            #[tokio::test]
            async fn writes_commit_on_success_and_roll_back_otherwise() {
                let Some(f) = fixture(4).await else { return };
                let app = plain_app(&f);
                let mut client = Client::new(app);
                assert_eq!(client.post("/note/a/200").await.status, 200);
                assert_eq!(client.post("/note/b/303").await.status, 303);
                assert_eq!(count(&f, "_notes").await, 2, "2xx and 3xx commit");
                assert_eq!(client.post("/note/c/400").await.status, 400);
                assert_eq!(client.post("/note/d/500").await.status, 500);
                assert_eq!(count(&f, "_notes").await, 2, "4xx and 5xx roll back");
                let reply = client.get("/count").await;
                assert_eq!(reply.body, "2 false", "a read holds no transaction");
                assert!(reply.set_cookies().is_empty(), "no session was touched");
            }

            #[tokio::test]
            async fn a_sign_in_and_its_audit_row_commit_or_roll_back_together() {
                let Some(f) = fixture(4).await else { return };
                let layers = || {
                    let cnx = audited(&f, CnxLayer::new(f.pool.clone()), false);
                    app(&f, SessionLayer::new(f.store.clone()), cnx, &probe())
                };
                // Success: the session row, its new token, the note and the
                // audit row all commit.
                let mut ada = Client::new(layers());
                let reply = ada.post("/login-note/ada/200").await;
                assert_eq!(reply.status, 200);
                assert_eq!(reply.set_cookies().len(), 2);
                assert_eq!(ada.get("/whoami").await.body, "ada");
                assert_eq!(
                    (count(&f, "_notes").await, count(&f, "_audit").await),
                    (1, 1)
                );

                // A server error after the sign-in: neither the new token
                // nor the audit row nor the note; the old session stands.
                let mut bob = Client::new(layers());
                assert_eq!(bob.post("/set/colour/blue").await.status, 200);
                let (id, token) = (bob.session_id().expect("id"), bob.token().expect("token"));
                let before = f.store.load(id).await.expect("load").expect("row");
                let reply = bob.post("/login-note/bob/500").await;
                assert_eq!(reply.status, 500);
                assert!(reply.set_cookies().is_empty(), "no new token was sent");
                let after = f.store.load(id).await.expect("load").expect("row");
                assert_eq!(
                    after.fields.token_hash, before.fields.token_hash,
                    "the old token is still the one"
                );
                assert_eq!(after.fields.user_id, None);
                assert_eq!((bob.session_id(), bob.token()), (Some(id), Some(token)));
                assert_eq!(bob.get("/whoami").await.body, "nobody");
                assert_eq!(
                    (count(&f, "_notes").await, count(&f, "_audit").await),
                    (1, 1)
                );

                // A client error: the handler's note rolls back; the session
                // layer's own save (the sign-in) and its audit row commit,
                // as they would without a transaction.
                let mut carol = Client::new(layers());
                assert_eq!(carol.post("/login-note/carol/422").await.status, 422);
                assert_eq!(carol.get("/whoami").await.body, "carol");
                assert_eq!(
                    (count(&f, "_notes").await, count(&f, "_audit").await),
                    (1, 2)
                );
            }

            /// A hook's error of another domain (here an account error,
            /// as a hook that checks the account might return) refuses the
            /// sign-in with that error's status: the row keeps its old
            /// token and no user, and no cookie is sent.
            #[tokio::test]
            async fn a_login_hook_failing_with_an_account_error_answers_its_status() {
                let Some(f) = fixture(4).await else { return };
                let cnx = CnxLayer::new(f.pool.clone()).hook(
                    "check",
                    |_cnx: Cnx<Db>, event: HookEvent| async move {
                        match event {
                            HookEvent::Login { user_id, .. } if user_id == "mallory" => {
                                Err(keycard::auth::AccountError::WrongPassword.into())
                            }
                            _ => Ok(()),
                        }
                    },
                );
                let app = app(&f, SessionLayer::new(f.store.clone()), cnx, &probe());
                let mut client = Client::new(app);
                assert_eq!(client.post("/set/colour/blue").await.status, 200);
                let id = client.session_id().expect("id");
                let before = f.store.load(id).await.expect("load").expect("row");
                let reply = client.post("/login-note/mallory/200").await;
                assert_eq!(reply.status, 403, "the account error's status");
                assert!(reply.set_cookies().is_empty(), "no new token was sent");
                let after = f.store.load(id).await.expect("load").expect("row");
                assert_eq!(after.fields.token_hash, before.fields.token_hash);
                assert_eq!(after.fields.user_id, None);
                assert_eq!(count(&f, "_notes").await, 0, "the handler's note rolled back");
                assert_eq!(client.get("/whoami").await.body, "nobody");
                assert_eq!(client.post("/login-note/ada/200").await.status, 200);
            }

            #[tokio::test]
            async fn a_precommit_veto_rolls_back_and_becomes_the_response() {
                let Some(f) = fixture(4).await else { return };
                let probe = probe();
                let app = app(
                    &f,
                    SessionLayer::new(f.store.clone()),
                    CnxLayer::new(f.pool.clone()),
                    &probe,
                );
                let mut client = Client::new(app);
                let reply = client.post("/veto/true").await;
                assert_eq!(reply.status, 422, "the veto's status");
                assert_eq!(count(&f, "_notes").await, 0);
                assert_eq!(
                    seen(&probe),
                    ["handler Active", "precommit Precommit", "rollback"]
                );

                probe.lock().expect("probe").clear();
                assert_eq!(client.post("/veto/false").await.status, 200);
                assert_eq!(count(&f, "_notes").await, 1);
                assert_eq!(
                    seen(&probe),
                    [
                        "handler Active",
                        "precommit Precommit",
                        "postcommit Postcommit"
                    ]
                );
            }

            #[tokio::test]
            async fn data_scopes_end_with_their_transaction_and_connection() {
                let Some(f) = fixture(4).await else { return };
                let app = plain_app(&f);
                let reply = Client::new(app).post("/scopes").await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, ""));
                assert_eq!(count(&f, "_notes").await, 1, "the explicit commit stands");
            }

            #[tokio::test]
            async fn hook_categories_can_be_disabled_for_one_connection() {
                let Some(f) = fixture(4).await else { return };
                let cnx = audited(&f, CnxLayer::new(f.pool.clone()), true);
                let mut client =
                    Client::new(app(&f, SessionLayer::new(f.store.clone()), cnx, &probe()));
                assert_eq!(client.post("/note/a/200").await.status, 200);
                assert_eq!(count(&f, "_audit").await, 1, "the commit was audited");
                assert_eq!(client.post("/import").await.status, 200);
                assert_eq!(count(&f, "_notes").await, 2);
                assert_eq!(count(&f, "_audit").await, 1, "the import was not");
                assert_eq!(client.post("/note/b/400").await.status, 400);
                assert_eq!(
                    count(&f, "_audit").await,
                    1,
                    "a rollback runs no commit hook"
                );
            }

            #[tokio::test]
            async fn a_session_write_rolled_back_with_the_transaction_never_reaches_the_cache() {
                let Some(f) = fixture(4).await else { return };
                let cached = CachedStore::new(f.store.clone(), 100);
                let app = app(
                    &f,
                    SessionLayer::new(cached),
                    CnxLayer::new(f.pool.clone()),
                    &probe(),
                );
                let mut client = Client::new(app);
                assert_eq!(client.post("/incr-note/200").await.body, "1");
                assert_eq!(client.post("/incr-note/200").await.body, "2");
                // The increment joined the transaction, which a 400 rolls back.
                assert_eq!(client.post("/incr-note/400").await.body, "3");
                assert_eq!(client.get("/get/n").await.body, "2");
                assert_eq!(count(&f, "_notes").await, 2);
            }

            #[tokio::test]
            async fn a_guard_held_across_a_session_write_is_refused_not_hung() {
                let Some(f) = fixture(4).await else { return };
                let app = plain_app(&f);
                let mut client = Client::new(app);
                assert_eq!(client.post("/set/colour/blue").await.status, 200);
                let reply = tokio::time::timeout(Duration::from_secs(60), client.post("/held"))
                    .await
                    .expect("the request ends instead of waiting for itself");
                assert_eq!(reply.status, 503);
                assert_eq!(count(&f, "_notes").await, 0, "and its work rolled back");
            }

            #[tokio::test]
            async fn an_internal_connection_commits_only_when_told() {
                let Some(f) = fixture(4).await else { return };
                let clock = ManualClock::starting_at(chrono::Utc::now());
                let sessions = SessionLayer::new(f.store.clone()).clock(clock.clone());
                let admin = sessions.admin();
                let cnx_layer = audited(&f, CnxLayer::new(f.pool.clone()), false);
                let mut client = Client::new(app(&f, sessions, cnx_layer.clone(), &probe()));
                assert_eq!(client.post("/set/k/v").await.status, 200);
                assert_eq!(count(&f, "").await, 1);
                clock.advance(TimeDelta::days(2));

                let job = cnx_layer.internal();
                assert!(job.is_internal());
                assert!(!job.security().read && !job.security().write);
                job.begin().await.expect("begin");
                assert_eq!(job.scope(admin.purge_expired()).await.expect("purge"), 1);
                job.rollback().await;
                assert_eq!(count(&f, "").await, 1, "rolled back: nothing purged");
                assert_eq!(count(&f, "_audit").await, 0);

                job.begin().await.expect("begin");
                assert_eq!(job.scope(admin.purge_expired()).await.expect("purge"), 1);
                job.commit().await.expect("commit");
                assert_eq!(job.commit_state(), CommitState::Committed);
                assert_eq!(count(&f, "").await, 0);
                let what: String = sqlx::query_scalar(f.sql("SELECT what FROM {t}_audit"))
                    .fetch_one(&f.pool)
                    .await
                    .expect("audit");
                assert_eq!(
                    what, "purge 1",
                    "the purge hook ran in the job's transaction"
                );
            }

            #[tokio::test]
            async fn a_request_that_never_uses_its_cnx_takes_no_connection() {
                let Some(f) = fixture(1).await else { return };
                let app = plain_app(&f);
                // The pool's only connection is taken: any acquire would wait.
                let held = f.pool.acquire().await.expect("the only connection");
                let reply = Client::new(app).get("/plain").await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "ok"));
                drop(held);
            }

            #[tokio::test]
            async fn an_uncommitable_transaction_answers_the_vetos_status() {
                let Some(f) = fixture(4).await else { return };
                let app = plain_app(&f);
                let reply = Client::new(app).post("/refuse").await;
                assert_eq!(reply.status, StatusCode::CONFLICT);
                assert_eq!(count(&f, "_notes").await, 0);
            }

            #[tokio::test]
            async fn sign_outs_and_policy_ends_reach_the_hooks_in_the_transaction() {
                let Some(f) = fixture(4).await else { return };
                let layers = || {
                    let sessions = SessionLayer::new(f.store.clone())
                        .concurrent_sessions(keycard::ConcurrentSessions::OnePerUser);
                    app(
                        &f,
                        sessions,
                        audited(&f, CnxLayer::new(f.pool.clone()), false),
                        &probe(),
                    )
                };
                let mut laptop = Client::new(layers());
                assert_eq!(laptop.post("/login-note/ada/200").await.status, 200);
                let mut phone = Client::new(layers());
                assert_eq!(phone.post("/login-note/ada/200").await.status, 200);
                assert_eq!(
                    laptop.get("/whoami").await.body,
                    "nobody",
                    "one session per user"
                );
                assert_eq!(phone.post("/logout").await.status, 200);
                let rows: Vec<String> =
                    sqlx::query_scalar(f.sql("SELECT what FROM {t}_audit ORDER BY what"))
                        .fetch_all(&f.pool)
                        .await
                        .expect("audit");
                assert_eq!(rows, ["login ada", "login ada", "logout ada", "policy 1"]);
            }

            #[tokio::test]
            async fn the_extractor_without_its_layer_says_what_to_add() {
                let Some(f) = fixture(1).await else { return };
                let app: Router = Router::new()
                    .route("/", get(|_cnx: Cnx<Db>| async { "unreachable" }))
                    .layer(SessionLayer::new(f.store.clone()));
                let reply = Client::new(app).get("/").await;
                assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
                assert!(reply.body.contains("CnxLayer"), "{}", reply.body);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_increments_inside_request_transactions_lose_nothing() {
                // As many clients as connections: a request that held its
                // transaction and waited for a second connection to load its
                // session would starve the pool.
                let Some(f) = fixture(8).await else { return };
                let mut first = Client::new(plain_app(&f));
                assert_eq!(first.post("/incr-note/200").await.body, "1");
                let mut tasks = Vec::new();
                for _ in 0..8 {
                    let mut client = first.clone();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..25 {
                            let reply = client.post("/incr-note/200").await;
                            assert_eq!(reply.status, 200, "{}", reply.body);
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("client");
                }
                assert_eq!(
                    first.get("/get/n").await.body,
                    "201",
                    "8 x 25 + 1, none lost"
                );
                assert_eq!(count(&f, "_notes").await, 201);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_pool_survives_failing_timed_out_cancelled_and_panicking_requests() {
                let Some(f) = fixture(2).await else { return };
                let write = |f: &F, code: u16, pause: u64, panic: bool| {
                    let f = f.clone();
                    move |cnx: Cnx<Db>| async move {
                        add_note(&f, &cnx, "anon", "x").await?;
                        if pause > 0 {
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                        if panic {
                            panic!("the handler panicked (on purpose)");
                        }
                        Reply::Ok((status(code), String::new()))
                    }
                };
                let app: Router = Router::new()
                    .route("/ok", post(write(&f, 200, 0, false)))
                    .route("/fail", post(write(&f, 500, 0, false)))
                    .route("/slow", post(write(&f, 200, 10_000, false)))
                    .route("/panic", post(write(&f, 200, 0, true)))
                    .layer(CnxLayer::new(f.pool.clone()));
                let request = |path: &str| {
                    Request::post(path)
                        .body(axum::body::Body::empty())
                        .expect("request")
                };
                let mut ok = 0;
                for round in 0..250 {
                    let succeeded = app.clone().oneshot(request("/ok"));
                    let failed = app.clone().oneshot(request("/fail"));
                    // Cancelled while it holds the transaction.
                    let timed_out = tokio::time::timeout(
                        Duration::from_millis(20),
                        app.clone().oneshot(request("/slow")),
                    );
                    // Every tenth round a handler panics (each panic prints a
                    // backtrace in CI); the others fail with a 500 instead.
                    let panics = round % 10 == 0;
                    let fourth = tokio::spawn(app.clone().oneshot(request(if panics {
                        "/panic"
                    } else {
                        "/fail"
                    })));
                    let (succeeded, failed, timed_out, fourth) =
                        tokio::join!(succeeded, failed, timed_out, fourth);
                    assert_eq!(succeeded.expect("ok").status(), 200);
                    ok += 1;
                    assert_eq!(failed.expect("fail").status(), 500);
                    assert!(timed_out.is_err(), "the slow request was cancelled");
                    if panics {
                        assert!(fourth.expect_err("it panicked").is_panic());
                    } else {
                        assert_eq!(fourth.expect("joined").expect("fail").status(), 500);
                    }
                }
                assert_eq!(
                    count(&f, "_notes").await,
                    ok,
                    "exactly the successes committed"
                );
                assert!(f.pool.size() <= 2);
                let after = app.clone().oneshot(request("/ok")).await.expect("ok");
                assert_eq!(after.status(), 200, "the pool still serves");
            }

            /// A remember-me restore inside a request whose transaction
            /// rolls back (the handler wrote, then answered `422`): what the
            /// restore wrote is about the credential, not the handler's
            /// work, so it stands. The rotated token the response carries
            /// is the stored one (the browser's next restore is not taken
            /// for a copied cookie), and a replayed token's alarm ends the
            /// user's sessions for good, whatever the thief's request
            /// answered. A new series issued in such a transaction goes
            /// with it, cookie and all.
            #[tokio::test]
            async fn remember_me_keeps_store_and_cookie_in_step_when_the_transaction_rolls_back() {
                use keycard::auth::{AuthLayer, Remember, RememberMe};
                use keycard::store::UserStore;

                let Some(f) = fixture(4).await else { return };
                let clock = ManualClock::starting_at(chrono::Utc::now());
                let sessions = SessionLayer::new(f.store.clone()).clock(clock.clone());
                let users: Arc<dyn UserStore> = Arc::new(f.store.clone());
                let remember =
                    RememberMe::with_shared_store(users.clone(), sessions.admin()).clock(clock.clone());
                let cookie = sessions.config().remember_cookie_name().to_owned();
                let router = Router::new()
                    .route(
                        "/login/{user}",
                        post(
                            |session: Session, remember: Remember, Path(user): Path<String>| async move {
                                session.login(user).await?;
                                remember.this_device().await?;
                                Reply::Ok((StatusCode::OK, "in".into()))
                            },
                        ),
                    )
                    .route(
                        "/note-login-remember/{user}/{code}",
                        post({
                            let f = f.clone();
                            move |session: Session,
                                  remember: Remember,
                                  cnx: Cnx<Db>,
                                  Path((user, code)): Path<(String, u16)>| async move {
                                add_note(&f, &cnx, &user, "remember me").await?;
                                session.login(user).await?;
                                remember.this_device().await?;
                                Reply::Ok((status(code), "in".into()))
                            }
                        }),
                    )
                    .route(
                        "/note-then-who/{code}",
                        post({
                            let f = f.clone();
                            move |session: Session, cnx: Cnx<Db>, Path(code): Path<u16>| async move {
                                add_note(&f, &cnx, "anon", "before the session").await?;
                                let who = session.user_id().await?.unwrap_or_else(|| "nobody".into());
                                Reply::Ok((status(code), who))
                            }
                        }),
                    )
                    .route(
                        "/whoami",
                        get(|session: Session| async move {
                            let user = session.user_id().await?.unwrap_or_else(|| "nobody".into());
                            Reply::Ok((StatusCode::OK, user))
                        }),
                    )
                    .layer(sessions.with_auth(AuthLayer::new().remember(remember)))
                    .layer(audited(&f, CnxLayer::new(f.pool.clone()), false));
                let restarted = |browser: &Client| {
                    let mut fresh = Client::new(router.clone());
                    let value = browser.jar.get(&cookie).expect("remember-me cookie").to_owned();
                    fresh.jar.insert(cookie.clone(), value);
                    fresh
                };
                let sessions_of = |user: &str| {
                    let user = user.to_owned();
                    let store = f.store.clone();
                    async move { store.list_for_user(&user).await.expect("list").len() }
                };

                // The rotation at a restore stands with the rollback.
                let mut ada = Client::new(router.clone());
                assert_eq!(ada.post("/login/ada").await.status, 200);
                let mut ada = restarted(&ada);
                let reply = ada.post("/note-then-who/422").await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (422, "ada"));
                assert_eq!(count(&f, "_notes").await, 0, "the handler's write rolled back");
                clock.advance(TimeDelta::minutes(5));
                assert_eq!(
                    restarted(&ada).get("/whoami").await.body,
                    "ada",
                    "the rotated cookie restores: it is the stored token"
                );
                assert!(sessions_of("ada").await >= 2, "no alarm ended ada's sessions");

                // A replayed token's alarm stands with the rollback, and the
                // hooks hear of it, whether the thief's request answered a
                // client error or a server error.
                for (user, code) in [("grace", 422), ("hana", 500)] {
                    let mut owner = Client::new(router.clone());
                    assert_eq!(owner.post(&format!("/login/{user}")).await.status, 200);
                    let copy = owner.jar.get(&cookie).expect("cookie").to_owned();
                    assert_eq!(restarted(&owner).get("/whoami").await.body, user);
                    assert_eq!(sessions_of(user).await, 2);
                    clock.advance(TimeDelta::minutes(5));
                    let mut thief = Client::new(router.clone());
                    thief.jar.insert(cookie.clone(), copy);
                    let reply = thief.post(&format!("/note-then-who/{code}")).await;
                    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (code, "nobody"));
                    assert_eq!(sessions_of(user).await, 0, "every session of {user} ended");
                    assert!(
                        users.list_remembered(user).await.expect("list").is_empty(),
                        "and every remembered browser of {user}"
                    );
                    assert_eq!(owner.get("/whoami").await.body, "nobody");
                }
                // A series issued in a transaction that rolls back goes
                // with it, and so does its cookie: the response sets none
                // for a row that does not exist.
                let mut ivy = Client::new(router.clone());
                let reply = ivy.post("/note-login-remember/ivy/422").await;
                assert_eq!(reply.status.as_u16(), 422);
                assert!(
                    !reply
                        .set_cookies()
                        .iter()
                        .any(|c| c.starts_with(&format!("{cookie}="))),
                    "no remember-me cookie: {:?}",
                    reply.set_cookies()
                );
                assert!(users.list_remembered("ivy").await.expect("list").is_empty());
                assert!(ivy.jar.get(&cookie).is_none());
                assert_eq!(count(&f, "_notes").await, 0, "the handlers' writes rolled back");
                let audited: Vec<String> = sqlx::query_scalar(f.sql(
                    "SELECT what FROM {t}_audit WHERE what LIKE 'theft%' ORDER BY what",
                ))
                .fetch_all(&f.pool)
                .await
                .expect("audit");
                assert_eq!(audited, ["theft grace 2", "theft hana 2"]);
            }

            /// The accounts' writes in a request that wrote through its
            /// `Cnx` first: they join its transaction, so they commit or
            /// roll back with the handler's work (and on SQLite they no
            /// longer wait for the request's own write lock, a 503 after
            /// the lock budget). Those that must stand whatever the
            /// response (a counted failed sign-in, a one-time token used
            /// up) are made again after a rollback.
            #[tokio::test]
            async fn account_writes_join_the_request_transaction_and_failures_stand() {
                use keycard::auth::AccountError;

                let Some(f) = fixture(4).await else { return };
                let sessions = SessionLayer::new(f.store.clone());
                let (passwords, links) = accounts(&f, &sessions);
                let router = Router::new()
                    .route(
                        "/register/{user}/{code}",
                        post({
                            let (f, passwords) = (f.clone(), passwords.clone());
                            move |cnx: Cnx<Db>, Path((user, code)): Path<(String, u16)>| async move {
                                add_note(&f, &cnx, &user, "profile").await?;
                                let made = match passwords.create_user(&user, "a long secret").await {
                                    Ok(_) => "made",
                                    // The taken name's refused insert leaves
                                    // the transaction usable.
                                    Err(AccountError::Exists) => "taken",
                                    Err(error) => return Err(error.into()),
                                };
                                add_note(&f, &cnx, &user, made).await?;
                                Reply::Ok((status(code), made.into()))
                            }
                        }),
                    )
                    .route(
                        "/wrong-password/{user}/{code}",
                        post({
                            let (f, passwords) = (f.clone(), passwords.clone());
                            move |cnx: Cnx<Db>, Path((user, code)): Path<(String, u16)>| async move {
                                add_note(&f, &cnx, &user, "attempt").await?;
                                let refused = passwords.verify(&user, "not the secret").await.is_err();
                                Reply::Ok((status(code), format!("refused {refused}")))
                            }
                        }),
                    )
                    .route(
                        "/redeem/{secret}/{code}",
                        post({
                            let (f, links) = (f.clone(), links.clone());
                            move |cnx: Cnx<Db>, Path((secret, code)): Path<(String, u16)>| async move {
                                add_note(&f, &cnx, "link", "redeem").await?;
                                let user = links.redeem(&secret, "reset").await?;
                                Reply::Ok((status(code), user.unwrap_or_else(|| "none".into())))
                            }
                        }),
                    )
                    .layer(sessions)
                    .layer(CnxLayer::new(f.pool.clone()));
                let mut client = Client::new(router);
                let failures = |user: &'static str| {
                    let passwords = passwords.clone();
                    async move {
                        passwords.account(user).await.expect("account").map(|a| a.failures)
                    }
                };

                // An account created in a request that answers an error
                // goes with the handler's work; one that succeeds stays.
                let reply = client.post("/register/ada/422").await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (422, "made"));
                assert_eq!(failures("ada").await, None, "no account: it rolled back");
                assert_eq!(count(&f, "_notes").await, 0);
                let reply = client.post("/register/ada/200").await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "made"));
                assert_eq!(failures("ada").await, Some(0));
                assert_eq!(count(&f, "_notes").await, 2);
                let reply = client.post("/register/ada/200").await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "taken"));
                assert_eq!(count(&f, "_notes").await, 4, "the transaction went on");

                // A failed sign-in is counted whatever the response.
                for (code, counted) in [(401, 1), (422, 2), (500, 3), (200, 4)] {
                    let reply = client.post(&format!("/wrong-password/ada/{code}")).await;
                    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (code, "refused true"));
                    assert_eq!(failures("ada").await, Some(counted), "after a {code}");
                }
                assert_eq!(count(&f, "_notes").await, 5, "only the success's note");

                // A one-time token used in a request that rolls back stays
                // used.
                let secret = links
                    .mint("ada", "reset", Duration::from_secs(600))
                    .await
                    .expect("mint")
                    .expect("a secret");
                let reply = client.post(&format!("/redeem/{secret}/422")).await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (422, "ada"));
                let reply = client.post(&format!("/redeem/{secret}/200")).await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "none"));
                assert_eq!(links.peek(&secret, "reset").await.expect("peek"), None);
                assert_eq!(count(&f, "_notes").await, 6);
            }

            /// A TOTP code used to complete a sign-in inside a transaction
            /// that rolls back stays used: the same code does not complete
            /// another browser's sign-in, and a wrong code counts toward the
            /// lockout whatever the response.
            #[tokio::test]
            async fn a_totp_code_used_in_a_rolled_back_transaction_stays_used() {
                use keycard::auth::{AccountError, SecondFactor, SignInStep, method};

                let Some(f) = fixture(4).await else { return };
                let clock = ManualClock::starting_at(chrono::Utc::now());
                let sessions = SessionLayer::new(f.store.clone()).clock(clock.clone());
                let passwords = accounts(&f, &sessions).0.clock(clock.clone());
                let factors = SecondFactor::new(passwords.clone()).clock(clock.clone());
                passwords.create_user("ada", "a long secret").await.expect("ada");
                let code_now = {
                    let clock = clock.clone();
                    move |secret: &str| {
                        use keycard::clock::Clock as _;
                        let secret = totp_rs::Secret::try_from_base32(secret).expect("base32");
                        let totp = totp_rs::Builder::new().with_secret(secret).build().expect("totp");
                        let at = u64::try_from(clock.now().timestamp()).expect("after 1970");
                        totp.generate(at).to_string()
                    }
                };
                let router = Router::new()
                    .route(
                        "/in",
                        post(|session: Session| async move {
                            session.login("ada").await?;
                            Reply::Ok((StatusCode::OK, "in".into()))
                        }),
                    )
                    .route(
                        "/enrol",
                        post({
                            let factors = factors.clone();
                            move |session: Session| async move {
                                let enrolment = factors.enrol_totp(&session).await?;
                                Reply::Ok((StatusCode::OK, enrolment.secret_base32().to_owned()))
                            }
                        }),
                    )
                    .route(
                        "/confirm/{code}",
                        post({
                            let factors = factors.clone();
                            move |session: Session, Path(code): Path<String>| async move {
                                factors.confirm_totp(&session, &code).await?;
                                Reply::Ok((StatusCode::OK, "confirmed".into()))
                            }
                        }),
                    )
                    .route(
                        "/complete/{code}/{code_status}",
                        post({
                            let (f, factors) = (f.clone(), factors.clone());
                            move |session: Session,
                                  cnx: Cnx<Db>,
                                  Path((code, code_status)): Path<(String, u16)>| async move {
                                add_note(&f, &cnx, "ada", "second factor").await?;
                                let step = factors.sign_in(&session, "ada", method::PASSWORD).await?;
                                assert!(matches!(step, SignInStep::SecondFactorDue(_)));
                                let done = match factors.complete_with_totp(&session, &code).await {
                                    Ok(()) => "in",
                                    Err(AccountError::WrongCode) => "wrong",
                                    Err(error) => return Err(error.into()),
                                };
                                Reply::Ok((status(code_status), done.into()))
                            }
                        }),
                    )
                    .layer(sessions)
                    .layer(CnxLayer::new(f.pool.clone()));
                let mut owner = Client::new(router.clone());
                assert_eq!(owner.post("/in").await.status, 200);
                let secret = owner.post("/enrol").await.body;
                let reply = owner.post(&format!("/confirm/{}", code_now(&secret))).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                clock.advance(TimeDelta::seconds(30));
                let failures = || async {
                    passwords.account("ada").await.expect("account").expect("ada").failures
                };

                let code = code_now(&secret);
                let mut first = Client::new(router.clone());
                let reply = first.post(&format!("/complete/{code}/422")).await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (422, "in"));
                let mut second = Client::new(router.clone());
                let reply = second.post(&format!("/complete/{code}/200")).await;
                assert_eq!(
                    (reply.status.as_u16(), reply.body.as_str()),
                    (200, "wrong"),
                    "the code was used up by the request that rolled back"
                );
                let before = failures().await;
                let reply = second.post("/complete/000000/422").await;
                assert_eq!((reply.status.as_u16(), reply.body.as_str()), (422, "wrong"));
                assert_eq!(failures().await, before + 1, "the wrong code counted");
                assert_eq!(count(&f, "_notes").await, 1, "only the success's note");
            }

            /// A request cancelled after a wrong password (its future
            /// dropped while it holds the transaction, as a timeout does):
            /// the handler's write goes, the counted failure stands.
            #[tokio::test]
            async fn a_failure_counted_in_a_cancelled_request_stands() {
                let Some(f) = fixture(4).await else { return };
                let sessions = SessionLayer::new(f.store.clone());
                let (passwords, _) = accounts(&f, &sessions);
                passwords.create_user("ada", "a long secret").await.expect("ada");
                let app = Router::new()
                    .route(
                        "/wrong-then-hang",
                        post({
                            let (f, passwords) = (f.clone(), passwords.clone());
                            move |cnx: Cnx<Db>| async move {
                                add_note(&f, &cnx, "ada", "attempt").await?;
                                assert!(passwords.verify("ada", "not the secret").await.is_err());
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                Reply::Ok((StatusCode::OK, "never".into()))
                            }
                        }),
                    )
                    .layer(sessions)
                    .layer(CnxLayer::new(f.pool.clone()));
                let request = Request::post("/wrong-then-hang")
                    .body(axum::body::Body::empty())
                    .expect("request");
                let cancelled =
                    tokio::time::timeout(Duration::from_millis(500), app.oneshot(request)).await;
                assert!(cancelled.is_err(), "the request was cancelled");
                // Made again on a task of its own once the request is gone.
                let mut failures = None;
                for _ in 0..100 {
                    failures = passwords.account("ada").await.expect("account").map(|a| a.failures);
                    if failures == Some(1) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert_eq!(failures, Some(1), "the failure stands");
                assert_eq!(count(&f, "_notes").await, 0, "the handler's write went");
            }

            /// A one-time token used in a transaction that rolls back, while
            /// another request waits to use the same token: whichever makes
            /// the use that stands, the token works once. If the other
            /// request gets it, the first one's session keeps nothing it
            /// gained (its answer becomes `409`).
            #[tokio::test]
            async fn a_token_used_in_a_rolled_back_transaction_is_never_used_twice() {
                let Some(f) = fixture(4).await else { return };
                let sessions = SessionLayer::new(f.store.clone());
                let (passwords, links) = accounts(&f, &sessions);
                passwords.create_user("ada", "a long secret").await.expect("ada");
                let other = Arc::new(Mutex::new(None));
                let router = Router::new()
                    .route(
                        "/start",
                        post(|session: Session| async move {
                            session.insert("gained", false).await?;
                            Reply::Ok((StatusCode::OK, "started".into()))
                        }),
                    )
                    .route(
                        "/gained",
                        get(|session: Session| async move {
                            let gained: Option<bool> = session.get("gained").await?;
                            Reply::Ok((StatusCode::OK, format!("{gained:?}")))
                        }),
                    )
                    .route(
                        "/redeem/{secret}",
                        post({
                            let (f, links, other) = (f.clone(), links.clone(), other.clone());
                            move |session: Session, cnx: Cnx<Db>, Path(secret): Path<String>| async move {
                                add_note(&f, &cnx, "link", "redeem").await?;
                                let user = links.redeem(&secret, "reset").await?;
                                // Another request, on a connection of its
                                // own, tries the same token and waits for
                                // this transaction.
                                let (links, secret_again) = (links.clone(), secret.clone());
                                let task = tokio::spawn(async move {
                                    links.redeem(&secret_again, "reset").await.expect("redeem")
                                });
                                *other.lock().expect("other") = Some(task);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                session.insert("gained", user.is_some()).await?;
                                Reply::Ok((status(422), user.unwrap_or_else(|| "none".into())))
                            }
                        }),
                    )
                    .layer(sessions)
                    .layer(CnxLayer::new(f.pool.clone()));
                let mut client = Client::new(router);
                assert_eq!(client.post("/start").await.status, 200);
                let secret = links
                    .mint("ada", "reset", Duration::from_secs(600))
                    .await
                    .expect("mint")
                    .expect("a secret");
                let reply = client.post(&format!("/redeem/{secret}")).await;
                let task = other.lock().expect("other").take().expect("the other request");
                let other_got = task.await.expect("the other request ran");
                let gained = client.get("/gained").await.body;
                match other_got {
                    Some(user) => {
                        assert_eq!(user, "ada");
                        assert_eq!(reply.status.as_u16(), 409, "{}", reply.body);
                        assert_eq!(gained, "Some(false)", "the session kept nothing");
                    }
                    None => {
                        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (422, "ada"));
                        assert_eq!(gained, "Some(true)");
                    }
                }
                assert_eq!(links.peek(&secret, "reset").await.expect("peek"), None);
                assert_eq!(count(&f, "_notes").await, 0);
            }
        ); }
    };
}
