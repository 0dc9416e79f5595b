//! [`ResponseFuture`]: runs the rest of the request with its connection,
//! then commits or rolls back before the response leaves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::CnxDatabase;
use super::bridge;
use super::handle::Cnx;

type Resolving<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

pin_project! {
    /// Response future of [`CnxService`](super::CnxService).
    pub struct ResponseFuture<F, DB: CnxDatabase, B> {
        // Declared first, so dropped first: a cancelled handler lets go of
        // the transaction before `guard` rolls it back.
        #[pin]
        state: State<F, B>,
        guard: AbandonOnDrop<DB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner {
            #[pin]
            inner: bridge::Scoped<F>,
        },
        Resolving { resolving: Resolving<B> },
    }
}

/// Rolls the transaction back if the request never reaches its end
/// (cancelled, timed out, or its handler panicked).
struct AbandonOnDrop<DB: CnxDatabase>(Option<Cnx<DB>>);

impl<DB: CnxDatabase> Drop for AbandonOnDrop<DB> {
    fn drop(&mut self) {
        if let Some(cnx) = self.0.take() {
            if cnx.in_transaction() {
                tracing::info!("keycard: request ended early; its transaction rolls back");
            }
            cnx.abandon();
        }
    }
}

impl<F, DB: CnxDatabase, B> ResponseFuture<F, DB, B> {
    pub(super) fn new(inner: bridge::Scoped<F>, cnx: Cnx<DB>) -> Self {
        Self {
            state: State::Inner { inner },
            guard: AbandonOnDrop(Some(cnx)),
        }
    }
}

impl<F, DB, B, E> Future for ResponseFuture<F, DB, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    DB: CnxDatabase,
    B: From<&'static str> + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { inner } => {
                    let response = ready!(inner.poll(cx))?;
                    let Some(cnx) = this.guard.0.clone() else {
                        return Poll::Ready(Ok(response));
                    };
                    if !cnx.was_used() {
                        // Never touched: no connection was taken.
                        cnx.finish();
                        this.guard.0 = None;
                        return Poll::Ready(Ok(response));
                    }
                    let inner = cnx.0.clone();
                    let resolving = Box::pin(bridge::scope(inner, resolve(cnx, response)));
                    this.state.set(State::Resolving { resolving });
                }
                StateProj::Resolving { resolving } => {
                    let response = ready!(resolving.as_mut().poll(cx));
                    this.guard.0 = None;
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// Commits for a success or a redirection, or when the transaction holds
/// only the session's own changes of a response that is not a success
/// (begun after the handler's was rolled back) and either the response is
/// not a server error or the session saved without one (a server error's
/// save stores nothing, but tells the hooks of a replayed remember-me
/// token's alarm); rolls back otherwise. A write that had to stand and
/// could not be made again after a rollback turns the response into its
/// error.
async fn resolve<DB: CnxDatabase, B: From<&'static str>>(
    cnx: Cnx<DB>,
    response: Response<B>,
) -> Response<B> {
    let status = response.status();
    let commit = status.is_success()
        || status.is_redirection()
        || (cnx.forced() && (!status.is_server_error() || cnx.saved()));
    let outcome = if commit {
        cnx.commit_now().await
    } else {
        cnx.rollback_now().await;
        Ok(())
    };
    // A write that had to stand whatever the response, and that another
    // request used up after the rollback, fails the response.
    let outcome = match (outcome, cnx.take_lost()) {
        (Ok(()), Some(lost)) => Err(crate::Error::from(lost)),
        (outcome, _) => outcome,
    };
    cnx.finish();
    match outcome {
        Ok(()) => response,
        Err(error) => {
            tracing::warn!(%error, "keycard: the request's transaction did not commit");
            error.to_response()
        }
    }
}
