//! The HTTP side: a route layer on every operation of `openapi::OPS` (see `rest::router`).
//!
//! Credentials: `Authorization: Bearer <token>`. Browsers cannot set headers on a WebSocket,
//! so WebSocket routes also take the token as a subprotocol entry `bearer.<token>` in
//! `Sec-WebSocket-Protocol` (offer `wiretrail` beside it and the server answers with that, so
//! the token is not echoed). Never a query parameter: URLs end up in proxy logs and browser
//! history.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{bearer, Access, Authenticator, Denial, Port};

/// The subprotocol a browser offers beside its `bearer.<token>` entry.
pub const WS_PROTOCOL: &str = "wiretrail";
/// Prefix of the subprotocol entry that carries a token.
pub const WS_BEARER_PREFIX: &str = "bearer.";

/// The state of one route's layer: who may call it.
#[derive(Clone)]
pub struct RouteGuard {
    auth: Arc<Authenticator>,
    access: Access,
    websocket: bool,
}

impl RouteGuard {
    pub fn new(auth: Arc<Authenticator>, access: Access, websocket: bool) -> RouteGuard {
        RouteGuard {
            auth,
            access,
            websocket,
        }
    }
}

/// The entries of `Sec-WebSocket-Protocol` (comma-separated, possibly over several headers).
fn ws_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The token of a request: the `Authorization` header, else (WebSocket routes only) a
/// `bearer.<token>` subprotocol entry. `Ok(None)` when there is none.
pub fn token_of(headers: &HeaderMap, websocket: bool) -> Result<Option<&str>, Denial> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.to_str().map_err(|_| Denial::Malformed)?;
        return bearer(v).map(Some);
    }
    if websocket {
        if let Some(t) = ws_protocols(headers).find_map(|p| p.strip_prefix(WS_BEARER_PREFIX)) {
            return if t.is_empty() {
                Err(Denial::Malformed)
            } else {
                Ok(Some(t))
            };
        }
    }
    Ok(None)
}

/// The subprotocol to answer a WebSocket upgrade with: `wiretrail` when offered, else the
/// `bearer.<token>` entry (a browser fails a handshake whose offered protocols get no
/// answer), else none.
pub fn ws_protocol(headers: &HeaderMap) -> Option<String> {
    let mut bearer = None;
    for p in ws_protocols(headers) {
        if p == WS_PROTOCOL {
            return Some(p.to_string());
        }
        if bearer.is_none() && p.starts_with(WS_BEARER_PREFIX) {
            bearer = Some(p.to_string());
        }
    }
    bearer
}

/// The layer's function: authenticate, authorize, put the principal into the request's
/// extensions (`Arc<Principal>`), or answer 401/403 (`QueryError` renders the JSON error and
/// `WWW-Authenticate`).
pub async fn guard(State(g): State<RouteGuard>, mut req: Request, next: Next) -> Response {
    let token = token_of(req.headers(), g.websocket);
    match g.auth.check(token, g.access, Port::Http) {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(d) => {
            let what = format!("{} {}", req.method(), req.uri().path());
            d.into_error(&what).into_response()
        }
    }
}
