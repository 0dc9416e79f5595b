//! The behaviour suite: every test here runs unchanged against every store
//! (see `behaviour_suite!` at the bottom and the test files that invoke it).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::TimeDelta;
use keycard::clock::Clock as _;
use keycard::token::SessionToken;

use crate::common::{Calls, Client, TestStore, app, send_raw};

pub mod auth;
pub mod cnx;
pub mod concurrency;
pub mod cookies;
pub mod edges;
pub mod failures;
pub mod lifecycle;
pub mod limits;
pub mod live;
pub mod own_users;
#[cfg(all(feature = "passkeys", feature = "test-client"))]
pub mod passkeys;
pub mod remember;
pub mod second_factor;
pub mod timeouts;
pub mod users;

/// A client with a stored session holding `counter = 1`.
async fn client_with_session(store: &TestStore) -> Client {
    let mut client = Client::new(app(store.layer()));
    let reply = client.post("/incr").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "1");
    assert!(client.session_id().is_some(), "a session cookie was set");
    client
}

pub async fn untouched_session_costs_no_query_and_no_cookie(store: TestStore) {
    let mut client = client_with_session(&store).await;
    store.calls().reset();
    let reply = client.get("/anon").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "ok");
    assert_eq!(
        store.calls().total(),
        0,
        "no store call for an untouched session"
    );
    assert!(reply.set_cookies().is_empty());
    assert!(reply.headers.get(header::CACHE_CONTROL).is_none());
}

pub async fn new_session_without_values_is_not_stored(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    let reply = client.get("/read").await;
    assert_eq!(reply.body, "0");
    assert_eq!(
        store.calls().total(),
        0,
        "nothing presented, nothing stored"
    );
    assert!(reply.set_cookies().is_empty());
    let reply = client.get("/whoami").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.set_cookies().is_empty());
}

pub async fn new_session_with_a_value_is_inserted_once(store: TestStore) {
    let mut client = Client::new(app(store.layer()));
    let reply = client.post("/set/colour/blue").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(Calls::get(&store.calls().insert), 1);
    assert_eq!(store.calls().writes(), 1);
    assert_eq!(reply.set_cookies().len(), 2);
    assert_eq!(
        reply
            .headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().ok()),
        Some(Some("no-store"))
    );
    let id = client.session_id().expect("id cookie");
    let row = store.row(id).await.expect("row inserted");
    assert_eq!(row.version, 1);
    assert_eq!(row.fields.data["colour"], "blue");
    assert_eq!(row.fields.user_id, None);
    // Only the hash of the token is stored.
    let token: SessionToken = client
        .token()
        .expect("token cookie")
        .parse()
        .expect("token");
    assert_eq!(row.fields.token_hash, token.hash());
    assert_eq!(client.get("/get/colour").await.body, "blue");
}

pub async fn read_only_request_costs_one_read_and_no_write(store: TestStore) {
    let mut client = client_with_session(&store).await;
    store.calls().reset();
    let reply = client.get("/read").await;
    assert_eq!(reply.body, "1");
    assert_eq!(store.calls().loads(), 1);
    assert_eq!(store.calls().writes(), 0, "inside touch_interval: no write");
    assert!(reply.set_cookies().is_empty());
}

pub async fn read_after_touch_interval_renews_activity_once(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let before = store.row(id).await.expect("row").fields.last_activity;
    store.clock.advance(TimeDelta::seconds(61)); // default interval: 60 s
    store.calls().reset();
    assert_eq!(client.get("/read").await.body, "1");
    assert_eq!(Calls::get(&store.calls().touch), 1);
    assert_eq!(store.calls().writes(), 1);
    let after = store.row(id).await.expect("row");
    assert_eq!(after.fields.last_activity - before, TimeDelta::seconds(61));
    assert_eq!(after.version, 1, "a touch is not a data change");
    store.calls().reset();
    assert_eq!(client.get("/read").await.body, "1");
    assert_eq!(store.calls().writes(), 0, "renewed: no second write");
}

pub async fn writes_renew_activity_at_most_once_per_touch_interval(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let created = store.row(id).await.expect("row").fields.last_activity;
    store.clock.advance(TimeDelta::seconds(30));
    client.post("/incr").await;
    client.post("/set/colour/blue").await;
    let row = store.row(id).await.expect("row");
    assert_eq!(row.fields.data["counter"], 2);
    assert_eq!(
        row.fields.last_activity, created,
        "inside the interval: not moved"
    );
    store.clock.advance(TimeDelta::seconds(31));
    client.post("/incr").await;
    let row = store.row(id).await.expect("row");
    assert_eq!(row.fields.last_activity - created, TimeDelta::seconds(61));
    store.clock.advance(TimeDelta::seconds(61));
    client.post("/set/colour/red").await;
    let row = store.row(id).await.expect("row");
    assert_eq!(row.fields.last_activity - created, TimeDelta::seconds(122));
}

pub async fn touch_interval_is_configurable(store: TestStore) {
    let layer = store.layer().touch_interval(Duration::from_secs(5));
    let mut client = Client::new(app(layer));
    client.post("/incr").await;
    store.clock.advance(TimeDelta::seconds(4));
    store.calls().reset();
    client.get("/read").await;
    assert_eq!(store.calls().writes(), 0);
    store.clock.advance(TimeDelta::seconds(2));
    client.get("/read").await;
    assert_eq!(Calls::get(&store.calls().touch), 1);
}

pub async fn changed_session_is_one_update(store: TestStore) {
    let mut client = client_with_session(&store).await;
    store.calls().reset();
    client.post("/set/colour/green").await;
    assert_eq!(store.calls().loads(), 1);
    assert_eq!(Calls::get(&store.calls().update), 1);
    assert_eq!(store.calls().writes(), 1);
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(row.fields.data["colour"], "green");
    assert_eq!(row.fields.data["counter"], 1);
    assert_eq!(row.version, 2);
}

pub async fn inserting_an_equal_value_is_not_a_change(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/set/colour/red").await;
    store.calls().reset();
    let reply = client.post("/set/colour/red").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(store.calls().writes(), 0);
    assert!(reply.set_cookies().is_empty());
    // Removing a key that does not exist is not a change either.
    client.post("/remove/nothing").await;
    assert_eq!(store.calls().writes(), 0);
}

pub async fn remove_and_clear_are_saved(store: TestStore) {
    let mut client = client_with_session(&store).await;
    client.post("/set/a/1").await;
    client.post("/remove/a").await;
    let id = client.session_id().expect("id");
    let row = store.row(id).await.expect("row");
    assert!(!row.fields.data.contains_key("a"));
    assert_eq!(row.fields.data["counter"], 1);
    client.post("/clear").await;
    assert!(store.row(id).await.expect("row").fields.data.is_empty());
    assert_eq!(client.get("/read").await.body, "0");
}

pub async fn update_is_atomic_and_returns_the_stored_value(store: TestStore) {
    let mut client = client_with_session(&store).await;
    for expected in 2..=5 {
        assert_eq!(client.post("/incr").await.body, expected.to_string());
    }
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert_eq!(row.fields.data["counter"], 5);
}

pub async fn info_reports_id_and_times_from_the_injected_clock(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let id = client.session_id().expect("id");
    let created = store.clock.now().timestamp_micros();
    let reply = client.get("/info").await;
    assert_eq!(reply.body, format!("{id} {created} {created}"));
}

pub async fn wrong_token_for_a_real_id_is_anonymous(store: TestStore) {
    let mut victim = client_with_session(&store).await;
    victim.post("/login/alice").await;
    let id = victim.session_id().expect("id");
    let mut attacker = victim.new_browser();
    attacker.jar = victim.jar.clone();
    let forged = SessionToken::generate().expect("rng").expose();
    let token_name = victim
        .jar
        .names()
        .find(|k| k.ends_with("-token"))
        .expect("token cookie")
        .to_owned();
    attacker.jar.insert(token_name, forged);
    assert_eq!(
        attacker.get("/whoami").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(attacker.get("/read").await.body, "0");
    // The attacker's write creates its own session, never touching alice's.
    attacker.post("/set/evil/1").await;
    assert_ne!(attacker.session_id(), Some(id));
    let row = store.row(id).await.expect("alice's row");
    assert!(!row.fields.data.contains_key("evil"));
    assert_eq!(victim.get("/whoami").await.body, "alice");
}

pub async fn unknown_id_is_anonymous_after_one_read(store: TestStore) {
    let mut client = client_with_session(&store).await;
    let token_name = client
        .jar
        .names()
        .find(|k| k.ends_with("-id"))
        .map(str::to_owned)
        .expect("id");
    client.jar.insert(token_name, "987654321");
    store.calls().reset();
    assert_eq!(client.get("/read").await.body, "0");
    assert_eq!(store.calls().loads(), 1);
    assert_eq!(store.calls().writes(), 0);
}

pub async fn persistent_sessions_get_a_max_age_within_the_absolute_timeout(store: TestStore) {
    let layer = store
        .layer()
        .persistent_timeouts(Duration::from_secs(1800), Duration::from_secs(3600));
    let mut client = Client::new(app(layer));
    client.post("/incr").await;
    store.clock.advance(TimeDelta::seconds(600));
    let reply = client.post("/persistent/true").await;
    let cookies = reply.set_cookies();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        let parsed = cookie::Cookie::parse(c.as_str()).expect("cookie");
        assert_eq!(
            parsed.max_age(),
            Some(cookie::time::Duration::seconds(3000)),
            "{c}"
        );
    }
    let row = store
        .row(client.session_id().expect("id"))
        .await
        .expect("row");
    assert!(row.fields.persistent);
    // Back to a browser-session cookie.
    let reply = client.post("/persistent/false").await;
    for c in reply.set_cookies() {
        assert!(!c.contains("Max-Age"), "{c}");
    }
    assert!(!store.row(row.id).await.expect("row").fields.persistent);
}

pub async fn garbage_requests_get_clean_responses(store: TestStore) {
    let app = app(store.layer());
    let huge = "a".repeat(60_000);
    let header_values: Vec<Vec<u8>> = vec![
        b"__Host-keycard-id=1; __Host-keycard-token=\xff\xfe".to_vec(),
        b"\xff\xff\xff=\x80".to_vec(),
        b";;;==;=;".to_vec(),
        format!("__Host-keycard-id={huge}").into_bytes(),
        b"__Host-keycard-id=\"1\"; __Host-keycard-token=\"x\"".to_vec(),
    ];
    for value in header_values {
        for route in ["/read", "/whoami", "/incr", "/anon"] {
            let method = if route == "/incr" { "POST" } else { "GET" };
            let request = Request::builder()
                .method(method)
                .uri(route)
                .header(header::COOKIE, value.as_slice())
                .body(Body::empty())
                .expect("request");
            let reply = send_raw(&app, request).await;
            assert!(
                reply.status.is_success() || reply.status == StatusCode::UNAUTHORIZED,
                "{route}: {:?}",
                reply.status
            );
        }
    }
    assert_eq!(store.calls().loads(), 0, "junk never reaches the store");
}

/// Expands to one test per behaviour, for one store factory. Attributes
/// before the factory go on every test, e.g. a `cfg_attr(…, ignore = …)`
/// for a store that is not configured:
/// `behaviour_suite!(#[cfg_attr(cond, ignore = "why")] path::to::factory)`.
#[macro_export]
macro_rules! behaviour_suite {
    ($(#[$attr:meta])* $factory:path) => {
        $crate::behaviour_suite!(@each [$(#[$attr])*] $factory;
            untouched_session_costs_no_query_and_no_cookie,
            new_session_without_values_is_not_stored,
            new_session_with_a_value_is_inserted_once,
            read_only_request_costs_one_read_and_no_write,
            read_after_touch_interval_renews_activity_once,
            touch_interval_is_configurable,
            writes_renew_activity_at_most_once_per_touch_interval,
            a_cached_store_serves_reads_without_queries_and_stays_correct,
            a_cached_store_keeps_other_users_rows_through_sign_ins_and_purges,
            changed_session_is_one_update,
            inserting_an_equal_value_is_not_a_change,
            remove_and_clear_are_saved,
            update_is_atomic_and_returns_the_stored_value,
            info_reports_id_and_times_from_the_injected_clock,
            wrong_token_for_a_real_id_is_anonymous,
            unknown_id_is_anonymous_after_one_read,
            persistent_sessions_get_a_max_age_within_the_absolute_timeout,
            garbage_requests_get_clean_responses,
            cookies::malformed_cookies_are_absent_and_cost_no_query,
            cookies::duplicate_cookies_with_different_values_are_absent,
            cookies::duplicate_cookies_with_equal_values_are_accepted,
            cookies::cookie_attributes_are_safe_by_default,
            cookies::development_cookies_drop_secure_and_prefix,
            cookies::removal_cookies_carry_the_same_attributes,
            cookies::custom_cookie_names_are_used,
            lifecycle::login_rotates_the_token_and_kills_the_old_one,
            lifecycle::login_from_anonymous_keeps_values,
            lifecycle::login_as_another_user_starts_clean,
            lifecycle::regenerate_keeps_values_and_user,
            lifecycle::logout_deletes_the_row_and_expires_cookies,
            lifecycle::server_error_after_login_keeps_the_old_session,
            lifecycle::server_error_discards_a_new_session,
            lifecycle::user_ids_are_checked_the_same_on_every_store,
            lifecycle::logout_keeping_values_signs_out_but_keeps_values,
            lifecycle::after_logout_the_request_is_anonymous_and_new_values_start_afresh,
            timeouts::persistent_sessions_have_their_own_timeouts,
            timeouts::purge_runs_in_bounded_batches_and_respects_persistent_limits,
            timeouts::purge_task_survives_errors_and_stops_on_shutdown,
            timeouts::ip_binding_behind_trusted_proxies_uses_the_forwarded_client,
            users::one_per_user_ends_the_other_human_sessions,
            users::max_per_user_ends_the_least_recently_active,
            users::unlimited_keeps_every_session_and_the_default_caps_at_32,
            users::racing_logins_leave_exactly_one_session,
            users::user_sessions_lists_without_secrets_and_marks_this_one,
            users::sessions_are_labelled_with_the_device_they_were_created_on,
            users::end_other_sessions_signs_out_everywhere_else,
            users::end_user_session_ends_only_the_users_own,
            users::admin_ends_all_sessions_of_a_user,
            users::a_credential_change_invalidates_older_sessions_even_restored_ones,
            users::login_with_records_method_and_version,
            auth::basic_auth_signs_in_an_api_session_once_per_session,
            auth::wrong_credentials_get_the_same_401_and_end_the_api_session,
            auth::malformed_authorization_values_get_a_clean_400,
            auth::credentials_in_the_query_string_are_ignored,
            auth::an_api_client_with_another_users_cookie_is_swapped_in_one_request,
            auth::bearer_tokens_are_created_used_listed_and_revoked,
            auth::a_trusted_proxy_header_signs_in_only_from_the_proxy,
            auth::require_user_redirects_browsers_and_challenges_api_clients,
            auth::a_401_offers_no_scheme_the_application_does_not_take,
            auth::guards_check_method_and_permission,
            auth::lockout_applies_on_every_pathway_and_escalates,
            auth::concurrent_wrong_passwords_are_all_counted,
            auth::a_store_failure_during_login_is_503_and_no_failure,
            auth::accounts_have_one_canonical_name_and_can_be_disabled,
            auth::an_application_retriever_and_authenticator_plug_in,
            timeouts::idle_timeout_ends_the_session,
            timeouts::absolute_timeout_ends_a_busy_session,
            timeouts::future_activity_from_a_stepped_back_clock_is_refused,
            timeouts::ip_binding_refuses_another_address,
            timeouts::ip_binding_off_by_default,
            timeouts::ip_binding_without_the_client_address_refuses_the_session,
            timeouts::purge_deletes_only_expired_rows,
            timeouts::count_active_since_counts_recent_rows,
            failures::load_failure_is_503_whatever_the_handler_says,
            failures::save_failure_is_503_without_cookies,
            failures::handler_sees_the_store_error,
            concurrency::concurrent_updates_of_one_session_lose_nothing,
            concurrency::concurrent_updates_on_one_server_are_combined_into_fewer_writes,
            concurrency::cancelled_updates_do_not_hold_up_or_lose_the_others,
            concurrency::concurrent_writes_to_different_keys_are_all_kept,
            concurrency::logout_racing_a_write_leaves_the_session_dead,
            concurrency::rotation_racing_a_write_never_revives_the_old_token,
            concurrency::concurrent_first_visits_create_distinct_sessions,
            concurrency::two_app_servers_share_one_store,
            concurrency::stale_write_is_merged_with_a_newer_one,
            concurrency::stale_update_reapplies_on_the_newer_value,
            concurrency::stale_write_after_logout_is_a_conflict_and_no_resurrection,
            concurrency::stale_write_after_rotation_is_a_conflict,
            concurrency::stale_update_after_logout_is_a_conflict,
            concurrency::concurrent_writes_of_many_sessions_are_each_written_once,
            concurrency::concurrent_value_writes_are_judged_by_their_own_versions,
            concurrency::cancelled_writers_do_not_hold_up_the_others,
            concurrency::concurrent_loads_each_see_only_their_own_session,
            concurrency::refused_batched_writes_retry_and_deleted_sessions_stay_gone,
            concurrency::concurrent_touches_each_renew_their_own_session,
            edges::cross_origin_unsafe_requests_are_refused_before_any_session_work,
            edges::same_origin_and_headerless_unsafe_requests_pass,
            edges::trusted_origins_and_exempt_paths_take_cross_origin_requests,
            edges::malformed_and_repeated_fetch_headers_are_refused_cleanly,
            edges::the_synchronizer_token_guards_forms_and_rotates_at_sign_in,
            edges::signed_in_responses_are_never_cached,
            edges::sign_out_can_clear_the_site_cache,
            edges::expired_rows_are_purged_in_the_background_by_default,
            auth::bearer_requests_without_a_cookie_jar_store_nothing,
            auth::basic_requests_store_nothing_and_leave_the_cookie_session_alone,
            auth::a_request_only_session_refuses_writes_with_a_clear_error,
            auth::the_opt_in_api_session_with_a_cookie_jar_is_one_row,
            auth::api_sessions_are_capped_per_user,
            auth::sudo_mode_asks_old_sign_ins_to_confirm_and_rotates_on_confirmation,
            auth::requests_signed_in_for_themselves_are_never_recent,
            auth::one_time_tokens_work_once_and_die_with_the_password,
            auth::concurrent_redemptions_of_one_link_sign_in_exactly_one,
            live::a_live_connection_is_told_when_its_session_ends,
            remember::a_remembered_browser_is_signed_back_in_after_a_restart,
            remember::concurrent_restores_sign_one_browser_in_once,
            remember::a_replayed_remember_token_ends_every_sign_in_of_the_user,
            remember::remembered_browsers_end_by_every_pathway,
            remember::bad_remember_cookies_are_refused_cleanly,
            remember::a_restore_fails_closed_while_the_store_is_down,
            auth::revoking_a_token_ends_the_sessions_it_opened,
            auth::disabling_an_account_ends_its_sessions,
            auth::a_password_change_keeps_this_session_and_ends_the_others,
            auth::an_administrators_password_reset_ends_every_session,
            auth::guarded_forms_exempt_bearer_requests_but_not_basic_ones,
            auth::guard_rejections_are_typed_and_replaceable,
            limits::invalid_identities_are_refused_the_same_on_every_store,
            limits::oversized_values_are_refused_with_413_before_any_write,
            limits::a_corrupt_row_is_deleted_and_never_fails_its_neighbours,
            limits::unavailable_answers_ask_the_client_to_retry,
            own_users::the_signed_in_user_is_the_applications_own,
            own_users::anonymous_requests_for_the_applications_user_are_refused_as_by_current_user,
            own_users::the_applications_user_is_loaded_once_per_request,
            own_users::a_deleted_users_session_is_signed_out_and_anonymous,
            own_users::a_failing_user_loader_is_503_and_leaves_the_session_alone,
            own_users::a_missing_or_mismatched_user_loader_is_a_clear_500,
            own_users::request_only_sign_ins_yield_the_applications_user,
            second_factor::second_factor_due_leaves_the_session_half_open_and_anonymous,
            second_factor::second_factor_half_open_sign_ins_expire_after_five_minutes,
            second_factor::second_factor_totp_codes_work_once_and_one_step_either_side,
            second_factor::second_factor_concurrent_uses_of_one_totp_code_sign_in_exactly_one,
            second_factor::second_factor_failures_count_toward_the_password_lockout,
            second_factor::second_factor_recovery_codes_sign_in_once_each,
            second_factor::second_factor_accounts_are_refused_http_basic_unless_allowed,
            second_factor::second_factor_per_user_limit_waits_for_the_code,
            second_factor::second_factor_enrolment_takes_effect_when_confirmed_and_is_removed_with_the_password,
            second_factor::second_factor_is_due_after_a_sign_in_link_too,
            second_factor::second_factor_store_failure_is_503_and_uses_nothing,
        );
        $crate::behaviour_suite!(@each [$(#[$attr])* #[cfg(all(feature = "passkeys", feature = "test-client"))]] $factory;
            passkeys::passkeys_register_once_and_sign_in_without_a_user_name,
            passkeys::passkeys_are_the_second_factor_of_a_password_sign_in,
            passkeys::passkey_answers_that_do_not_verify_are_refused_and_counted,
            passkeys::passkey_ceremonies_expire_and_belong_to_their_kind,
            passkeys::passkeys_of_disabled_locked_or_removed_accounts_do_not_sign_in,
            passkeys::passkey_store_failure_is_503_and_signs_nobody_in,
        );
    };
    // One invocation per test, side by side rather than one inside the
    // next, so that the list can grow past the recursion limit.
    (@each $attrs:tt $factory:path; $($first:ident $(:: $second:ident)?),+ $(,)?) => {
        $($crate::behaviour_suite!(@one $attrs $factory; $first $(:: $second)?);)+
    };
    (@one [$($attr:tt)*] $factory:path; $module:ident :: $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            if let Some(store) = $factory().await {
                $crate::suite::$module::$name(store).await;
            }
        }
    };
    (@one [$($attr:tt)*] $factory:path; $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            if let Some(store) = $factory().await {
                $crate::suite::$name(store).await;
            }
        }
    };
}

pub async fn a_cached_store_serves_reads_without_queries_and_stays_correct(store: TestStore) {
    let cached = keycard::store::CachedStore::new(store.counting.clone(), 1000);
    let layer = keycard::SessionLayer::new(cached).clock(store.clock.clone());
    let mut client = Client::new(app(layer));
    assert_eq!(client.post("/incr").await.body, "1");
    store.calls().reset();
    for _ in 0..3 {
        assert_eq!(client.get("/read").await.body, "1");
    }
    assert_eq!(store.calls().loads(), 0, "reads come from the cache");
    assert_eq!(client.post("/incr").await.body, "2");
    assert_eq!(client.post("/set/colour/blue").await.status, StatusCode::OK);
    assert_eq!(client.get("/read").await.body, "2");
    assert_eq!(client.get("/get/colour").await.body, "blue");
    assert_eq!(store.calls().loads(), 0);
    let id = client.session_id().expect("id");
    let row = store.row(id).await.expect("row in the database");
    assert_eq!(row.fields.data["counter"], 2, "written through");
    client.post("/login/alice").await;
    let captured = client.jar.clone();
    client.post("/logout").await;
    let mut replay = client.new_browser();
    replay.jar = captured;
    assert_eq!(replay.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}

/// A sign-in (whose per-user limit deletes some of that user's rows, or
/// none) and a purge evict only the rows they may have deleted: every
/// other user's cached session is still served without a query.
pub async fn a_cached_store_keeps_other_users_rows_through_sign_ins_and_purges(store: TestStore) {
    let cached = keycard::store::CachedStore::new(store.counting.clone(), 1000);
    let layer = keycard::SessionLayer::new(cached)
        .clock(store.clock.clone())
        .no_background_purge()
        .concurrent_sessions(keycard::ConcurrentSessions::OnePerUser);
    let admin = layer.admin();
    let router = app(layer);
    let mut ada = Client::new(router.clone());
    ada.post("/login/ada").await;
    assert_eq!(ada.get("/whoami").await.body, "ada");
    let mut bob = Client::new(router.clone());
    bob.post("/login/bob").await;
    assert_eq!(bob.get("/whoami").await.body, "bob");

    // Bob signs in again elsewhere: his first session goes, ada's stays
    // cached.
    let mut bob_again = Client::new(router.clone());
    bob_again.post("/login/bob").await;
    store.calls().reset();
    assert_eq!(ada.get("/whoami").await.body, "ada");
    assert_eq!(store.calls().loads(), 0, "ada's row is still cached");
    assert_eq!(
        bob.get("/whoami").await.status,
        StatusCode::UNAUTHORIZED,
        "bob's ended session is not served from the cache"
    );

    // A purge of carol's expired session keeps ada's cached.
    let mut carol = Client::new(router.clone());
    carol.post("/login/carol").await;
    store.clock.advance(TimeDelta::minutes(20));
    assert_eq!(
        ada.post("/incr").await.status,
        StatusCode::OK,
        "ada is active"
    );
    store.clock.advance(TimeDelta::minutes(15));
    assert!(admin.purge_expired().await.expect("purge") >= 1);
    store.calls().reset();
    assert_eq!(ada.get("/whoami").await.body, "ada");
    assert_eq!(store.calls().loads(), 0, "ada's row is still cached");
    assert_eq!(carol.get("/whoami").await.status, StatusCode::UNAUTHORIZED);
}
