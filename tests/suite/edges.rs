//! Where applications meet keycard: cross-origin refusal, synchronizer
//! tokens, private responses never cached, and the background purge.

use std::time::Duration;

use axum::http::{StatusCode, header};
use chrono::TimeDelta;

use crate::common::{Client, Reply, TestStore, app};

/// The state-changing routes of the suite's app a forger would aim at.
const UNSAFE_ROUTES: &[&str] = &[
    "/incr",
    "/set/colour/red",
    "/login/mallory",
    "/logout",
    "/sessions/end-others",
    "/regenerate",
    "/clear",
];

/// What a browser sends with a form auto-submitted by another origin's
/// page: each set is one forgery.
fn forgeries() -> Vec<Vec<(String, String)>> {
    let h = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    vec![
        // Another port of the same host: same site, so Lax cookies come.
        h(&[
            ("host", "app.test"),
            ("sec-fetch-site", "same-site"),
            ("origin", "https://app.test:8443"),
        ]),
        // A subdomain: same site too.
        h(&[
            ("host", "app.test"),
            ("sec-fetch-site", "same-site"),
            ("origin", "https://evil.app.test"),
        ]),
        // Another site.
        h(&[
            ("host", "app.test"),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ]),
        // An older browser: Origin only.
        h(&[("host", "app.test"), ("origin", "https://app.test:8443")]),
        h(&[("host", "app.test"), ("origin", "https://evil.example")]),
        h(&[("host", "app.test"), ("origin", "http://app.test")]),
        // Sandboxed frames and privacy redirects send `null`.
        h(&[("host", "app.test"), ("origin", "null")]),
    ]
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "{what}: {}",
        reply.body
    );
    assert!(reply.set_cookies().is_empty(), "{what}: no cookie");
    assert!(
        reply.body.contains("Cross-origin request refused"),
        "{what}: says why: {}",
        reply.body
    );
    assert_eq!(
        reply
            .headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
}

/// A signed-in browser of alice with a counter and a second session.
async fn victim(store: &TestStore) -> (Client, Client) {
    let mut other_device = Client::new(app(store.layer()));
    other_device.post("/login/alice").await;
    let mut client = Client::new(app(store.layer()));
    client.post("/incr").await;
    client.post("/login/alice").await;
    assert_eq!(client.get("/whoami").await.body, "alice");
    (client, other_device)
}

pub async fn cross_origin_unsafe_requests_are_refused_before_any_session_work(store: TestStore) {
    let (mut client, mut other_device) = victim(&store).await;
    let id = client.session_id().expect("id");
    let before = store.row(id).await.expect("row");
    let jar = client.jar.clone();
    for headers in forgeries() {
        for route in UNSAFE_ROUTES {
            store.calls().reset();
            client.set_headers(headers.clone());
            let reply = client.post(route).await;
            let what = format!("{route} with {headers:?}");
            assert_refused(&reply, &what);
            assert_eq!(store.calls().total(), 0, "{what}: no store call at all");
            assert_eq!(client.jar, jar, "{what}: cookies unchanged");
        }
    }
    client.headers.clear();
    assert_eq!(store.row(id).await.expect("row"), before, "row unchanged");
    assert_eq!(client.get("/whoami").await.body, "alice");
    assert_eq!(client.get("/read").await.body, "1");
    assert_eq!(other_device.get("/whoami").await.body, "alice");
    // Without any cookie (a cross-site POST under SameSite=Lax): refused
    // too, so a forged form cannot plant a fresh session over the victim's.
    let mut cookieless = client.new_browser();
    cookieless.set_headers(forgeries().swap_remove(2));
    let reply = cookieless.post("/set/colour/red").await;
    assert_refused(&reply, "cookieless cross-site post");
}

pub async fn same_origin_and_headerless_unsafe_requests_pass(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![("sec-fetch-site", "none")],
        vec![("host", "app.test"), ("origin", "https://app.test")],
        vec![("host", "app.test:443"), ("origin", "https://APP.test")],
        // A client that is not a browser sends neither header.
        vec![],
    ] {
        client.set_headers(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>(),
        );
        let reply = client.post("/incr").await;
        assert_eq!(reply.status, StatusCode::OK, "{headers:?}");
    }
    client.headers.clear();
    assert_eq!(client.get("/read").await.body, "5");
    // Safe methods are never refused, whatever the headers say.
    client.set_headers(forgeries().swap_remove(2));
    assert_eq!(client.get("/read").await.status, StatusCode::OK);
}

pub async fn trusted_origins_and_exempt_paths_take_cross_origin_requests(store: TestStore) {
    let layer = store
        .layer()
        .trusted_origin("https://partner.example")
        .allow_cross_origin_under("/set");
    let mut client = Client::new(app(layer));
    client.set_headers(vec![
        ("sec-fetch-site".into(), "cross-site".into()),
        ("origin".into(), "https://partner.example".into()),
    ]);
    assert_eq!(client.post("/incr").await.status, StatusCode::OK);
    client.set_headers(vec![
        ("sec-fetch-site".into(), "cross-site".into()),
        ("origin".into(), "https://evil.example".into()),
    ]);
    assert_eq!(client.post("/incr").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        client.post("/set/colour/red").await.status,
        StatusCode::OK,
        "exempt path (a webhook)"
    );
    let layer = store.layer().disable_origin_check();
    let mut unchecked = Client::new(app(layer));
    unchecked.headers = client.headers.clone();
    assert_eq!(unchecked.post("/incr").await.status, StatusCode::OK);
}

pub async fn malformed_and_repeated_fetch_headers_are_refused_cleanly(store: TestStore) {
    let app = app(store.layer());
    let long = "x".repeat(8000);
    let cases: Vec<Vec<(&str, &[u8])>> = vec![
        vec![
            ("sec-fetch-site", b"same-origin"),
            ("sec-fetch-site", b"same-origin"),
        ],
        vec![("sec-fetch-site", b"SAME-ORIGIN")],
        vec![("sec-fetch-site", b"\xff\xfe")],
        vec![("sec-fetch-site", b"")],
        vec![
            ("origin", b"https://app.test"),
            ("origin", b"https://app.test"),
        ],
        vec![("origin", b"\xff")],
        vec![("origin", b"https://app.test/path")],
        vec![("origin", b"https://user@app.test")],
        vec![("origin", b"https://app.test:99999")],
        vec![("origin", long.as_bytes())],
    ];
    for case in cases {
        let mut request = axum::http::Request::post("/incr").header("host", "app.test");
        for (name, value) in &case {
            request = request.header(*name, *value);
        }
        let request = request.body(axum::body::Body::empty()).expect("request");
        store.calls().reset();
        let reply = crate::common::send_raw(&app, request).await;
        assert_refused(&reply, &format!("{case:?}"));
        assert_eq!(store.calls().total(), 0);
    }
}

fn form_headers() -> Vec<(String, String)> {
    vec![("sec-fetch-site".into(), "same-origin".into())]
}

pub async fn the_synchronizer_token_guards_forms_and_rotates_at_sign_in(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    client.set_headers(form_headers());
    // No stored session yet: asking stores nothing, and a form without a
    // session to ride on is accepted (cross-origin ones are refused by the
    // origin check).
    store.calls().reset();
    let first = client.get("/csrf").await;
    assert_eq!(first.body.len(), 43, "a token for the session to be");
    assert!(first.set_cookies().is_empty(), "asking stores nothing");
    assert_eq!(store.calls().writes(), 0);
    let reply = client
        .post_form("/guarded/note", &[("note", "first")])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(client.get("/get/note").await.body, "first");

    // A stored session: the form needs its token.
    let token = client.get("/csrf").await.body;
    assert_eq!(
        client.get("/csrf").await.body,
        token,
        "stable between requests"
    );
    let id = client.session_id().expect("id");
    let before = store.row(id).await.expect("row");
    let other_session_token = {
        let mut other = client.new_browser();
        other.headers.clear();
        other.post("/incr").await;
        other.get("/csrf").await.body
    };
    let long = "a".repeat(100_000);
    for fields in [
        vec![("note", "forged")],
        vec![("note", "forged"), ("csrf_token", "")],
        vec![("note", "forged"), ("csrf_token", &token[..42])],
        vec![("note", "forged"), ("csrf_token", &other_session_token)],
        vec![
            ("note", "forged"),
            ("csrf_token", &token),
            ("csrf_token", &other_session_token),
        ],
        vec![("note", "forged"), ("csrf_token", &long)],
    ] {
        let reply = client.post_form("/guarded/note", &fields).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{:.60}",
            format!("{fields:?}")
        );
        assert!(reply.set_cookies().is_empty());
    }
    assert_eq!(store.row(id).await.expect("row"), before, "nothing changed");
    let reply = client
        .post_form(
            "/guarded/note",
            &[("note", "second"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(client.get("/get/note").await.body, "second");
    // A body that is not a form, and a form missing the handler's field.
    let reply = client
        .post_form("/guarded/note", &[("csrf_token", &token)])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // The header form, for scripts.
    client
        .headers
        .append("x-csrf-token", token.parse().expect("a header value"));
    assert_eq!(client.post("/guarded/incr").await.status, StatusCode::OK);
    client.set_headers(form_headers());
    assert_eq!(
        client.post("/guarded/incr").await.status,
        StatusCode::FORBIDDEN
    );

    // Sign-in rotates the session token, and the synchronizer token with it.
    client.post("/login/alice").await;
    let after = client.get("/csrf").await.body;
    assert_ne!(after, token);
    let reply = client
        .post_form(
            "/guarded/note",
            &[("note", "stale"), ("csrf_token", &token)],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a token from before sign-in"
    );
    let reply = client
        .post_form(
            "/guarded/note",
            &[("note", "fresh"), ("csrf_token", &after)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // And so do regenerate and sign-out.
    client.post("/regenerate").await;
    let regenerated = client.get("/csrf").await.body;
    assert_ne!(regenerated, after);
    client.post("/logout").await;
    assert_ne!(client.get("/csrf").await.body, regenerated);
}

fn cache_control(reply: &Reply) -> Option<&str> {
    reply
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
}

fn varies_on_cookie(reply: &Reply) -> bool {
    reply.headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("cookie"))
    })
}

pub async fn signed_in_responses_are_never_cached(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    let anonymous = client.get("/read").await;
    assert_eq!(cache_control(&anonymous), None, "nothing private yet");
    assert!(varies_on_cookie(&anonymous), "it read the session");
    let untouched = client.get("/anon").await;
    assert_eq!(cache_control(&untouched), None);
    assert!(
        !varies_on_cookie(&untouched),
        "an untouched session: no header"
    );

    let login = client.post("/login/alice").await;
    assert_eq!(cache_control(&login), Some("no-store"));
    for page in ["/whoami", "/read", "/sessions", "/info"] {
        let reply = client.get(page).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}");
        assert_eq!(cache_control(&reply), Some("no-store"), "{page}");
        assert!(varies_on_cookie(&reply), "{page}");
    }
    // The handler's own choice is kept on a response that sets no cookie...
    let own = client.get("/own-cache-control").await;
    assert_eq!(cache_control(&own), Some("private, max-age=60"));
    // ...but not on one that sets or expires the cookies.
    let logout = client.post("/logout").await;
    assert_eq!(cache_control(&logout), Some("no-store"));
    assert_eq!(logout.set_cookies().len(), 2);
    assert!(
        logout.headers.get("clear-site-data").is_none(),
        "off by default"
    );
    // A server error of a signed-in session is private too.
    client.post("/login/alice").await;
    let failed = client.post("/login-then-fail/bob").await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(cache_control(&failed), Some("no-store"));
}

pub async fn sign_out_can_clear_the_site_cache(store: TestStore) {
    let mut client = Client::new(app(store.layer().clear_site_data_on_logout(true)));
    client.post("/incr").await;
    let anonymous_logout = client.post("/logout").await;
    assert!(
        anonymous_logout.headers.get("clear-site-data").is_none(),
        "nobody was signed in"
    );
    client.post("/login/alice").await;
    let logout = client.post("/logout").await;
    assert_eq!(
        logout
            .headers
            .get("clear-site-data")
            .and_then(|v| v.to_str().ok()),
        Some("\"cache\"")
    );
}

pub async fn expired_rows_are_purged_in_the_background_by_default(store: TestStore) {
    let layer = keycard::SessionLayer::with_shared_store(store.counting.clone())
        .clock(store.clock.clone())
        .purge_interval(Duration::from_secs(1));
    assert_eq!(
        layer.config().purge_interval(),
        Some(Duration::from_secs(1))
    );
    let mut client = Client::new(app(layer.clone()));
    client.post("/incr").await;
    let id = client.session_id().expect("id");
    store.clock.advance(TimeDelta::hours(1));
    // Another session, still active at the new time.
    let mut fresh = Client::new(app(layer));
    fresh.post("/incr").await;
    let fresh_id = fresh.session_id().expect("id");
    // Requests find the purge due: even one whose handler never touches
    // its session.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.row(id).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired row was not purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        fresh.get("/anon").await;
    }
    assert!(store.row(fresh_id).await.is_some(), "active rows stay");
    assert_eq!(
        keycard::SessionLayer::with_shared_store(store.counting.clone())
            .config()
            .purge_interval(),
        Some(Duration::from_secs(600)),
        "on by default"
    );
}
