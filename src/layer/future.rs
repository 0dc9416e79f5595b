//! [`ResponseFuture`]: runs the handler, then saves the session and writes
//! its cookies before the response leaves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::{SessionContext, cookies};
use crate::Session;

type Saving<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

pin_project! {
    /// Response future of [`SessionService`](super::SessionService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Handler {
            #[pin]
            inner: F,
            session: Option<Session>,
            ctx: Arc<SessionContext>,
        },
        Saving { saving: Saving<B> },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// Answers `response` without calling the inner service.
    pub(super) fn refused(response: Response<B>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    pub(super) fn new(inner: F, session: Session, ctx: Arc<SessionContext>) -> Self {
        Self {
            state: State::Handler {
                inner,
                session: Some(session),
                ctx,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<&'static str> + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Handler {
                    inner,
                    session,
                    ctx,
                } => {
                    let response = ready!(inner.poll(cx))?;
                    let Some(session) = session.take().filter(Session::was_used) else {
                        // The handler never looked at its session: no query,
                        // no cookie, no allocation.
                        return Poll::Ready(Ok(response));
                    };
                    let saving = Box::pin(finish(session, response, ctx.clone()));
                    this.state.set(State::Saving { saving });
                }
                StateProj::Saving { saving } => return saving.as_mut().poll(cx).map(Ok),
                StateProj::Refused { response } => {
                    // Polled again after completion: a contract breach by the
                    // caller; answer an empty-bodied error rather than panic.
                    let response = response.take().unwrap_or_else(|| {
                        crate::response::plain_response(
                            http::StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal server error.\n",
                        )
                    });
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// Saves the session and puts its cookies on `response`, or replaces the
/// response by an error one if the session could not be loaded or saved.
async fn finish<B: From<&'static str>>(
    session: Session,
    mut response: Response<B>,
    ctx: Arc<SessionContext>,
) -> Response<B> {
    match session.save(response.status()).await {
        Ok(saved) => {
            let headers = response.headers_mut();
            cookies::write(headers, &saved.cookies, &ctx.config);
            cookies::mark_private(headers, &saved, &ctx.config);
            response
        }
        Err(error) => {
            tracing::warn!(%error, "keycard: session not saved; answering with an error");
            error.to_response()
        }
    }
}
