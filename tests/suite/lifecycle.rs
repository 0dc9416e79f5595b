//! Sign-in, token rotation, sign-out, and what a failing handler leaves.

use axum::http::StatusCode;

use crate::common::{Client, TestStore, app};
use crate::suite::client_with_session;

pub async fn login_rotates_the_token_and_kills_the_old_one(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let old_jar = client.jar.clone();
    let reply = client.post("/login/alice").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.set_cookies().len(), 2, "new cookies on login");
    assert_eq!(client.session_id(), Some(id), "same row, new token");
    assert_ne!(client.jar, old_jar);
    assert_eq!(client.get("/whoami").await.body, "alice");
    let row = store.row(id).await.expect("row");
    assert_eq!(row.fields.user_id.as_deref(), Some("alice"));
    assert!(row.fields.authenticated_at.is_some());
    // The pre-login cookies (a fixated session) are dead at once.
    let mut replay = client.new_browser();
    replay.jar = old_jar;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.get("/read").await.body, "0");
    // Signing in again as the same user rotates again.
    let before = client.jar.clone();
    client.post("/login/alice").await;
    assert_ne!(client.jar, before);
    replay.jar = before;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn login_from_anonymous_keeps_values(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/set/basket/apples").await;
    client.post("/login/alice").await;
    assert_eq!(client.get("/get/basket").await.body, "apples");
    assert_eq!(client.get("/read").await.body, "1");
}

pub async fn login_as_another_user_starts_clean(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    client.post("/login/alice").await;
    client.post("/set/secret/alices").await;
    client.post("/login/bob").await;
    assert_eq!(client.get("/whoami").await.body, "bob");
    assert_eq!(
        client.get("/get/secret").await.body,
        "",
        "nothing of alice's"
    );
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert!(row.fields.data.is_empty(), "{:?}", row.fields.data);
}

pub async fn regenerate_keeps_values_and_user(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/login/alice").await;
    let before = client.jar.clone();
    let reply = client.post("/regenerate").await;
    assert_eq!(reply.set_cookies().len(), 2);
    assert_ne!(client.jar, before);
    assert_eq!(client.get("/whoami").await.body, "alice");
    assert_eq!(client.get("/read").await.body, "1");
    let mut replay = client.new_browser();
    replay.jar = before;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

pub async fn logout_deletes_the_row_and_expires_cookies(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/login/alice").await;
    let id = client.session_id().expect("id");
    let captured = client.jar.clone();
    let reply = client.post("/logout").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.set_cookies().len(), 2);
    assert!(
        client.jar.is_empty(),
        "both cookies expired: {:?}",
        client.jar
    );
    assert!(store.row(id).await.is_none(), "row deleted");
    let mut replay = client.new_browser();
    replay.jar = captured;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.get("/read").await.body, "0");
}

pub async fn server_error_after_login_keeps_the_old_session(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let before_row = store.row(id).await.expect("row");
    let jar = client.jar.clone();
    let reply = client.post("/login-then-fail/mallory").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.set_cookies().is_empty(),
        "no cookie on a failed request"
    );
    assert_eq!(client.jar, jar);
    assert_eq!(
        store.row(id).await.expect("row"),
        before_row,
        "nothing half-written"
    );
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        client.get("/read").await.body,
        "1",
        "old session still valid"
    );
}

pub async fn server_error_discards_a_new_session(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    let reply = client.post("/login-then-fail/mallory").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(store.calls().writes(), 0);
}

pub async fn user_ids_are_checked_the_same_on_every_store(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let longest = "é".repeat(keycard::MAX_USER_ID_CHARS);
    let reply = client.post(&format!("/login/{longest}")).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "255 characters fit every store"
    );
    assert_eq!(client.get("/whoami").await.body, longest);
    let id = client.session_id().expect("id");
    let before = store.row(id).await.expect("row");
    let too_long = "a".repeat(keycard::MAX_USER_ID_CHARS + 1);
    let reply = client.post(&format!("/login/{too_long}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.set_cookies().is_empty());
    assert_eq!(store.row(id).await.expect("row"), before, "nothing changed");
    assert_eq!(client.get("/whoami").await.body, longest);
}

pub async fn logout_keeping_values_signs_out_but_keeps_values(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/login/alice").await;
    client.post("/set/basket/apples").await;
    let id = client.session_id().expect("id");
    let signed_in = client.jar.clone();
    let reply = client.post("/logout-keep").await;
    assert_eq!(reply.set_cookies().len(), 2, "fresh token");
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(client.get("/get/basket").await.body, "apples");
    let row = store.row(id).await.expect("row kept");
    assert_eq!(row.fields.user_id, None);
    assert_eq!(row.fields.auth_method, None);
    assert_eq!(row.fields.authenticated_at, None);
    let mut replay = client.new_browser();
    replay.jar = signed_in;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        replay.get("/get/basket").await.body,
        "",
        "old cookies are dead"
    );
}

pub async fn after_logout_the_request_is_anonymous_and_new_values_start_afresh(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/login/alice").await;
    let id = client.session_id().expect("id");
    let signed_in = client.jar.clone();
    let reply = client.post("/logout-then-set/flash/goodbye").await;
    assert_eq!(reply.body, "anonymous=true");
    assert_eq!(reply.set_cookies().len(), 2, "the new session's cookies");
    assert!(store.row(id).await.is_none(), "the signed-in row is gone");
    let new_id = client.session_id().expect("new id");
    assert_ne!(new_id, id);
    assert_eq!(client.get("/get/flash").await.body, "goodbye");
    assert_eq!(client.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        client.get("/read").await.body,
        "0",
        "nothing of the old session"
    );
    let mut replay = client.new_browser();
    replay.jar = signed_in;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}
