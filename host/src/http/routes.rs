//! The one table of HTTP routes: path, method, who may call it, handler.
//! The router and the access check are both built from it, so adding a route
//! is one row, and the `Allow` header of a 405 is derived from the rows.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use futures::future::Either;

use super::error::ApiError;
use super::{
    admin, chat, completions, conversations, health, models, replay, responses, rollout, runs, sessions, ui, usage,
};
use crate::auth::{Principal, Scope};
use crate::config::MetricsAccess;
use crate::gateway::Gateway;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone (probes; the WebSocket authenticates inside its protocol).
    Public,
    /// Clients on a loopback address, without credentials.
    Loopback,
    /// An authenticated principal holding this scope.
    Scope(Scope),
}

/// One row of the table.
struct Route {
    path: &'static str,
    method: Method,
    access: Access,
    handler: MethodRouter<Arc<Gateway>>,
}

fn row(path: &'static str, method: Method, access: Access, handler: MethodRouter<Arc<Gateway>>) -> Route {
    Route { path, method, access, handler }
}

/// Every route this gateway serves with its config.
fn table(gw: &Gateway) -> Vec<Route> {
    use Access::{Public, Scope as Needs};
    use Scope::{Admin, Read, Write};
    let mut rows = vec![
        row("/", Method::GET, Public, get(super::root)),
        row("/health", Method::GET, Public, get(health::live)),
        row("/healthz", Method::GET, Public, get(health::live)),
        row("/ready", Method::GET, Public, get(health::ready)),
        row("/readyz", Method::GET, Public, get(health::ready)),
        row("/sessions", Method::GET, Needs(Read), get(sessions::list)),
        row("/sessions/{key}", Method::DELETE, Needs(Write), delete(sessions::reset)),
        row("/sessions/{key}/history", Method::GET, Needs(Read), get(sessions::history)),
        row("/usage", Method::GET, Needs(Read), get(usage::get)),
        row("/runs", Method::GET, Needs(Read), get(runs::list)),
        row("/runs/{id}", Method::GET, Needs(Read), get(runs::show)),
        // Like an install, a replay may carry a component: the component limit applies.
        row("/admin/replay", Method::POST, Needs(Admin), post(replay::replay).layer(DefaultBodyLimit::disable())),
        row("/admin/agents", Method::GET, Needs(Read), get(admin::list)),
        row("/admin/agents/{id}", Method::GET, Needs(Read), get(admin::show)),
        // The component limit applies here, not the chat body limit.
        row("/admin/agents/{id}", Method::PUT, Needs(Admin), put(admin::install).layer(DefaultBodyLimit::disable())),
        row("/admin/agents/{id}", Method::DELETE, Needs(Admin), delete(admin::remove)),
        row("/admin/agents/{id}/rollback", Method::POST, Needs(Admin), post(admin::rollback)),
        row("/admin/agents/{id}/rollout", Method::GET, Needs(Read), get(rollout::show)),
        // A candidate's component comes base64 in the JSON: the component limit applies.
        row(
            "/admin/agents/{id}/rollout",
            Method::PUT,
            Needs(Admin),
            put(rollout::start).layer(DefaultBodyLimit::disable()),
        ),
        row("/admin/agents/{id}/rollout", Method::DELETE, Needs(Admin), delete(rollout::end)),
        row("/admin/agents/{id}/rollout/promote", Method::POST, Needs(Admin), post(rollout::promote)),
        row("/admin/agents/{id}/rollout/rollback", Method::POST, Needs(Admin), post(rollout::roll_back)),
    ];
    let config = &gw.config.gateway;
    if config.metrics.enabled {
        let access = match config.metrics.access {
            MetricsAccess::Auth => Needs(Admin),
            MetricsAccess::Loopback => Access::Loopback,
        };
        rows.push(row("/metrics", Method::GET, access, get(super::metrics)));
    }
    // The control page: static files; it authenticates inside the WebSocket like any client.
    if config.control_ui.enabled {
        rows.push(row("/ui", Method::GET, Public, get(ui::index)));
        rows.push(row("/ui/", Method::GET, Public, get(ui::index)));
        rows.push(row("/ui/{asset}", Method::GET, Public, get(ui::asset)));
    }
    // Disabled endpoints answer 404 as if they did not exist.
    if config.http.endpoints.chat_completions.enabled {
        rows.push(row("/v1/chat/completions", Method::POST, Needs(Write), post(chat::completions)));
        rows.push(row("/v1/completions", Method::POST, Needs(Write), post(completions::completions)));
        rows.push(row("/v1/models", Method::GET, Needs(Read), get(models::list)));
        rows.push(row("/v1/models/{*id}", Method::GET, Needs(Read), get(models::show)));
    }
    if config.http.endpoints.responses.enabled {
        rows.push(row("/v1/responses", Method::POST, Needs(Write), post(responses::create)));
        rows.push(row("/v1/responses/{id}", Method::GET, Needs(Read), get(responses::retrieve)));
        rows.push(row("/v1/responses/{id}", Method::DELETE, Needs(Write), delete(responses::delete)));
        rows.push(row("/v1/responses/{id}/input_items", Method::GET, Needs(Read), get(responses::input_items)));
        rows.push(row("/v1/responses/{id}/cancel", Method::POST, Needs(Write), post(responses::cancel)));
        // Conversations: a session its owner keeps (http/conversations.rs).
        let conversation = "/v1/conversations/{id}";
        rows.push(row("/v1/conversations", Method::POST, Needs(Write), post(conversations::create)));
        rows.push(row(conversation, Method::GET, Needs(Read), get(conversations::retrieve)));
        rows.push(row(conversation, Method::POST, Needs(Write), post(conversations::update)));
        rows.push(row(conversation, Method::DELETE, Needs(Write), delete(conversations::delete)));
        rows.push(row("/v1/conversations/{id}/items", Method::GET, Needs(Read), get(conversations::list_items)));
        rows.push(row("/v1/conversations/{id}/items", Method::POST, Needs(Write), post(conversations::add_items)));
    }
    rows
}

/// (path, method) → access; a method a path does not serve needs the least
/// access of the path's rows, so credentials are checked before a 405.
#[derive(Default)]
struct AccessTable {
    exact: HashMap<(&'static str, Method), Access>,
    least: HashMap<&'static str, Access>,
}

impl AccessTable {
    fn insert(&mut self, path: &'static str, method: Method, access: Access) {
        self.exact.insert((path, method), access);
        let least = self.least.entry(path).or_insert(access);
        *least = (*least).min(access);
    }

    fn get(&self, path: &str, method: &Method) -> Option<Access> {
        // HEAD is served by GET routes, so it needs what GET needs.
        let method = if method == Method::HEAD { &Method::GET } else { method };
        let path = self.least.get_key_value(path)?.0;
        self.exact.get(&(*path, method.clone())).or_else(|| self.least.get(path)).copied()
    }
}

/// The routes of the table, each checked by [`authorize`].
pub fn router(gw: &Arc<Gateway>) -> Router<Arc<Gateway>> {
    let mut access = AccessTable::default();
    // Rows of one path become one method router; the order of first rows is kept.
    let mut paths: Vec<Route> = Vec::new();
    let mut allowed: HashMap<&'static str, Vec<Method>> = HashMap::new();
    for route in table(gw) {
        access.insert(route.path, route.method.clone(), route.access);
        allowed.entry(route.path).or_default().push(route.method.clone());
        match paths.iter_mut().find(|p| p.path == route.path) {
            Some(p) => p.handler = std::mem::take(&mut p.handler).merge(route.handler),
            None => paths.push(route),
        }
    }
    let mut router = Router::new();
    for Route { path, handler, .. } in paths {
        let allow: Arc<str> = allowed[path].iter().map(Method::as_str).collect::<Vec<_>>().join(", ").into();
        let not_allowed = move || async move { ApiError::method_not_allowed(allow) };
        router = router.route(path, handler.fallback(not_allowed));
    }
    router.route_layer(AuthorizeLayer { gw: gw.clone(), table: Arc::new(access) })
}

/// The one access check of the HTTP door: credentials, lock-out and scope,
/// before the handler; the principal goes into the request's extensions.
/// A plain tower layer: the check is synchronous, and `axum::middleware`
/// would box the route and its future on every request.
#[derive(Clone)]
struct AuthorizeLayer {
    gw: Arc<Gateway>,
    table: Arc<AccessTable>,
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize { inner, check: self.clone() }
    }
}

/// See [`AuthorizeLayer`].
#[derive(Clone)]
struct Authorize<S> {
    inner: S,
    check: AuthorizeLayer,
}

impl<S> tower::Service<Request> for Authorize<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<std::future::Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match authorize(&self.check.gw, &self.check.table, &mut request) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(refused) => Either::Left(std::future::ready(Ok(refused.into_response()))),
        }
    }
}

/// Whether `request` may reach its route; `Ok` with its principal inserted.
fn authorize(gw: &Gateway, table: &AccessTable, request: &mut Request) -> Result<(), ApiError> {
    if !super::origin::host_allowed(&gw.config, request.headers()) {
        tracing::warn!("request refused: Host is not a loopback name (gateway.allowedHosts) in auth mode none");
        return Err(ApiError::forbidden_host());
    }
    // The listener puts the peer on every request; without one, nothing counts as loopback.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |ConnectInfo(peer)| *peer);
    let matched = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
    let needed = table.get(matched, request.method()).unwrap_or(Access::Scope(Scope::Admin));
    match needed {
        Access::Public => {}
        Access::Loopback if peer.ip().is_loopback() => {}
        Access::Loopback => return Err(ApiError::loopback_only("Metrics")),
        Access::Scope(scope) => {
            let principal = authenticate(gw, peer, request)?;
            // Logs of this request name the credential (never the secret).
            tracing::Span::current().record("token", tracing::field::display(principal.name()));
            let metrics = gw.agents.metrics();
            if !principal.allows(scope) {
                tracing::info!(scope = scope.name(), "request refused: scope missing");
                metrics.token_request(principal.name(), "forbidden");
                return Err(ApiError::permission_denied(scope.name()));
            }
            if let Err(retry_after) = principal.admit() {
                metrics.token_request(principal.name(), "rate_limited");
                return Err(ApiError::rate_limited(principal.name(), retry_after));
            }
            metrics.token_request(principal.name(), "allowed");
            request.extensions_mut().insert(principal);
        }
    }
    Ok(())
}

/// Bearer auth with the lock-out that every door shares.
fn authenticate(gw: &Gateway, peer: SocketAddr, request: &Request) -> Result<Principal, ApiError> {
    let ip = peer.ip();
    gw.lockout.check(ip).map_err(ApiError::locked_out)?;
    gw.auth.authenticate_bearer(request.headers()).map_err(|failure| {
        gw.auth_failed(ip);
        failure.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_is_looked_up_by_route_and_method() {
        let mut table = AccessTable::default();
        table.insert("/admin/agents/{id}", Method::GET, Access::Scope(Scope::Read));
        table.insert("/admin/agents/{id}", Method::PUT, Access::Scope(Scope::Admin));
        table.insert("/health", Method::GET, Access::Public);
        assert_eq!(table.get("/admin/agents/{id}", &Method::PUT), Some(Access::Scope(Scope::Admin)));
        assert_eq!(table.get("/admin/agents/{id}", &Method::HEAD), Some(Access::Scope(Scope::Read)));
        // Credentials before a 405: an unserved method needs the path's least access.
        assert_eq!(table.get("/admin/agents/{id}", &Method::POST), Some(Access::Scope(Scope::Read)));
        assert_eq!(table.get("/health", &Method::POST), Some(Access::Public));
        assert_eq!(table.get("/nowhere", &Method::GET), None);
    }
}
