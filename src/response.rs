//! How keycard's layers answer for themselves: a plain-text response that
//! no cache keeps.

use http::StatusCode;

/// A plain-text response that no cache keeps: how keycard's layers answer
/// for themselves.
pub(crate) fn plain_response<B: From<&'static str>>(
    status: StatusCode,
    body: &'static str,
) -> http::Response<B> {
    let mut response = http::Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(http::header::RETRY_AFTER, RETRY_AFTER);
    }
    response
}

/// How long a client is asked to wait after a `503`: the database was busy
/// or away for a moment; a retry soon is likely to work.
const RETRY_AFTER: http::HeaderValue = http::HeaderValue::from_static("2");
