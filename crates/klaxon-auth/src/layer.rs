//! The tower layer in front of every gRPC server: authenticates the bearer
//! token, applies the [policy](crate::policy) table, and hands the
//! handlers a [`Grant`]. It also replaces the request's actor header with
//! the principal's name, so that events record who authenticated and never
//! a name the client chose.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::policy::{Verdict, decide};
use crate::principal::{Grant, Teams};
use crate::tokens::{Rejected, TokenStore};

/// The metadata key that names the acting principal to the handlers.
pub const ACTOR_HEADER: &str = "klaxon-actor";

/// What a server authenticates with.
#[derive(Clone, Debug)]
pub struct Auth {
    /// The accepted tokens.
    pub tokens: Arc<TokenStore>,
    /// The service catalog's teams, for scope checks.
    pub teams: Arc<Teams>,
}

/// Why a call is refused before it reaches a handler.
pub fn check<B>(auth: &Auth, request: &mut Request<B>) -> Result<(), Status> {
    let method = request.uri().path().to_owned();
    request.extensions_mut().remove::<Grant>();
    if matches!(decide(&method, crate::Role::Service), Verdict::Public) {
        return Ok(());
    }
    let principal =
        auth.tokens.authenticate_header(request.headers().get(http::header::AUTHORIZATION)).map_err(|e| match e {
            Rejected::Missing | Rejected::Unknown => Status::unauthenticated(e.to_string()),
        })?;
    match decide(&method, principal.role) {
        Verdict::Public | Verdict::Allowed(_) => {}
        Verdict::Denied(None) => {
            return Err(Status::permission_denied(format!("{method} is not open to any role")));
        }
        Verdict::Denied(Some(rule)) => {
            let roles: Vec<_> = rule.roles.iter().map(|r| r.name()).collect();
            return Err(Status::permission_denied(format!(
                "{principal} may not call {method}: it is for {}",
                roles.join(", ")
            )));
        }
    }
    let actor = HeaderValue::from_str(&principal.name).expect("principal names are valid header values");
    request.headers_mut().insert(ACTOR_HEADER, actor);
    request.extensions_mut().insert(Grant { principal, teams: auth.teams.clone() });
    Ok(())
}

/// The layer; `None` leaves the server open (only tests of single
/// services in-process do that).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    /// Authenticates with `auth`.
    pub fn new(auth: Auth) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, auth: self.auth.clone() }
    }
}

/// The service [`AuthLayer`] wraps around a server.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Auth,
}

impl<S, B, RB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = futures_util::future::Either<futures_util::future::Ready<Result<Response<RB>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match check(&self.auth, &mut request) {
            Ok(()) => futures_util::future::Either::Right(self.inner.call(request)),
            Err(status) => {
                tracing::info!(method = request.uri().path(), code = ?status.code(), reason = status.message(), "call refused");
                futures_util::future::Either::Left(futures_util::future::ready(Ok(status.into_http())))
            }
        }
    }
}
