//! Live connections told when their session ends: a long poll on
//! `Session::ended` answers when the session is signed out, ended from
//! another device or by an administrator, or expires.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::TimeDelta;
use keycard::{LiveEnd, Session, SessionLayer};

use crate::common::{Client, TestStore, app};

/// The suite's app plus `/watch`, which answers when its session ends.
fn live_app(layer: SessionLayer) -> Router {
    let watch = Router::new().route(
        "/watch",
        get(|session: Session| async move {
            let ended = session.ended().await?;
            let why = tokio::time::timeout(Duration::from_secs(10), ended).await;
            Ok::<_, keycard::Error>(match why {
                Ok(why) => format!("{why:?}"),
                Err(_) => "still alive".to_owned(),
            })
        }),
    );
    app(layer.clone()).merge(watch.layer(layer))
}

fn layer(store: &TestStore) -> SessionLayer {
    store.layer().live_check_interval(Duration::from_millis(50))
}

/// Starts watching `client`'s session; the answer comes when it ends.
fn watch(client: &Client) -> tokio::task::JoinHandle<String> {
    let mut watcher = client.clone();
    tokio::spawn(async move { watcher.get("/watch").await.body })
}

/// Lets the watch register before the session is ended.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

async fn answer(watching: tokio::task::JoinHandle<String>) -> String {
    tokio::time::timeout(Duration::from_secs(8), watching)
        .await
        .expect("the watch answers")
        .expect("task")
}

pub async fn a_live_connection_is_told_when_its_session_ends(store: TestStore) {
    let router = live_app(layer(&store));
    let signed_in = |user: &'static str| {
        let router = router.clone();
        async move {
            let mut client = Client::new(router);
            assert_eq!(
                client.post(&format!("/login/{user}")).await.status,
                StatusCode::OK
            );
            client
        }
    };

    // Signed out on this device.
    let mut ada = signed_in("ada").await;
    let watching = watch(&ada);
    settle().await;
    assert!(!watching.is_finished(), "alive while signed in");
    ada.post("/logout").await;
    assert_eq!(answer(watching).await, format!("{:?}", LiveEnd::Ended));

    // Ended from another device ("sign out everywhere else").
    let laptop = signed_in("ada").await;
    let mut phone = signed_in("ada").await;
    let watching = watch(&laptop);
    settle().await;
    phone.post("/sessions/end-others").await;
    assert_eq!(answer(watching).await, "Ended");

    // Ended by an administrator, as a revocation would.
    let bob = signed_in("bob").await;
    let watching = watch(&bob);
    settle().await;
    layer(&store)
        .admin()
        .end_sessions_of("bob", None)
        .await
        .expect("end");
    assert_eq!(answer(watching).await, "Ended");

    // Signed out but the session kept (its values stay): signed out.
    let mut carol = signed_in("carol").await;
    let watching = watch(&carol);
    settle().await;
    carol.post("/logout-keep").await;
    assert_eq!(answer(watching).await, "SignedOut");

    // Expired: no request renews it, the idle timeout passes.
    let dave = signed_in("dave").await;
    let watching = watch(&dave);
    settle().await;
    store.clock.advance(TimeDelta::minutes(31));
    assert_eq!(answer(watching).await, "Expired");

    // A live session stays watched: nothing ends it within the wait.
    let erin = signed_in("erin").await;
    let watching = watch(&erin);
    settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watching.is_finished(), "erin's session lives on");
    watching.abort();

    // A visitor with no stored session has nothing to watch: at once.
    let mut visitor = Client::new(router.clone());
    assert_eq!(visitor.get("/watch").await.body, "Ended");
}
