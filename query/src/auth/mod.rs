//! Who is asking: authentication and roles for the API, Flight SQL and ingest ports.
//!
//! An [`Authenticator`] turns a bearer token into a [`Principal`] (name, [`Role`], namespace
//! [`Scope`]) and decides whether that role may use a route ([`Access`]). The HTTP middleware
//! ([`http`]) and the gRPC interceptor ([`grpc`]) are thin adapters around [`Authenticator::check`],
//! so every port answers the same question the same way. The principal travels in the
//! request's extensions (`Arc<Principal>`), which is where namespace-scoped reads and the audit
//! log will pick it up; with `--auth none` it is [`Principal::anonymous`], so that code never
//! has to ask whether authentication is on.
//!
//! Modes (`wiretrail up --auth`): `none`, `tokens` (a principals file, see [`tokens`]). `jwt`
//! and `kubernetes` are accepted by the parser, so the flag's vocabulary is stable, but refuse to
//! start: a mode that silently let everyone in would be worse than none.

pub mod grpc;
pub mod http;
pub mod tokens;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::QueryError;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Reads: entries, counts, maps, SQL, live views, snapshot list and export.
    Viewer,
    /// Everything a viewer may do, plus snapshot create/delete and shipping entries.
    Admin,
    /// Ships entries to ingest (node agents, `import --server`); nothing on the HTTP API.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    /// Whether this role may use a route that needs `access`.
    pub fn may(self, access: Access) -> bool {
        match access {
            Access::Open => true,
            Access::Metrics | Access::Read => matches!(self, Role::Viewer | Role::Admin),
            Access::Admin => self == Role::Admin,
            Access::Ship => matches!(self, Role::Agent | Role::Admin),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = QueryError;
    /// The error never repeats the input: a token pasted into the wrong field must not end up
    /// in a log.
    fn from_str(s: &str) -> Result<Role, QueryError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "admin" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            _ => Err(QueryError::BadRequest(
                "unknown role: expected viewer, admin or agent".into(),
            )),
        }
    }
}

/// The namespaces whose entries a principal may see: all, or a set. Recorded now, enforced
/// where data is read by later work (issue 18: namespace-scoped access).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Namespaces(BTreeSet<String>),
}

impl Scope {
    /// `*` or a comma-separated list (`a,b`).
    pub fn parse(s: &str) -> Result<Scope, QueryError> {
        let s = s.trim();
        if s == "*" {
            return Ok(Scope::All);
        }
        let set: BTreeSet<String> = s
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        Scope::from_list(set)
    }

    /// A namespace list; `*` alone means all.
    pub fn from_list(set: BTreeSet<String>) -> Result<Scope, QueryError> {
        if set.len() == 1 && set.contains("*") {
            return Ok(Scope::All);
        }
        if set.is_empty() {
            return Err(QueryError::BadRequest(
                "namespaces: give `*` or at least one namespace".into(),
            ));
        }
        if let Some(bad) = set.iter().find(|n| !valid_namespace(n)) {
            return Err(QueryError::BadRequest(format!(
                "namespaces: {bad:?} is not a Kubernetes namespace name (or `*` alone)"
            )));
        }
        Ok(Scope::Namespaces(set))
    }

    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespaces(set) => set.contains(namespace),
        }
    }
}

/// DNS-1123 label, as Kubernetes names namespaces.
fn valid_namespace(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Namespaces(set) => {
                let v: Vec<&str> = set.iter().map(String::as_str).collect();
                f.write_str(&v.join(","))
            }
        }
    }
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub namespaces: Scope,
}

impl Principal {
    /// The principal of every request with `--auth none`: an admin who sees everything.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Admin,
            namespaces: Scope::All,
        }
    }
}

/// What a route needs; each operation of `openapi::OPS` names one, so a new route cannot be
/// added without deciding who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/healthz`).
    Open,
    /// Anyone, unless `--metrics-auth`: then a viewer or admin (`/metrics`).
    Metrics,
    /// A viewer or admin: reads.
    Read,
    /// An admin: changes (snapshot create/delete).
    Admin,
    /// An agent or admin: ingest `DoPut`.
    Ship,
}

impl Access {
    /// The roles that may, for messages.
    pub fn needs(self) -> &'static str {
        match self {
            Access::Open => "nothing",
            Access::Metrics | Access::Read => "viewer or admin",
            Access::Admin => "admin",
            Access::Ship => "agent or admin",
        }
    }
}

/// `wiretrail up --auth MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    #[default]
    None,
    Tokens,
    Jwt,
    Kubernetes,
}

impl FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "none" => Ok(AuthMode::None),
            "tokens" => Ok(AuthMode::Tokens),
            "jwt" => Ok(AuthMode::Jwt),
            "kubernetes" => Ok(AuthMode::Kubernetes),
            _ => Err(format!("{s:?}: expected none, tokens, jwt or kubernetes")),
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Tokens => "tokens",
            AuthMode::Jwt => "jwt",
            AuthMode::Kubernetes => "kubernetes",
        })
    }
}

/// How `up` authenticates.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The principals file of `--auth tokens`.
    pub tokens_file: PathBuf,
    /// `/metrics` needs a token too.
    pub metrics_auth: bool,
    /// How often the principals file is checked for changes (at most once per this).
    pub reload_interval: Duration,
}

/// Why a request was refused. Rendered per port (HTTP 401/403, gRPC UNAUTHENTICATED /
/// PERMISSION_DENIED); no variant carries the presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credentials.
    Missing,
    /// Credentials not of the form `Bearer <token>`.
    Malformed,
    /// A token no principal holds (unknown or revoked).
    Invalid,
    /// A valid principal whose role may not do this.
    Forbidden {
        principal: String,
        role: Role,
        needs: &'static str,
    },
}

impl Denial {
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Denial::Forbidden { .. })
    }

    /// A message that says what to do, for `what` (e.g. `GET /api/v1/entries`).
    pub fn message(&self, what: &str) -> String {
        match self {
            Denial::Missing => format!(
                "{what} needs a bearer token (`Authorization: Bearer <token>`; the CLI takes --token or WIRETRAIL_TOKEN; an admin makes tokens with `wiretrail auth token add`)"
            ),
            Denial::Malformed => {
                "the credentials are not of the form `Bearer <token>`".to_string()
            }
            Denial::Invalid => "the bearer token is not valid (unknown or revoked)".to_string(),
            Denial::Forbidden {
                principal,
                role,
                needs,
            } => format!("{principal} (role {role}) may not {what}: it needs the role {needs}"),
        }
    }

    /// The HTTP error of this denial.
    pub fn into_error(self, what: &str) -> QueryError {
        if self.is_forbidden() {
            QueryError::Forbidden(self.message(what))
        } else {
            QueryError::Unauthenticated(self.message(what))
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(value: &str) -> Result<&str, Denial> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(Denial::Malformed)?;
    let token = rest.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(Denial::Malformed);
    }
    Ok(token)
}

/// Where a refusal happened, for the `*_auth_rejected_total` counters.
#[derive(Debug, Clone, Copy)]
pub enum Port {
    Http,
    Ingest,
    FlightSql,
}

/// Refusals per port and reason, for `/metrics`.
#[derive(Debug, Default)]
pub struct AuthCounters {
    /// `[port][0 = unauthenticated, 1 = forbidden]`.
    rejected: [[AtomicU64; 2]; 3],
}

impl AuthCounters {
    pub fn reject(&self, port: Port, denial: &Denial) {
        self.rejected[port as usize][usize::from(denial.is_forbidden())]
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, port: Port, forbidden: bool) -> u64 {
        self.rejected[port as usize][usize::from(forbidden)].load(Ordering::Relaxed)
    }
}

/// Turns bearer tokens into principals and decides what they may do.
pub struct Authenticator {
    mode: AuthMode,
    store: Option<tokens::TokenStore>,
    /// Tokens made for this process only (`up`'s own capture shipping to its own ingest):
    /// never written anywhere, gone at exit.
    internal: RwLock<Vec<([u8; 32], Arc<Principal>)>>,
    metrics_auth: bool,
    anonymous: Arc<Principal>,
    pub counters: AuthCounters,
}

impl Authenticator {
    /// Every request is the anonymous admin (`--auth none`).
    pub fn disabled() -> Arc<Authenticator> {
        Arc::new(Authenticator {
            mode: AuthMode::None,
            store: None,
            internal: RwLock::new(Vec::new()),
            metrics_auth: false,
            anonymous: Arc::new(Principal::anonymous()),
            counters: AuthCounters::default(),
        })
    }

    /// The authenticator of `config`; fails for a mode this build cannot enforce and for a
    /// missing or invalid principals file (a server that answered 401 to everyone, or
    /// nothing to anyone, would be a silent surprise).
    pub fn new(config: &AuthConfig) -> Result<Arc<Authenticator>, QueryError> {
        let store = match config.mode {
            AuthMode::None => None,
            AuthMode::Tokens => Some(tokens::TokenStore::open(
                &config.tokens_file,
                config.reload_interval,
            )?),
            AuthMode::Jwt | AuthMode::Kubernetes => {
                return Err(QueryError::Auth(format!(
                    "--auth {} is not supported in this build yet; use --auth tokens (see README, Security)",
                    config.mode
                )))
            }
        };
        Ok(Arc::new(Authenticator {
            mode: config.mode,
            store,
            internal: RwLock::new(Vec::new()),
            metrics_auth: config.metrics_auth,
            anonymous: Arc::new(Principal::anonymous()),
            counters: AuthCounters::default(),
        }))
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    pub fn enabled(&self) -> bool {
        self.mode != AuthMode::None
    }

    /// Principals in the file (0 without one).
    pub fn principals(&self) -> usize {
        self.store.as_ref().map_or(0, tokens::TokenStore::len)
    }

    /// A fresh token for a component of this process, valid until it exits.
    pub fn internal_token(&self, name: &str, role: Role) -> Result<String, QueryError> {
        let token = tokens::generate_token()?;
        let p = Arc::new(Principal {
            name: name.to_string(),
            role,
            namespaces: Scope::All,
        });
        self.internal
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((tokens::hash_token(&token), p));
        Ok(token)
    }

    /// The principal a bearer token stands for.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Arc<Principal>, Denial> {
        if !self.enabled() {
            return Ok(self.anonymous.clone());
        }
        let token = token.ok_or(Denial::Missing)?;
        let hash = tokens::hash_token(token);
        let internal = self.internal.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = tokens::find(&internal, &hash) {
            return Ok(p);
        }
        drop(internal);
        self.store
            .as_ref()
            .and_then(|s| s.lookup(&hash))
            .ok_or(Denial::Invalid)
    }

    /// Authenticates `token` and checks its role may use a route needing `access`; counts
    /// refusals for `port`.
    pub fn check(
        &self,
        token: Result<Option<&str>, Denial>,
        access: Access,
        port: Port,
    ) -> Result<Arc<Principal>, Denial> {
        let open = access == Access::Open || (access == Access::Metrics && !self.metrics_auth);
        let res = if open && !self.enabled() {
            Ok(self.anonymous.clone())
        } else if open {
            // Open routes still learn who is asking when a valid token comes along.
            Ok(token
                .ok()
                .flatten()
                .and_then(|t| self.authenticate(Some(t)).ok())
                .unwrap_or_else(|| self.anonymous_reader()))
        } else {
            token.and_then(|t| self.authenticate(t)).and_then(|p| {
                if p.role.may(access) {
                    Ok(p)
                } else {
                    Err(Denial::Forbidden {
                        principal: p.name.clone(),
                        role: p.role,
                        needs: access.needs(),
                    })
                }
            })
        };
        if let Err(d) = &res {
            self.counters.reject(port, d);
        }
        res
    }

    /// Who an unauthenticated caller of an open route is: nobody in particular, with no
    /// namespaces (an open route reads no entries).
    fn anonymous_reader(&self) -> Arc<Principal> {
        Arc::new(Principal {
            name: "anonymous".into(),
            role: Role::Viewer,
            namespaces: Scope::Namespaces(BTreeSet::new()),
        })
    }

    /// Prometheus text of the refusal counters.
    pub fn render_metrics(&self) -> String {
        let c = &self.counters;
        let mut out = String::new();
        for (name, port, help) in [
            (
                "wiretrail_http_auth_rejected_total",
                Port::Http,
                "API requests refused: no or invalid token (401) or a role that may not (403)",
            ),
            (
                "wiretrail_ingest_auth_rejected_total",
                Port::Ingest,
                "ingest DoPut streams refused: no or invalid token, or a role that may not ship",
            ),
            (
                "wiretrail_flight_sql_auth_rejected_total",
                Port::FlightSql,
                "Flight SQL calls refused: no or invalid token, or a role that may not read",
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (reason, forbidden) in [("unauthenticated", false), ("forbidden", true)] {
                out.push_str(&format!(
                    "{name}{{reason=\"{reason}\"}} {}\n",
                    c.rejected(port, forbidden)
                ));
            }
        }
        if let Some(s) = &self.store {
            out.push_str(&format!(
                "# HELP wiretrail_auth_principals principals in the tokens file now in force\n# TYPE wiretrail_auth_principals gauge\nwiretrail_auth_principals {}\n",
                s.len()
            ));
            out.push_str(&format!(
                "# HELP wiretrail_auth_reload_errors_total changes of the tokens file that were refused (the last good file stays in force)\n# TYPE wiretrail_auth_reload_errors_total counter\nwiretrail_auth_reload_errors_total {}\n",
                s.reload_errors()
            ));
        }
        out
    }
}
