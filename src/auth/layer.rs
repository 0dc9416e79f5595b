//! [`AuthLayer`]: runs the retrievers and authenticators, and signs the
//! request's session in.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::guards::Permissions;
use super::remember::{PerRequest, Remember, RememberMe};
use super::settings::{AuthSettings, challenge};
use super::{
    Authenticated, AuthenticationError, Authenticator, Credentials, RequestHead, Retrieved,
    Retriever, TrustedHeader,
};
use crate::response::plain_response;
use crate::{Login, Session, SessionError};

/// How the user of this request was authenticated by [`AuthLayer`], in the
/// request's extensions (and in [`AuthUser::marks`](super::AuthUser::marks)).
/// Absent when the request was signed in by its session cookie alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    /// The user.
    pub user_id: String,
    /// The retriever's method (`"basic"`, `"bearer"`, `"trusted-header"`).
    pub method: &'static str,
    /// What the `authenticated` callback marked.
    pub marks: BTreeSet<String>,
}

type Callback = dyn Fn(&RequestHead<'_>, &AuthInfo) -> Vec<String> + Send + Sync;

#[derive(Clone)]
struct Config {
    retrievers: Vec<Arc<dyn Retriever>>,
    authenticators: Vec<Arc<dyn Authenticator>>,
    /// The trusted-header retriever, if any: its sessions must end when the
    /// header goes away, which means looking at the session on every request.
    trusted: Option<TrustedHeader>,
    callback: Option<Arc<Callback>>,
    remember: Option<RememberMe>,
    settings: Arc<AuthSettings>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("retrievers", &self.retrievers)
            .field("authenticators", &self.authenticators)
            .field("login_url", &self.settings.login_url)
            .finish_non_exhaustive()
    }
}

/// A tower layer that authenticates requests bringing credentials and signs
/// their sessions in. Add it *before* [`SessionLayer`](crate::SessionLayer)
/// (so that it runs inside it); see the [module documentation](super).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    config: Arc<Config>,
}

impl Default for AuthLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthLayer {
    /// No retrievers, no authenticators: add them with the builder methods.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                retrievers: Vec::new(),
                authenticators: Vec::new(),
                trusted: None,
                callback: None,
                remember: None,
                settings: Arc::new(AuthSettings::default()),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Adds a retriever, tried after those added before it.
    pub fn retriever(self, retriever: impl Retriever) -> Self {
        self.configure(|c| c.retrievers.push(Arc::new(retriever)))
    }

    /// Adds the trusted-proxy header retriever (see [`TrustedHeader`]).
    pub fn trusted_header(self, retriever: TrustedHeader) -> Self {
        self.configure(|c| {
            c.trusted = Some(retriever.clone());
            c.retrievers.push(Arc::new(retriever));
        })
    }

    /// Adds an authenticator, tried after those added before it.
    pub fn authenticator(self, authenticator: impl Authenticator) -> Self {
        self.configure(|c| c.authenticators.push(Arc::new(authenticator)))
    }

    /// Calls `callback` when a request is authenticated by this layer; the
    /// strings it returns are the request's marks
    /// ([`AuthInfo::marks`], [`AuthUser::marks`](super::AuthUser::marks)).
    pub fn on_authenticated(
        self,
        callback: impl Fn(&RequestHead<'_>, &AuthInfo) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.configure(|c| c.callback = Some(Arc::new(callback)))
    }

    /// Remembers browsers whose users ask ([`Remember::this_device`]) and
    /// signs them back in after a restart (see [`RememberMe`]). Handlers
    /// get the request's [`Remember`].
    pub fn remember(self, remember: RememberMe) -> Self {
        self.configure(|c| c.remember = Some(remember))
    }

    /// Where [`CurrentUser`](super::CurrentUser) sends browsers that are not
    /// signed in (with `?next=` the page they asked for). Default: `/login`.
    pub fn login_url(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.configure(|c| Arc::make_mut(&mut c.settings).login_url = url)
    }

    /// Where [`RequireRecentAuth`](super::RequireRecentAuth) sends a
    /// browser whose sign-in is not recent, with `?next=` the page it
    /// asked for (default `/confirm`).
    pub fn confirm_url(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.configure(|c| Arc::make_mut(&mut c.settings).confirm_url = url)
    }

    /// How long a sign-in, or its last confirmation, counts as recent for
    /// [`RequireRecentAuth`](super::RequireRecentAuth) (default 10
    /// minutes).
    pub fn recent_auth_within(self, within: std::time::Duration) -> Self {
        self.configure(|c| Arc::make_mut(&mut c.settings).recent_auth = within)
    }

    /// The application's permission check, for
    /// [`RequirePermission`](super::RequirePermission).
    pub fn permissions(self, permissions: impl Permissions) -> Self {
        self.configure(|c| Arc::make_mut(&mut c.settings).permissions = Some(Arc::new(permissions)))
    }

    /// The application's [`UserLoader`](super::UserLoader): what
    /// [`SignedIn<U>`](super::SignedIn) loads the signed-in user with, as
    /// the application's own type. One loader; a second call replaces it.
    pub fn users(self, loader: impl super::UserLoader) -> Self {
        let users = super::users::RegisteredUsers::new(loader);
        self.configure(|c| Arc::make_mut(&mut c.settings).users = Some(users))
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // The schemes a `401` offers are those of the retrievers configured.
        let mut config = self.config.clone();
        let challenges: Vec<&'static str> = config
            .retrievers
            .iter()
            .filter_map(|r| r.challenge())
            .collect();
        if config.settings.challenges != challenges {
            Arc::make_mut(&mut Arc::make_mut(&mut config).settings).challenges = challenges;
        }
        AuthService { inner, config }
    }
}

/// The service of [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    config: Arc<Config>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        request.extensions_mut().insert(config.settings.clone());
        let peer = crate::layer::peer_ip(&request);
        let head = RequestHead::of(&request, peer);
        let mut found = None;
        for retriever in &config.retrievers {
            match retriever.retrieve(&head) {
                Retrieved::Nothing => continue,
                Retrieved::Found(credentials) => {
                    found = Some((credentials, retriever.clone()));
                    break;
                }
                Retrieved::Malformed(reason) => {
                    tracing::info!(reason, "keycard: malformed credentials refused");
                    return Box::pin(std::future::ready(Ok(plain_response(
                        StatusCode::BAD_REQUEST,
                        "Malformed credentials.\n",
                    ))));
                }
            }
        }
        let Some(session) = request.extensions().get::<Session>().cloned() else {
            // A wiring mistake every request would repeat: loud, at once.
            panic!(
                "keycard: `AuthLayer` runs without `SessionLayer` around it: build the stack \
                 with `SessionLayer::new(store).with_auth(auth)` (or add `.layer(auth)` before \
                 `.layer(sessions)`, so that the session layer wraps it)"
            );
        };
        let remember = config.remember.as_ref().map(|remember| {
            let per_request = PerRequest::new(remember, &session, request.headers());
            request
                .extensions_mut()
                .insert(Remember(per_request.clone()));
            per_request
        });
        let Some((credentials, retriever)) = found else {
            if let Some(per_request) = remember.as_ref().filter(|r| r.has_cookie()) {
                // Asked only if the session turns out anonymous when first
                // used: a request that never looks at it costs nothing.
                session.set_restorer(per_request.clone());
            }
            if config.trusted.is_none() && remember.is_none() {
                return Box::pin(inner.call(request));
            }
            let trusted = config.trusted.is_some();
            return Box::pin(async move {
                // A trusted-header session whose header went away ends now.
                if trusted && let Err(error) = end_orphaned_trusted_session(&session).await {
                    return Ok(error.to_response());
                }
                let response = inner.call(request).await?;
                Ok(finish_remember(remember, response).await)
            });
        };
        Box::pin(async move {
            let stored = retriever.stores_session();
            match authenticate(&config.authenticators, &credentials).await {
                Ok(user) => {
                    let method = retriever.method();
                    let signed_in = if stored {
                        sign_in(&session, &user, method, retriever.is_api()).await
                    } else {
                        let login = login(&user, method, retriever.is_api());
                        session
                            .sign_in_for_request(login, retriever.sent_by_browsers())
                            .await
                    };
                    if let Err(error) = signed_in {
                        return Ok(error.to_response());
                    }
                    let mut info = AuthInfo {
                        user_id: user.user_id,
                        method,
                        marks: BTreeSet::new(),
                    };
                    if let Some(callback) = &config.callback {
                        let head = RequestHead::of(&request, peer);
                        info.marks = callback(&head, &info).into_iter().collect();
                    }
                    request.extensions_mut().insert(info);
                    let response = inner.call(request).await?;
                    Ok(finish_remember(remember, response).await)
                }
                Err(AuthenticationError::Unavailable(reason)) => {
                    tracing::error!(%reason, "keycard: authentication unavailable");
                    Ok(plain_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Authentication is temporarily unavailable. Please try again later.\n",
                    ))
                }
                Err(_) => {
                    // A stored API session whose credentials stopped working
                    // ends; a request-only one leaves the cookie's session
                    // alone.
                    if stored && let Err(error) = end_api_session(&session).await {
                        return Ok(error.to_response());
                    }
                    Ok(challenge(&config.settings.challenges))
                }
            }
        })
    }
}

/// After the handler: the remembered browsers the request's sign-outs end,
/// and the remember-me cookie. If that fails the response is an error, so
/// that a sign-out that did not end the browser's series is not reported
/// as done (and the session layer keeps the session as it was).
async fn finish_remember<B: From<&'static str>>(
    remember: Option<Arc<PerRequest>>,
    mut response: Response<B>,
) -> Response<B> {
    let Some(remember) = remember else {
        return response;
    };
    let status = response.status();
    match remember.finish(status, response.headers_mut()).await {
        Ok(()) => response,
        Err(error) => {
            tracing::warn!(%error, "keycard: remember-me bookkeeping failed; answering with an error");
            let (status, body) = error.status_and_body();
            plain_response(status, body)
        }
    }
}

/// Tries the authenticators in order.
async fn authenticate(
    authenticators: &[Arc<dyn Authenticator>],
    credentials: &Credentials,
) -> Result<Authenticated, AuthenticationError> {
    for authenticator in authenticators {
        match authenticator.authenticate(credentials).await {
            Err(AuthenticationError::NotMine) => continue,
            other => return other,
        }
    }
    Err(AuthenticationError::Rejected)
}

/// The sign-in of `user` through a retriever with `method`.
fn login(user: &Authenticated, method: &'static str, is_api: bool) -> Login {
    let login = Login::new(user.user_id.clone()).method(method).api(is_api);
    match &user.credential {
        Some(credential) => login.credential(credential.clone()),
        None => login,
    }
}

/// Signs `user` in on `session`: nothing to do if the session already is
/// this user's, by this method; otherwise a session of somebody else (or of
/// another kind) is ended and a fresh one signed in, in this request.
async fn sign_in(
    session: &Session,
    user: &Authenticated,
    method: &'static str,
    is_api: bool,
) -> Result<(), SessionError> {
    let current = session.identity().await?;
    if let Some(who) = &current
        && who.user_id == user.user_id
        && who.is_api == is_api
        && who.auth_method.as_deref() == Some(method)
    {
        return Ok(());
    }
    if current.is_some() {
        session.restart().await?;
    }
    session.login_with(login(user, method, is_api)).await
}

/// Wrong credentials on an API session end it.
async fn end_api_session(session: &Session) -> Result<(), SessionError> {
    if session.identity().await?.is_some_and(|who| who.is_api) {
        session.logout().await?;
    }
    Ok(())
}

/// A session signed in by a trusted proxy's header ends when a request comes
/// without it.
async fn end_orphaned_trusted_session(session: &Session) -> Result<(), SessionError> {
    let by_proxy = session
        .identity()
        .await?
        .is_some_and(|who| who.auth_method.as_deref() == Some(super::method::TRUSTED_HEADER));
    if by_proxy {
        tracing::info!("keycard: trusted header gone; session ended");
        session.logout().await?;
    }
    Ok(())
}
