//! The gRPC side: a tonic interceptor in front of the ingest Flight service (`DoPut`: agents
//! and admins) and the Flight SQL service (viewers and admins). Credentials are the metadata
//! entry `authorization: Bearer <token>`, as gRPC clients (ADBC, JDBC, grpcurl) send them.

use std::sync::Arc;

use tonic::{Request, Status};

use super::{bearer, Access, Authenticator, Denial, Port};

/// Checks every call of one gRPC service before it reaches the handler.
#[derive(Clone)]
pub struct GrpcGuard {
    auth: Arc<Authenticator>,
    access: Access,
    port: Port,
    /// What a refused caller tried, for the message (`ship entries to ingest`).
    what: &'static str,
}

impl GrpcGuard {
    /// The guard of the ingest Flight endpoint: agents and admins may ship.
    pub fn ingest(auth: Arc<Authenticator>) -> GrpcGuard {
        GrpcGuard {
            auth,
            access: Access::Ship,
            port: Port::Ingest,
            what: "ship entries to ingest",
        }
    }

    /// The guard of Flight SQL: viewers and admins may query.
    pub fn flight_sql(auth: Arc<Authenticator>) -> GrpcGuard {
        GrpcGuard {
            auth,
            access: Access::Read,
            port: Port::FlightSql,
            what: "run Flight SQL queries",
        }
    }
}

/// The status of a refusal; the message never holds the presented token.
pub fn denial_status(d: &Denial, what: &str) -> Status {
    match d {
        Denial::Forbidden { .. } => Status::permission_denied(d.message(what)),
        Denial::Missing => Status::unauthenticated(format!(
            "to {what} this server needs a bearer token (metadata `authorization: Bearer <token>`; `wiretrail import`/`agent` take --token or WIRETRAIL_TOKEN)"
        )),
        _ => Status::unauthenticated(d.message(what)),
    }
}

impl tonic::service::Interceptor for GrpcGuard {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let token = match req.metadata().get("authorization") {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map_err(|_| Denial::Malformed)
                .and_then(bearer)
                .map(Some),
        };
        match self.auth.check(token, self.access, self.port) {
            Ok(p) => {
                req.extensions_mut().insert(p);
                Ok(req)
            }
            Err(d) => {
                tracing::debug!(port = ?self.port, reason = ?d, "gRPC call refused");
                Err(denial_status(&d, self.what))
            }
        }
    }
}
