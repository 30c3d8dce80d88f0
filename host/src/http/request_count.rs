//! Every response counted by matched route (not raw path: a bounded label
//! set). A router layer, so the route is matched by then; a plain tower
//! service, not an `axum::middleware` function, which would box the inner
//! service and its future on every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use crate::metrics::Metrics;

/// Counts each response of the services it wraps into `metrics`.
#[derive(Clone)]
pub struct CountLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count { inner, metrics: self.0.clone() }
    }
}

/// See [`CountLayer`].
#[derive(Clone)]
pub struct Count<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for Count<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // A shared `Arc<str>`: no copy of the path per request.
        let route = request.extensions().get::<MatchedPath>().cloned();
        Counted { inner: self.inner.call(request), route, metrics: self.metrics.clone() }
    }
}

/// A response on its way, counted when it is ready.
pub struct Counted<F> {
    inner: F,
    route: Option<MatchedPath>,
    metrics: Arc<Metrics>,
}

impl<F: Future<Output = Result<Response, Infallible>> + Unpin> Future for Counted<F> {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Poll::Ready(Ok(response)) = Pin::new(&mut self.inner).poll(cx) else {
            return Poll::Pending;
        };
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        self.metrics.request(route, response.status().as_u16());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, ServiceExt as _};

    #[tokio::test]
    async fn each_response_is_counted_once_by_its_route() {
        let metrics = Arc::new(Metrics::default());
        // Boxed: the layer wraps routes, whose futures are `Unpin`.
        let inner = tower::service_fn(|_: Request| {
            Box::pin(async {
                Ok::<_, Infallible>(Response::builder().status(418).body(axum::body::Body::empty()).unwrap())
            })
        });
        let service = CountLayer(metrics.clone()).layer(inner);
        for _ in 0..2 {
            let request = Request::new(axum::body::Body::empty());
            assert_eq!(service.clone().oneshot(request).await.unwrap().status(), 418);
        }
        let text = metrics.render(&crate::metrics::Gauges { active_runs: 0, max_runs: 1, pool_instances: None });
        assert!(text.contains("wasmclaw_http_requests_total{route=\"unmatched\",status=\"418\"} 2"), "{text}");
    }
}
