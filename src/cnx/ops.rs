//! Pending operations and the commit state.

use std::future::Future;
use std::pin::Pin;

use crate::Error;

/// Where a connection's transaction is in its life. Read it with
/// [`Cnx::commit_state`](super::Cnx::commit_state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitState {
    /// No transaction yet: reads run on pooled connections.
    Idle,
    /// A transaction is open and holds one connection.
    Active,
    /// The commit has begun: `Commit` hooks and precommit operations are
    /// running inside the transaction, and may still veto it.
    Precommit,
    /// The transaction is committed; postcommit operations are running.
    Postcommit,
    /// An operation vetoed (or [`Cnx::set_uncommitable`](super::Cnx::set_uncommitable) was called): the
    /// transaction can only roll back.
    Uncommitable,
    /// The last transaction committed.
    Committed,
    /// The last transaction rolled back.
    RolledBack,
}

pub use crate::veto::Veto;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An operation run at precommit, inside the transaction, given its
/// connection (`C` is a [`Cnx`](super::Cnx)); an error vetoes.
pub(crate) type Precommit<C> = Box<dyn FnOnce(C) -> BoxFuture<Result<(), Error>> + Send>;

/// An operation run after the transaction ended (postcommit, rollback).
pub(crate) type Deferred = Box<dyn FnOnce() -> BoxFuture<()> + Send>;

pub(crate) fn precommit<C, F, Fut>(op: F) -> Precommit<C>
where
    F: FnOnce(C) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    Box::new(move |cnx| Box::pin(op(cnx)))
}

pub(crate) fn deferred<F, Fut>(op: F) -> Deferred
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move || Box::pin(op()))
}
