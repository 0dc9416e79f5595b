//! Per-request fixed costs of keycard, through its public API only.
//!
//! ```text
//! cargo bench --bench fixed_costs
//! ```
//!
//! * `token/*`: drawing a token, hashing it, and reading the two session
//!   cookies of a request the way the layer does (split the `Cookie`
//!   header, parse the id and the token, hash the token).
//! * `layer/*`: an axum router answering a route that never touches the
//!   session, with and without `SessionLayer` (SQLite in memory), driven
//!   in-process with `tower::ServiceExt::oneshot`; the difference is what
//!   the layer costs a request that does not use the session.
//! * `cnx/*`: what `CnxLayer` adds to a request, side by side with the
//!   same work done by hand on the pool (SQLite in memory): a route that
//!   never uses its `Cnx`, a one-row read, and a one-row insert committed
//!   in a transaction.
//! * `record/*`: serde_json of a 10-key `serde_json::Map`, the shape keycard
//!   stores a session's data in.

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use keycard::token::SessionToken;
use keycard::{SessionId, SessionLayer, SqliteStore};
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;

fn token(c: &mut Criterion) {
    let mut group = c.benchmark_group("token");
    group.bench_function("generate", |b| {
        b.iter(|| SessionToken::generate().expect("OS randomness"))
    });
    let token = SessionToken::generate().expect("OS randomness");
    group.bench_function("hash", |b| b.iter(|| black_box(&token).hash()));
    let text = token.expose();
    group.bench_function("parse_id_and_token", |b| {
        b.iter(|| {
            let id: SessionId = black_box("123456789").parse().expect("id");
            let token: SessionToken = black_box(text.as_str()).parse().expect("token");
            (id, token)
        })
    });
    group.bench_function("parse_and_hash", |b| {
        b.iter(|| {
            let id: SessionId = black_box("123456789").parse().expect("id");
            let token: SessionToken = black_box(text.as_str()).parse().expect("token");
            (id, token.hash())
        })
    });
    // The whole cookie step of a request: a `Cookie` header holding another
    // application's cookie and ours, split and parsed with the `cookie`
    // crate as the layer does, then the id and token parsed and hashed.
    let header = format!("theme=dark; keycard-id=123456789; keycard-token={text}; lang=en");
    group.bench_function("cookie_header_to_hash", |b| {
        b.iter(|| {
            let mut id = None;
            let mut token = None;
            for cookie in cookie::Cookie::split_parse(black_box(header.as_str())).flatten() {
                let (name, value) = cookie.name_value();
                if name == "keycard-id" {
                    id = Some(value.to_owned());
                } else if name == "keycard-token" {
                    token = Some(value.to_owned());
                }
            }
            let id: SessionId = id.expect("id").parse().expect("id");
            let token: SessionToken = token.expect("token").parse().expect("token");
            (id, token.hash())
        })
    });
    group.finish();
}

fn routes() -> Router {
    Router::new().route("/anon", get(|| async { "ok" }))
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt.block_on(async {
        let store = SqliteStore::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        store.migrate().await.expect("migrate");
        store
    });
    let session_layer = SessionLayer::new(store).insecure_dev_cookies();
    let id_cookie = session_layer.config().id_cookie_name().to_owned();
    let token_cookie = session_layer.config().token_cookie_name().to_owned();
    let bare = routes();
    let with_layer = routes().layer(session_layer);
    let token = SessionToken::generate().expect("OS randomness").expose();
    let cookies = format!("{id_cookie}=42; {token_cookie}={token}");

    let request = |cookie: Option<&str>| {
        let mut builder = Request::get("/anon");
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        builder.body(Body::empty()).expect("request")
    };
    let check = |app: Router, cookie: Option<&str>| {
        let response = rt
            .block_on(app.oneshot(request(cookie)))
            .expect("infallible");
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("set-cookie").is_none());
    };
    check(bare.clone(), None);
    check(with_layer.clone(), None);
    check(with_layer.clone(), Some(&cookies));

    let mut group = c.benchmark_group("layer");
    group.bench_function("router_without_layer", |b| {
        b.to_async(&rt).iter(|| bare.clone().oneshot(request(None)))
    });
    group.bench_function("router_with_layer_no_cookie", |b| {
        b.to_async(&rt)
            .iter(|| with_layer.clone().oneshot(request(None)))
    });
    group.bench_function("router_with_layer_untouched_session", |b| {
        b.to_async(&rt)
            .iter(|| with_layer.clone().oneshot(request(Some(&cookies))))
    });
    group.finish();
}

fn record(c: &mut Criterion) {
    let mut map = Map::new();
    map.insert("counter".into(), json!(41));
    map.insert("user".into(), json!("ada@example.org"));
    map.insert("csrf".into(), json!("Zm9vYmFyYmF6cXV4cXV1eHF1dXg"));
    map.insert("theme".into(), json!("dark"));
    map.insert("lang".into(), json!("en-GB"));
    map.insert("cart".into(), json!([101, 202, 303]));
    map.insert("flash".into(), json!(null));
    map.insert("last_seen".into(), json!("2026-04-01T12:34:56Z"));
    map.insert("admin".into(), json!(false));
    map.insert("prefs".into(), json!({"tz": "Europe/London", "page": 25}));
    let text = serde_json::to_string(&map).expect("serialise");

    let mut group = c.benchmark_group("record");
    group.bench_function("serialise_10_keys", |b| {
        b.iter(|| serde_json::to_string(black_box(&map)).expect("serialise"))
    });
    group.bench_function("deserialise_10_keys", |b| {
        b.iter(|| serde_json::from_str::<Map<String, Value>>(black_box(&text)).expect("parse"))
    });
    group.finish();
}

fn cnx(c: &mut Criterion) {
    use keycard::cnx::{Cnx, CnxLayer};
    use sqlx::Sqlite;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pool = rt.block_on(async {
        let store = SqliteStore::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let pool = store.pool().clone();
        sqlx::raw_sql("CREATE TABLE rows (n INTEGER)")
            .execute(&pool)
            .await
            .expect("table");
        pool
    });
    let by_hand = {
        let (read, write) = (pool.clone(), pool.clone());
        Router::new()
            .route("/anon", get(|| async { "ok" }))
            .route(
                "/read",
                get(move || async move {
                    let n: i64 = sqlx::query_scalar("SELECT 1")
                        .fetch_one(&read)
                        .await
                        .expect("read");
                    n.to_string()
                }),
            )
            .route(
                "/write",
                get(move || async move {
                    let mut tx = write.begin_with("BEGIN IMMEDIATE").await.expect("begin");
                    sqlx::query("INSERT INTO rows (n) VALUES (1)")
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    tx.commit().await.expect("commit");
                    "ok"
                }),
            )
    };
    let through_cnx = Router::new()
        .route("/anon", get(|| async { "ok" }))
        .route(
            "/read",
            get(|cnx: Cnx<Sqlite>| async move {
                let n: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *cnx.read().await?)
                    .await?;
                Ok::<_, keycard::Error>(n.to_string())
            }),
        )
        .route(
            "/write",
            get(|cnx: Cnx<Sqlite>| async move {
                sqlx::query("INSERT INTO rows (n) VALUES (1)")
                    .execute(&mut *cnx.write().await?)
                    .await?;
                Ok::<_, keycard::Error>("ok")
            }),
        )
        .layer(CnxLayer::new(pool.clone()));
    let request = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    for app in [&by_hand, &through_cnx] {
        for path in ["/anon", "/read", "/write"] {
            let response = rt
                .block_on(app.clone().oneshot(request(path)))
                .expect("infallible");
            assert_eq!(response.status(), 200, "{path}");
        }
    }

    let mut group = c.benchmark_group("cnx");
    for (name, path) in [
        ("untouched", "/anon"),
        ("read_one_row", "/read"),
        ("write_one_row", "/write"),
    ] {
        group.bench_function(format!("{name}_by_hand"), |b| {
            b.to_async(&rt)
                .iter(|| by_hand.clone().oneshot(request(path)))
        });
        group.bench_function(format!("{name}_through_cnx"), |b| {
            b.to_async(&rt)
                .iter(|| through_cnx.clone().oneshot(request(path)))
        });
    }
    group.finish();
}

criterion_group!(benches, token, layer, cnx, record);
criterion_main!(benches);
