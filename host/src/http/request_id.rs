//! The request's id as the HTTP door keeps it: an unsafe `x-request-id` is
//! dropped before a fresh one is made, and while a request is answered its id
//! is in scope, so errors built anywhere under it can name it.
//!
//! Both are plain tower services, not `axum::middleware` functions: those box
//! the inner service and their future on every request.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;

tokio::task_local! {
    /// The `x-request-id` of the request being answered.
    static REQUEST_ID: Arc<str>;
}

/// The current request's id, to carry into work polled after the handler
/// returned (an SSE body) with [`in_request`].
pub fn request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Run `work` as part of the request `id` (see [`request_id`]).
pub async fn in_request<T>(id: Option<Arc<str>>, work: impl Future<Output = T>) -> T {
    match id {
        Some(id) => REQUEST_ID.scope(id, work).await,
        None => work.await,
    }
}

/// Remove an `x-request-id` that [`crate::gateway::request_id`] refuses.
pub fn drop_unsafe(mut request: Request) -> Request {
    let sent = request.headers().get("x-request-id").map(|v| v.to_str().ok());
    if let Some(sent) = sent
        && crate::gateway::request_id(sent).is_none()
    {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Puts the request's `x-request-id` in scope for everything that answers it.
#[derive(Debug, Clone, Copy, Default)]
pub struct InScopeLayer;

impl<S> tower::Layer<S> for InScopeLayer {
    type Service = InScope<S>;

    fn layer(&self, inner: S) -> InScope<S> {
        InScope(inner)
    }
}

/// See [`InScopeLayer`].
#[derive(Debug, Clone)]
pub struct InScope<S>(S);

impl<S: tower::Service<Request>> tower::Service<Request> for InScope<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = tokio::task::futures::TaskLocalFuture<Arc<str>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let id: Arc<str> =
            request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().into();
        // The inner service's synchronous part runs in scope too, as its future does.
        let future = REQUEST_ID.sync_scope(id.clone(), || self.0.call(request));
        REQUEST_ID.scope(id, future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    #[tokio::test]
    async fn the_id_is_in_scope_while_the_request_is_answered_and_not_after() {
        let seen_in_call = Arc::new(std::sync::Mutex::new(None));
        let seen = seen_in_call.clone();
        let inner = tower::service_fn(move |_: Request| {
            *seen.lock().unwrap() = request_id();
            async { Ok::<_, std::convert::Infallible>(request_id()) }
        });
        let mut service = InScopeLayer.layer(inner);
        let request = Request::builder().header("x-request-id", "req-7").body(axum::body::Body::empty()).unwrap();
        let answered = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(answered.as_deref(), Some("req-7"));
        assert_eq!(seen_in_call.lock().unwrap().as_deref(), Some("req-7"));
        assert_eq!(request_id(), None);
    }

    #[test]
    fn an_unsafe_id_is_dropped_and_a_safe_one_kept() {
        let with = |id: &str| Request::builder().header("x-request-id", id).body(axum::body::Body::empty()).unwrap();
        assert!(drop_unsafe(with("fine-123")).headers().contains_key("x-request-id"));
        assert!(!drop_unsafe(with("bad/id")).headers().contains_key("x-request-id"));
        let none = Request::builder().body(axum::body::Body::empty()).unwrap();
        assert!(!drop_unsafe(none).headers().contains_key("x-request-id"));
    }
}
