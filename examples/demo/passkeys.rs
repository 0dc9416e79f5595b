//! The demo's passkeys (built with `--features passkeys`): a page to add,
//! list and remove them, "Sign in with a passkey" on the home page (no
//! user name), and "Use your passkey" for the second step of a password
//! sign-in.
//!
//! A passkey ceremony needs the browser's `navigator.credentials`, so
//! these buttons are the demo's only JavaScript that matters
//! (`/passkeys.js`): it asks the server for the options, hands them to the
//! browser, posts the browser's answer back as JSON and goes where the
//! server says. Without scripts the buttons stay hidden and every other
//! way in still works. The JSON routes that change a signed-in account
//! check the synchronizer token in `X-CSRF-Token`; the sign-in routes need
//! none: the challenge lives in this browser's session, so another site
//! cannot finish a ceremony it never saw (and the layer refuses
//! cross-origin posts anyway).

use axum::Router;
use axum::extract::{Json, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keycard::Session;
use keycard::auth::{AccountError, AuthRejection, Factor, Pending, Remember, RequireRecentAuth};
use keycard::csrf::{CsrfForm, CsrfHeader, CsrfRejection};
use serde::Deserialize;
use serde_json::json;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::{
    App, NEW_RECOVERY_CODES, NoFields, ask_first, confirm_first, csrf_field, escape, form_refused,
    is_local_path, page, recovery_codes_block, relative, remember_choice, take_flash,
};

/// The page of the signed-in user's passkeys.
pub const PASSKEYS_URL: &str = "/security/passkeys";

/// The session value holding a one-off message for the passkeys page.
const PASSKEYS_FLASH: &str = "demo.passkeys_flash";

/// The routes, on the demo's state.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/passkeys.js", get(script))
        .route(PASSKEYS_URL, get(passkeys_page))
        .route("/security/passkeys/options", post(registration_options))
        .route("/security/passkeys/register", post(register))
        .route("/security/passkeys/{id}/remove", post(remove))
        .route("/login/passkey/options", post(sign_in_options))
        .route("/login/passkey", post(sign_in))
        .route("/login/code/passkey/options", post(second_factor_options))
        .route("/login/code/passkey", post(second_factor))
}

/// The home page's "Sign in with a passkey", which keeps to the sign-in
/// form's "remember me" box and `next`.
pub fn sign_in_button(next: Option<&str>) -> String {
    let next = next.filter(|next| is_local_path(next)).unwrap_or("/");
    format!(
        r#"<div class="passkey" data-options="/login/passkey/options" data-finish="/login/passkey" data-ceremony="get" data-next="{}" hidden>
<button type="button" id="passkey-sign-in">Sign in with a passkey</button>
<p class="error" data-passkey-error hidden></p>
</div>
<script src="/passkeys.js" defer></script>
"#,
        escape(next)
    )
}

/// The code page's "Use your passkey", if the account has one.
pub fn second_factor_button(pending: &Pending) -> String {
    if !pending.factors.contains(Factor::Passkey) {
        return String::new();
    }
    r#"<div class="passkey" data-options="/login/code/passkey/options" data-finish="/login/code/passkey" data-ceremony="get" hidden>
<p>Or confirm with your passkey:</p>
<button type="button" id="passkey-second-factor">Use your passkey</button>
<p class="error" data-passkey-error hidden></p>
</div>
<script src="/passkeys.js" defer></script>
"#
    .to_owned()
}

/// `GET /passkeys.js`: the ceremonies' browser side.
async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// `GET /security/passkeys`: the user's passkeys, a form to add one, and
/// one to remove each. Needs a recent sign-in, like the other security
/// pages.
async fn passkeys_page(
    State(app): State<App>,
    session: Session,
    recent: Result<RequireRecentAuth, AuthRejection>,
) -> Result<Response, keycard::Error> {
    let user = match recent {
        Ok(RequireRecentAuth(user)) => user,
        Err(rejection) => return Ok(confirm_first(rejection, PASSKEYS_URL)),
    };
    if session.is_request_only() {
        return Ok(super::browsers_only());
    }
    let flash = take_flash(&session, PASSKEYS_FLASH).await?;
    let codes: Option<Vec<String>> = session
        .remove(NEW_RECOVERY_CODES)
        .await?
        .and_then(|value| serde_json::from_value(value).ok());
    let codes = codes
        .as_deref()
        .map(recovery_codes_block)
        .unwrap_or_default();
    let csrf = csrf_field(&session).await?;
    let token = session
        .csrf_token()
        .await?
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default();
    let now = chrono::Utc::now();
    let listed = app.passkeys.list_for(&user.id).await?;
    let rows: String = listed
        .iter()
        .map(|p| {
            let used = p
                .last_used_at
                .map_or_else(|| "never".to_owned(), |at| relative(at, now));
            format!(
                r#"<tr class="passkey-row"><td>{label}</td><td>{created}</td><td>{used}</td><td>{synced}</td>
<td><form method="post" action="/security/passkeys/{id}/remove"{ask}>{csrf}<button class="danger">Remove</button></form></td></tr>
"#,
                label = escape(&p.label),
                created = escape(&relative(p.created_at, now)),
                used = escape(&used),
                synced = if p.backed_up { "synced" } else { "this device only" },
                id = p.id,
                ask = ask_first("Remove this passkey? It will not sign you in any more."),
            )
        })
        .collect();
    let table = if listed.is_empty() {
        r#"<p id="no-passkeys">You have no passkeys yet.</p>"#.to_owned()
    } else {
        format!(
            r#"<table id="passkeys"><tr><th>Name</th><th>Added</th><th>Last used</th><th>Kept</th><th></th></tr>
{rows}</table>"#
        )
    };
    let body = format!(
        r#"<h1>Passkeys</h1>
{flash}{codes}<p>A passkey signs <strong>{user}</strong> in with the device's screen lock (fingerprint,
face, PIN) instead of a password, and cannot be phished: it only works on this site. With a
passkey, a password sign-in asks for it as its second step.</p>
{table}
<h2>Add a passkey</h2>
<div class="passkey" data-options="/security/passkeys/options" data-finish="/security/passkeys/register" data-ceremony="create" data-csrf="{token}" hidden>
<label>Name <input id="passkey-label" maxlength="100" placeholder="e.g. work laptop"></label>
<button type="button" id="passkey-add">Add a passkey</button>
<p class="error" data-passkey-error hidden></p>
</div>
<noscript><p class="note">Adding a passkey needs JavaScript.</p></noscript>
<script src="/passkeys.js" defer></script>"#,
        user = escape(&user.id),
    );
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        page("Passkeys", &body),
    )
        .into_response())
}

/// A JSON answer for the script: where to go next.
fn go_to(next: &str) -> Response {
    Json(json!({ "next": next })).into_response()
}

/// A JSON answer for the script: what went wrong, shown beside the button.
fn problem(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The JSON answer for an account error of a ceremony.
fn ceremony_failure(error: AccountError) -> Response {
    let (status, message) = match &error {
        AccountError::PasskeyRefused => (StatusCode::FORBIDDEN, "That passkey was not accepted."),
        AccountError::NoPasskeyCeremony => (
            StatusCode::BAD_REQUEST,
            "That took too long, or the page is old. Please try again.",
        ),
        AccountError::PasskeyExists => {
            (StatusCode::CONFLICT, "That passkey is registered already.")
        }
        AccountError::NoPendingSignIn => (
            StatusCode::UNAUTHORIZED,
            "This sign-in expired. Please sign in again.",
        ),
        AccountError::NotSignedIn => (StatusCode::UNAUTHORIZED, "Please sign in again."),
        AccountError::NotEnrolled => (StatusCode::CONFLICT, "This account has no passkey."),
        AccountError::TooManyPasskeys => (
            StatusCode::CONFLICT,
            "You have as many passkeys as an account may have: remove one first.",
        ),
        _ => {
            tracing::error!(%error, "demo: a passkey ceremony failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Passkeys are unavailable just now. Please try again later.",
            )
        }
    };
    problem(status, message)
}

/// The checks of the JSON routes that change a signed-in account: the
/// synchronizer token, and a recent sign-in (or the way to confirm one).
fn account_change_refused(
    csrf: Result<CsrfHeader, CsrfRejection>,
    recent: Result<RequireRecentAuth, AuthRejection>,
) -> Option<Response> {
    if csrf.is_err() {
        return Some(problem(
            StatusCode::FORBIDDEN,
            "This page has expired. Please reload it.",
        ));
    }
    match recent {
        Ok(_) => None,
        Err(AuthRejection::ReauthenticationRequired(_)) => Some(go_to(&format!(
            "{}?next={PASSKEYS_URL}",
            super::CONFIRM_URL
        ))),
        Err(_) => Some(go_to("/")),
    }
}

/// `POST /security/passkeys/options`: starts a registration.
async fn registration_options(
    State(app): State<App>,
    session: Session,
    csrf: Result<CsrfHeader, CsrfRejection>,
    recent: Result<RequireRecentAuth, AuthRejection>,
) -> Response {
    if let Some(refused) = account_change_refused(csrf, recent) {
        return refused;
    }
    match app.passkeys.start_registration(&session).await {
        Ok(options) => Json(json!({ "options": options })).into_response(),
        Err(error) => ceremony_failure(error),
    }
}

#[derive(Deserialize)]
struct LabelQuery {
    #[serde(default)]
    label: String,
}

/// `POST /security/passkeys/register?label=…`: finishes a registration;
/// the account's first second factor comes with recovery codes, which the
/// page shows once.
async fn register(
    State(app): State<App>,
    session: Session,
    csrf: Result<CsrfHeader, CsrfRejection>,
    recent: Result<RequireRecentAuth, AuthRejection>,
    Query(query): Query<LabelQuery>,
    answer: Result<Json<RegisterPublicKeyCredential>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, keycard::Error> {
    if let Some(refused) = account_change_refused(csrf, recent) {
        return Ok(refused);
    }
    let Ok(Json(answer)) = answer else {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "The browser's answer could not be read.",
        ));
    };
    match app
        .passkeys
        .finish_registration(&session, &answer, &query.label)
        .await
    {
        Ok(done) => {
            if let Some(codes) = done.recovery_codes {
                session
                    .insert(NEW_RECOVERY_CODES, codes.codes().to_vec())
                    .await?;
            }
            let message = format!(
                "Passkey “{}” added: it signs you in, and a password sign-in asks for it.",
                done.passkey.label
            );
            session.insert(PASSKEYS_FLASH, message).await?;
            Ok(go_to(PASSKEYS_URL))
        }
        Err(error) => Ok(ceremony_failure(error)),
    }
}

/// `POST /security/passkeys/{id}/remove`: removes one of the user's
/// passkeys (a plain form).
async fn remove(
    State(app): State<App>,
    session: Session,
    recent: Result<RequireRecentAuth, AuthRejection>,
    Path(id): Path<i64>,
    form: Result<CsrfForm<NoFields>, CsrfRejection>,
) -> Result<Response, keycard::Error> {
    if let Err(rejection) = form {
        return Ok(form_refused(rejection, PASSKEYS_URL));
    }
    let user = match recent {
        Ok(RequireRecentAuth(user)) => user,
        Err(rejection) => return Ok(confirm_first(rejection, PASSKEYS_URL)),
    };
    let message = if app.passkeys.remove_for(&user.id, id).await? {
        "The passkey was removed."
    } else {
        "That passkey was removed already."
    };
    session.insert(PASSKEYS_FLASH, message).await?;
    Ok(Redirect::to(PASSKEYS_URL).into_response())
}

/// `POST /login/passkey/options`: starts a sign-in with any of the user's
/// passkeys. The session may be new: the answer carries the synchronizer
/// token it will have, for the script's next request.
async fn sign_in_options(
    State(app): State<App>,
    session: Session,
) -> Result<Response, keycard::Error> {
    if session.user_id().await?.is_some() {
        return Ok(go_to("/"));
    }
    match app.passkeys.start_sign_in(&session).await {
        Ok(options) => Ok(Json(json!({ "options": options })).into_response()),
        Err(error) => Ok(ceremony_failure(error)),
    }
}

#[derive(Deserialize)]
struct SignInQuery {
    #[serde(default)]
    next: String,
    /// `on` when the sign-in form's "remember me" box was ticked.
    #[serde(default)]
    remember: String,
}

/// `POST /login/passkey?next=…&remember=on`: finishes the sign-in; a
/// passkey needs no second step.
async fn sign_in(
    State(app): State<App>,
    session: Session,
    remember: Remember,
    headers: axum::http::HeaderMap,
    Query(query): Query<SignInQuery>,
    answer: Result<Json<PublicKeyCredential>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, keycard::Error> {
    let Ok(Json(answer)) = answer else {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "The browser's answer could not be read.",
        ));
    };
    match app.passkeys.finish_sign_in(&session, &answer).await {
        Ok(()) => {
            let ticked = query.remember == "on";
            remember_choice(&remember, &headers, &app, Some(ticked)).await?;
            let next = if is_local_path(&query.next) {
                query.next.as_str()
            } else {
                "/"
            };
            Ok(go_to(next))
        }
        Err(error) => Ok(ceremony_failure(error)),
    }
}

/// `POST /login/code/passkey/options`: starts the second step of a
/// half-open sign-in with one of the account's passkeys.
async fn second_factor_options(State(app): State<App>, session: Session) -> Response {
    match app.passkeys.start_second_factor(&session).await {
        Ok(options) => Json(json!({ "options": options })).into_response(),
        Err(error) => ceremony_failure(error),
    }
}

/// `POST /login/code/passkey`: completes the half-open sign-in, then goes
/// where the password form said, remembering the browser if it was asked
/// to.
async fn second_factor(
    State(app): State<App>,
    session: Session,
    remember: Remember,
    headers: axum::http::HeaderMap,
    answer: Result<Json<PublicKeyCredential>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, keycard::Error> {
    let Ok(Json(answer)) = answer else {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "The browser's answer could not be read.",
        ));
    };
    match app.passkeys.complete_second_factor(&session, &answer).await {
        Ok(()) => {
            let next = super::second_step_done(&app, &session, &remember, &headers).await?;
            Ok(go_to(&next))
        }
        Err(error) => Ok(ceremony_failure(error)),
    }
}

/// The browser side of every ceremony. Each `.passkey` block names its
/// two routes and ceremony; the server's options carry binary fields as
/// base64url, which `navigator.credentials` takes as `ArrayBuffer`s.
const SCRIPT: &str = r#""use strict";
(function () {
  function decode(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "===".slice((base64.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  }
  function encode(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(options) {
    const key = options.publicKey;
    key.challenge = decode(key.challenge);
    key.user.id = decode(key.user.id);
    (key.excludeCredentials || []).forEach((c) => { c.id = decode(c.id); });
    return { publicKey: key };
  }
  function requestOptions(options) {
    const key = options.publicKey;
    key.challenge = decode(key.challenge);
    (key.allowCredentials || []).forEach((c) => { c.id = decode(c.id); });
    return { publicKey: key };
  }
  function answer(credential) {
    const r = credential.response;
    const response = { clientDataJSON: encode(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = encode(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = encode(r.authenticatorData);
      response.signature = encode(r.signature);
      if (r.userHandle) response.userHandle = encode(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
    };
  }
  async function post(url, csrf, body) {
    const headers = { "content-type": "application/json" };
    if (csrf) headers["x-csrf-token"] = csrf;
    const reply = await fetch(url, {
      method: "POST", headers: headers, credentials: "same-origin",
      body: body === undefined ? "{}" : JSON.stringify(body),
    });
    let json = {};
    try { json = await reply.json(); } catch (_) { json = { error: "Something went wrong. Please reload the page." }; }
    if (json.next) { window.location.assign(json.next); return null; }
    if (!reply.ok || json.error) throw new Error(json.error || "Something went wrong.");
    return json;
  }
  async function run(block) {
    const error = block.querySelector("[data-passkey-error]");
    error.hidden = true;
    try {
      const csrf = block.dataset.csrf || "";
      const started = await post(block.dataset.options, csrf);
      if (!started) return;
      let finish = block.dataset.finish;
      let credential;
      if (block.dataset.ceremony === "create") {
        credential = await navigator.credentials.create(creationOptions(started.options));
        const label = document.getElementById("passkey-label");
        finish += "?label=" + encodeURIComponent(label ? label.value : "");
      } else {
        credential = await navigator.credentials.get(requestOptions(started.options));
        const query = new URLSearchParams();
        if (block.dataset.next) query.set("next", block.dataset.next);
        const box = document.querySelector("input[name=remember]");
        if (box && box.checked) query.set("remember", "on");
        finish += "?" + query.toString();
      }
      await post(finish, csrf, answer(credential));
    } catch (e) {
      error.textContent = e && e.name === "NotAllowedError"
        ? "The passkey request was cancelled or timed out."
        : (e && e.message) || String(e);
      error.hidden = false;
    }
  }
  if (!window.PublicKeyCredential) return;
  document.querySelectorAll(".passkey").forEach((block) => {
    block.hidden = false;
    block.querySelector("button").addEventListener("click", () => run(block));
  });
})();
"#;
