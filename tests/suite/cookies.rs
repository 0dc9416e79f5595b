//! Cookie parsing and attributes.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use keycard::token::SessionToken;

use crate::common::{Client, TestStore, app, send_raw};

fn valid_token() -> String {
    SessionToken::generate().expect("rng").expose()
}

async fn read_with_cookie(store: &TestStore, cookie: &str) -> (StatusCode, String, usize) {
    let request = Request::get("/read")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request");
    let reply = send_raw(&app(store.layer()), request).await;
    let set_cookies = reply.set_cookies().len();
    (reply.status, reply.body, set_cookies)
}

pub async fn malformed_cookies_are_absent_and_cost_no_query(store: TestStore) {
    let token = valid_token();
    let short = &token[..42];
    let padded = format!("{}=", &token[..42]);
    let std_alphabet = format!("{}+", &token[..42]);
    // Whitespace around a value is not part of it (RFC 6265 5.2 trims it, as
    // the `cookie` parser does); whitespace inside is refused.
    let ids = [
        "0",
        "-1",
        "+1",
        "01",
        "1 2",
        "1\t2",
        "1.5",
        "0x1",
        "9223372036854775808",
        "",
        "abc",
        "١",
    ];
    let mut cases: Vec<String> = ids
        .iter()
        .map(|id| format!("__Host-keycard-id={id}; __Host-keycard-token={token}"))
        .collect();
    for bad_token in [short, padded.as_str(), std_alphabet.as_str(), "", "%41%41"] {
        cases.push(format!(
            "__Host-keycard-id=1; __Host-keycard-token={bad_token}"
        ));
    }
    // Half a pair.
    cases.push("__Host-keycard-id=1".to_owned());
    cases.push(format!("__Host-keycard-token={token}"));
    // Our names without the prefix are someone else's cookies.
    cases.push(format!("keycard-id=1; keycard-token={token}"));
    for cookie in &cases {
        let (status, body, set_cookies) = read_with_cookie(&store, cookie).await;
        assert_eq!(status, StatusCode::OK, "{cookie}");
        assert_eq!(body, "0", "{cookie}");
        assert_eq!(set_cookies, 0, "{cookie}");
    }
    assert_eq!(
        store.calls().total(),
        0,
        "no store call for any malformed cookie"
    );
}

pub async fn duplicate_cookies_with_different_values_are_absent(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    client.post("/incr").await;
    let id = client.session_id().expect("id");
    let token = client.token().expect("token");
    store.calls().reset();
    let other = valid_token();
    for cookie in [
        format!(
            "__Host-keycard-id={id}; __Host-keycard-token={token}; __Host-keycard-token={other}"
        ),
        format!("__Host-keycard-id={id}; __Host-keycard-id=7; __Host-keycard-token={token}"),
    ] {
        let (status, body, _) = read_with_cookie(&store, &cookie).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "0"), "{cookie}");
    }
    // Also when the duplicate comes in a second `Cookie` header.
    let request = Request::get("/read")
        .header(
            header::COOKIE,
            format!("__Host-keycard-id={id}; __Host-keycard-token={token}"),
        )
        .header(header::COOKIE, format!("__Host-keycard-token={other}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send_raw(&app(store.layer()), request).await.body, "0");
    assert_eq!(store.calls().total(), 0);
}

pub async fn duplicate_cookies_with_equal_values_are_accepted(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    client.post("/incr").await;
    let id = client.session_id().expect("id");
    let token = client.token().expect("token");
    let cookie =
        format!("__Host-keycard-id={id}; __Host-keycard-token={token}; __Host-keycard-id={id}");
    let (_, body, _) = read_with_cookie(&store, &cookie).await;
    assert_eq!(body, "1");
}

pub async fn cookie_attributes_are_safe_by_default(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    let reply = client.post("/incr").await;
    let cookies = reply.set_cookies();
    assert_eq!(cookies.len(), 2);
    for set_cookie in &cookies {
        let c = cookie::Cookie::parse(set_cookie.as_str()).expect("cookie");
        assert!(c.name().starts_with("__Host-keycard-"), "{set_cookie}");
        assert_eq!(c.http_only(), Some(true), "{set_cookie}");
        assert_eq!(c.secure(), Some(true), "{set_cookie}");
        assert_eq!(c.same_site(), Some(cookie::SameSite::Lax), "{set_cookie}");
        assert_eq!(c.path(), Some("/"), "{set_cookie}");
        assert_eq!(c.domain(), None, "{set_cookie}");
        assert_eq!(c.max_age(), None, "browser-session cookie: {set_cookie}");
        assert_eq!(c.expires(), None, "browser-session cookie: {set_cookie}");
    }
    let token = client.token().expect("token");
    assert_eq!(token.len(), 43, "256 bits in base64url");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

pub async fn development_cookies_drop_secure_and_prefix(store: TestStore) {
    let mut client = Client::new(app(store.layer().insecure_dev_cookies()));
    let reply = client.post("/incr").await;
    for set_cookie in reply.set_cookies() {
        let c = cookie::Cookie::parse(set_cookie.as_str()).expect("cookie");
        assert!(c.name().starts_with("keycard-"), "{set_cookie}");
        assert_ne!(c.secure(), Some(true), "{set_cookie}");
        assert_eq!(c.http_only(), Some(true), "{set_cookie}");
    }
    assert_eq!(
        client.post("/incr").await.body,
        "2",
        "dev cookies are read back"
    );
}

pub async fn removal_cookies_carry_the_same_attributes(store: TestStore) {
    let mut client = Client::new(app(store.layer().same_site(cookie::SameSite::Strict)));
    client.post("/login/alice").await;
    let reply = client.post("/logout").await;
    let cookies = reply.set_cookies();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for set_cookie in &cookies {
        let c = cookie::Cookie::parse(set_cookie.as_str()).expect("cookie");
        assert_eq!(c.value(), "");
        assert_eq!(
            c.max_age(),
            Some(cookie::time::Duration::ZERO),
            "{set_cookie}"
        );
        assert!(c.expires_datetime().is_some(), "{set_cookie}");
        assert_eq!(c.http_only(), Some(true), "{set_cookie}");
        assert_eq!(c.secure(), Some(true), "{set_cookie}");
        assert_eq!(
            c.same_site(),
            Some(cookie::SameSite::Strict),
            "{set_cookie}"
        );
        assert_eq!(c.path(), Some("/"), "{set_cookie}");
    }
    assert_eq!(
        reply
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

pub async fn custom_cookie_names_are_used(store: TestStore) {
    let mut client = Client::new(app(store.layer().cookie_name("myapp")));
    client.post("/incr").await;
    let mut names: Vec<_> = client.jar.names().map(str::to_owned).collect();
    names.sort();
    assert_eq!(names, ["__Host-myapp-id", "__Host-myapp-token"]);
    assert_eq!(client.post("/incr").await.body, "2");
}
