//! [`SessionService`]: puts a [`Session`] into each request.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::client_ip::client_ip;
use super::future::ResponseFuture;
use super::{SessionContext, cookies, origin};
use crate::Session;

/// The service [`SessionLayer`](super::SessionLayer) wraps around an
/// application.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    pub(super) inner: S,
    pub(super) ctx: Arc<SessionContext>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(every) = self.ctx.config.purge_interval {
            super::purge::start_if_due(&self.ctx, every);
        }
        if let Err(reason) = origin::check(&request, &self.ctx.config) {
            tracing::info!(
                reason,
                method = %request.method(),
                path = request.uri().path(),
                "keycard: cross-origin request refused"
            );
            return ResponseFuture::refused(crate::response::plain_response(
                http::StatusCode::FORBIDDEN,
                "Cross-origin request refused: this site accepts forms and scripts \
                 only from its own pages.\n",
            ));
        }
        let presented = cookies::read(request.headers(), &self.ctx.config);
        let config = &self.ctx.config;
        let client_ip = client_ip(&request, &config.trusted_proxies, config.forwarded);
        let user_agent = request.headers().get(http::header::USER_AGENT).cloned();
        let session = Session::new(
            self.ctx.clone(),
            presented.pair,
            presented.had_cookie,
            client_ip,
            user_agent,
        );
        if let Some(link) = request
            .extensions()
            .get::<crate::session::lifecycle::HooksHandle>()
        {
            link.0.attach_session(&session);
        }
        request.extensions_mut().insert(session.clone());
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(inner.call(request), session, self.ctx.clone())
    }
}
