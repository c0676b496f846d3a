//! The tower layer in front of every gRPC server: authenticates the bearer
//! token, applies the [policy](crate::policy) table, and hands the
//! handlers a [`Grant`]. It also replaces the request's actor header with
//! the principal's name, so that events record who authenticated and never
//! a name the client chose.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use klaxon_domain::class::Class;
use klaxon_proto::status;
use tonic::Status;
use tower::{Layer, Service};

use crate::policy::{self, Verdict, decide, is_public};
use crate::principal::{Grant, Principal, Teams};
use crate::sources::HelpDesk;
use crate::tokens::TokenStore;

/// The metadata key that names the acting principal to the handlers.
pub const ACTOR_HEADER: &str = "klaxon-actor";

/// What a server authenticates with.
#[derive(Clone, Debug)]
pub struct Auth {
    /// The accepted tokens.
    pub tokens: Arc<TokenStore>,
    /// The service catalog's teams, for scope checks; a configuration
    /// reload replaces them.
    pub teams: SharedTeams,
    /// Requests per second each principal may make; `None`: unlimited.
    pub rate: Option<Arc<RateLimit>>,
    /// The principals that may report as the help desk.
    pub help_desk: Arc<HelpDesk>,
}

impl Auth {
    /// What a handler of `principal`'s call may check against.
    pub fn grant(&self, principal: Principal) -> Grant {
        Grant { principal, teams: self.teams.get(), help_desk: self.help_desk.clone(), people: self.tokens.clone() }
    }
}

/// The service catalog's teams (service -> team) as the server checks
/// scopes with them: replaceable while it runs (a configuration reload
/// moves a service to another team); each request's [`Grant`] takes them
/// once, when it is authenticated.
#[derive(Clone, Debug, Default)]
pub struct SharedTeams(Arc<std::sync::RwLock<Arc<Teams>>>);

impl SharedTeams {
    /// Starts with `teams`.
    pub fn new(teams: Teams) -> SharedTeams {
        SharedTeams(Arc::new(std::sync::RwLock::new(Arc::new(teams))))
    }

    /// The teams now.
    pub fn get(&self) -> Arc<Teams> {
        // A writer only swaps an `Arc`: a poisoned lock still holds a whole value.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces them; requests authenticated from now on check with `teams`.
    pub fn set(&self, teams: Teams) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(teams);
    }
}

/// A request rate per principal: a token bucket per name (governor's keyed
/// GCRA limiter), so one noisy client cannot starve the others. Programs
/// are not limited: Klaxon's own processes (role `service`) are the log
/// server's callers, and an integration (role `integration`) reports an
/// alert storm as it comes (the intake folds repeats of one alert).
pub struct RateLimit {
    limiter: governor::DefaultKeyedRateLimiter<String>,
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("per_second", &self.per_second).field("burst", &self.burst).finish()
    }
}

impl RateLimit {
    /// `per_second` sustained, `burst` at once.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> RateLimit {
        let quota = governor::Quota::per_second(per_second).allow_burst(burst);
        RateLimit { limiter: governor::RateLimiter::keyed(quota), per_second, burst }
    }

    /// Counts one request of `principal`, or says when to retry.
    pub fn check(&self, principal: &Principal) -> Result<(), Status> {
        if principal.role.is_program() {
            return Ok(());
        }
        self.limiter.check_key(&principal.name).map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            status::refuse(
                Class::ResourceExhausted,
                format!(
                    "{principal} is over its request rate ({} per second, bursts of {}); retry in {} ms",
                    self.per_second,
                    self.burst,
                    wait.as_millis().max(1)
                ),
            )
        })
    }
}

/// Authenticates and authorizes one call: `Err` is the refusal to send
/// back; `Ok` leaves the [`Grant`] and the actor header for the handlers,
/// and for a method that carries many commands ([`policy::PER_COMMAND`])
/// a [`Reauth`] that authorizes each of them.
pub fn check<B>(auth: &Auth, request: &mut Request<B>) -> Result<(), Status> {
    let method = request.uri().path().to_owned();
    if is_public(&method) {
        return Ok(());
    }
    let header = request.headers().get(http::header::AUTHORIZATION);
    let principal = auth.tokens.authenticate_header(header).map_err(|e| status::to_status(&e))?;
    let reauth = policy::PER_COMMAND
        .contains(&method.as_str())
        .then(|| bearer(header).map(|token| Reauth { auth: auth.clone(), token_sha256: crate::tokens::hash(token) }))
        .flatten();
    let grant = authorize(auth, &method, principal)?;
    let actor = HeaderValue::from_str(&grant.principal.name).expect("principal names are valid header values");
    request.headers_mut().insert(ACTOR_HEADER, actor);
    request.extensions_mut().insert(grant);
    if let Some(reauth) = reauth {
        request.extensions_mut().insert(reauth);
    }
    Ok(())
}

/// The token of an `authorization: Bearer …` header.
fn bearer(value: Option<&HeaderValue>) -> Option<&str> {
    crate::tokens::bearer(value?)
}

/// The policy row of `method` for `principal`, and its request rate: the
/// [`Grant`] of an authenticated call, or the refusal.
fn authorize(auth: &Auth, method: &str, principal: Principal) -> Result<Grant, Status> {
    match decide(method, principal.role) {
        Verdict::Public | Verdict::Allowed(_) => {}
        Verdict::Denied(None) => {
            return Err(status::refuse(Class::PermissionDenied, format!("{method} is not open to any role")));
        }
        Verdict::Denied(Some(rule)) => {
            let roles: Vec<_> = rule.roles.iter().map(|r| r.name()).collect();
            return Err(status::refuse(
                Class::PermissionDenied,
                format!("{principal} may not call {method}: it is for {}", roles.join(", ")),
            ));
        }
    }
    if let Some(rate) = &auth.rate {
        rate.check(&principal)?;
    }
    Ok(auth.grant(principal))
}

/// What the layer leaves, beside the [`Grant`], on a call that carries many
/// commands (`Incidents/Execute`): the call's token (as its hash) and the
/// server's [`Auth`], so that the handler authorizes each command as the
/// unary call it stands for. The token is checked again for each command,
/// so a token revoked while a stream is open refuses the stream's next
/// command (`UNAUTHENTICATED`); each command counts against the
/// principal's request rate like a unary call.
#[derive(Clone, Debug)]
pub struct Reauth {
    auth: Auth,
    token_sha256: String,
}

impl Reauth {
    /// Authorizes one command as a call of the unary `method` (its gRPC
    /// path, `/klaxon.v1.Incidents/Declare`) by the stream's token now:
    /// the same refusals with the same messages as the layer gives that
    /// call, or the command's [`Grant`].
    pub fn authorize(&self, method: &str) -> Result<Grant, Status> {
        let principal = self.auth.tokens.authenticate_hash(&self.token_sha256).map_err(|e| status::to_status(&e))?;
        authorize(&self.auth, method, principal)
    }
}

/// The layer. A server without it is open: only the in-process tests of
/// single services run one.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn principal(name: &str, role: Role) -> Principal {
        Principal { name: name.into(), role, teams: vec![] }
    }

    #[test]
    fn each_principal_has_its_own_rate_and_programs_none() {
        let one = NonZeroU32::new(1).unwrap();
        let rate = RateLimit::new(one, NonZeroU32::new(2).unwrap());
        let (ana, rita, relay) =
            (principal("ana", Role::Engineer), principal("rita", Role::Reviewer), principal("svc", Role::Service));
        assert!(rate.check(&ana).is_ok() && rate.check(&ana).is_ok(), "a burst of two");
        let refused = rate.check(&ana).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().starts_with("ana (engineer) is over its request rate (1 per second, bursts of 2)"));
        assert!(rate.check(&rita).is_ok(), "another principal is not held back");
        let monitor = principal("alertmanager", Role::Integration);
        for _ in 0..100 {
            assert!(rate.check(&relay).is_ok() && rate.check(&monitor).is_ok());
        }
    }
}
