//! The live status page on the HTTP address: `/status` for executives and
//! `/status/public` for customers, server-rendered, updated without a
//! reload by Server-Sent Events fed by the status feed ([`Handle::feed`]:
//! the snapshot, then coalesced changes).
//!
//! - **Executives** sign in once with their token (a form `POST`; the
//!   token is never in a URL). They get an HttpOnly, SameSite=Strict
//!   session cookie; sessions are bounded in number and lifetime, live in
//!   memory only, and end when the token is revoked (every request and
//!   every open stream checks the token file again). Who may sign in is
//!   [`klaxon_auth::policy::STATUS_PAGE_READERS`], the readers of the
//!   status feed. Each principal may hold `feeds_per_principal` live
//!   feeds (`[limits]`): event streams here and gRPC status feeds count
//!   against one budget ([`crate::budget::FeedBudget`]); one more is
//!   answered `429`.
//! - **Customers** need nothing: the public page shows only incidents
//!   that affect customers and have an update for audience `customer`, and
//!   of them only that update, the service's public name from the catalog,
//!   the impact and the phase in public words. A resolved incident stays
//!   there, as resolved with its last customer update, for
//!   `public_resolved_hours` after its resolution (by the notifier's
//!   clock), then leaves. Public event streams are bounded in all
//!   (`public_streams_max`).
//! - State-changing requests (sign-in, sign-out) from another site are
//!   refused (`Sec-Fetch-Site`, `Origin`); every text shown is escaped
//!   (`render`); pages carry a strict Content-Security-Policy (scripts and
//!   styles from this origin only, no inline script).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use klaxon_auth::TokenStore;
use klaxon_domain::catalog::ServiceCatalog;
use klaxon_domain::notifier::{FeedFilter, FeedItem};
use klaxon_reactor::Live;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::{Handle, Sent};

pub mod render;
mod session;

pub use session::{Full, Session, Sessions};

/// The session cookie's name.
pub const COOKIE: &str = "klaxon_status";
/// Events buffered per open stream.
const EVENTS_BUFFER: usize = 16;
/// Largest sign-in form accepted, in bytes.
const SIGN_IN_BYTES_MAX: usize = 4 * 1024;
/// The content security policy of every page.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The longest `public_resolved_hours` (30 days).
pub const PUBLIC_RESOLVED_HOURS_MAX: u64 = 720;

/// `[status_page]`: the pages' titles and limits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusPageOptions {
    /// Whether `/status` and `/status/public` are served.
    pub enabled: bool,
    /// The executives' page title.
    pub title: String,
    /// The customers' page title, e.g. "Acme status".
    pub public_title: String,
    /// How long a sign-in lasts, in minutes (1 to 10080, a week).
    pub session_minutes: u64,
    /// Sessions held at once, in all (1 to 100000); a sign-in beyond is
    /// refused until one ends.
    pub sessions_max: usize,
    /// Sessions one principal may hold (1 to 100); a new one ends its
    /// oldest.
    pub sessions_per_principal_max: usize,
    /// Public event streams open at once, in all (1 to 100000); one more
    /// is answered 503 and the page stays as loaded.
    pub public_streams_max: usize,
    /// How long the public page keeps showing a resolved incident (as
    /// resolved, with its last customer update), in hours from its
    /// resolution (0 to 720; 0: it leaves at once). Default 24.
    pub public_resolved_hours: u64,
    /// Whether the cookie is marked `Secure` (set it when the pages are
    /// served over HTTPS, by a proxy in front of Klaxon).
    pub secure_cookie: bool,
}

impl Default for StatusPageOptions {
    fn default() -> Self {
        StatusPageOptions {
            enabled: true,
            title: "Klaxon status".to_owned(),
            public_title: "Service status".to_owned(),
            session_minutes: 12 * 60,
            sessions_max: 1_000,
            sessions_per_principal_max: 8,
            public_streams_max: 1_000,
            public_resolved_hours: 24,
            secure_cookie: false,
        }
    }
}

impl StatusPageOptions {
    /// Checks the limits; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        let within = |key: &str, value: u64, max: u64| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("status_page.{key}: {value} must be 1 to {max}"))
            }
        };
        within("session_minutes", self.session_minutes, 7 * 24 * 60)?;
        within("sessions_max", self.sessions_max as u64, 100_000)?;
        within("sessions_per_principal_max", self.sessions_per_principal_max as u64, 100)?;
        within("public_streams_max", self.public_streams_max as u64, 100_000)?;
        if self.public_resolved_hours > PUBLIC_RESOLVED_HOURS_MAX {
            return Err(format!(
                "status_page.public_resolved_hours: {} must be 0 to {PUBLIC_RESOLVED_HOURS_MAX}",
                self.public_resolved_hours
            ));
        }
        for (key, title) in [("title", &self.title), ("public_title", &self.public_title)] {
            if title.trim().is_empty() || title.chars().count() > 100 || title.chars().any(char::is_control) {
                return Err(format!("status_page.{key}: must be 1 to 100 characters without control characters"));
            }
        }
        Ok(())
    }
}

/// The status pages of one notifier; [`StatusPage::router`] serves them.
pub struct StatusPage {
    handle: Handle,
    tokens: Arc<TokenStore>,
    catalog: Live<ServiceCatalog>,
    options: StatusPageOptions,
    session_check: Duration,
    shutdown: CancellationToken,
}

impl StatusPage {
    /// The pages of `handle`'s feed, signing in with `tokens`, naming
    /// services as `catalog` says when each page or update is rendered (a
    /// [`Live`] a configuration reload replaces); open streams end on
    /// `shutdown`.
    pub fn new(
        handle: Handle,
        tokens: Arc<TokenStore>,
        catalog: impl Into<Live<ServiceCatalog>>,
        options: StatusPageOptions,
        shutdown: CancellationToken,
    ) -> StatusPage {
        let catalog = catalog.into();
        StatusPage { handle, tokens, catalog, options, session_check: Duration::from_secs(15), shutdown }
    }

    /// Live feeds one principal may hold open, event streams here and
    /// gRPC status feeds together (`[limits] feeds_per_principal`; it sets
    /// the handle's [`crate::budget::FeedBudget`]).
    pub fn with_feeds_per_principal(self, max: usize) -> StatusPage {
        self.handle.feed_budget().set_max(max);
        self
    }

    /// How often an open executive stream checks that its session and token
    /// still stand (15 s by default); it also checks before every event.
    pub fn with_session_check(mut self, every: Duration) -> StatusPage {
        self.session_check = every.max(Duration::from_millis(10));
        self
    }

    /// The routes below `/status`; none when the page is disabled.
    pub fn router(self) -> Router {
        if !self.options.enabled {
            return Router::new();
        }
        let lifetime = Duration::from_secs(self.options.session_minutes * 60);
        let shared = Arc::new(Shared {
            sessions: Mutex::new(Sessions::new(
                self.options.sessions_max,
                self.options.sessions_per_principal_max,
                lifetime,
            )),
            public_streams: Arc::new(AtomicUsize::new(0)),
            page: self,
        });
        Router::new()
            .route("/status", get(executive_page))
            .route("/status/sign-in", post(sign_in).layer(DefaultBodyLimit::max(SIGN_IN_BYTES_MAX)))
            .route("/status/sign-out", post(sign_out))
            .route("/status/session", get(session_state))
            .route("/status/events", get(executive_events))
            .route("/status/public", get(public_page))
            .route("/status/public/events", get(public_events))
            .route("/status/assets/status.css", get(css))
            .route("/status/assets/status.js", get(js))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(shared)
    }
}

struct Shared {
    page: StatusPage,
    sessions: Mutex<Sessions>,
    public_streams: Arc<AtomicUsize>,
}

type AppState = State<Arc<Shared>>;

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: under it browsers send `Origin: null` with forms.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("status.css"))
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("status.js"))
}

/// The session cookie's value, if the request carries one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Why a state-changing request is refused as cross-site, if it is: its
/// `Sec-Fetch-Site` (set by the browser, which pages cannot forge) is not
/// same-origin; or, from a browser too old to send it, its `Origin` is not
/// this host. Requests with neither header (not from a browser) pass.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Some(format!("cross-site request refused (Sec-Fetch-Site: {site})"));
        }
        return None;
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        if host.is_empty() || (origin != format!("http://{host}") && origin != format!("https://{host}")) {
            return Some("cross-site request refused (Origin is not this site)".to_owned());
        }
    }
    None
}

impl Shared {
    /// The principal signed in with the request's cookie, if the session
    /// is live and its token still valid for the page; a session whose
    /// token was revoked is ended.
    fn signed_in(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let cookie = cookie(headers)?;
        self.check(&cookie).map(|session| (cookie, session))
    }

    fn check(&self, cookie: &str) -> Option<Session> {
        let session = self.sessions.lock().expect("sessions").get(cookie, Instant::now())?;
        match self.page.tokens.authenticate_hash(&session.token_hash) {
            Ok(p) if p.name == session.principal && klaxon_auth::policy::STATUS_PAGE_READERS.contains(&p.role) => {
                Some(session)
            }
            _ => {
                self.sessions.lock().expect("sessions").remove(cookie);
                None
            }
        }
    }

    fn snapshot(&self) -> Vec<FeedItem> {
        match self.page.handle.feed(FeedFilter::default(), self.page.shutdown.clone()) {
            // The live half ends at once: its receiver is dropped here.
            Ok((snapshot, _live)) => snapshot,
            Err(e) => {
                tracing::error!(error = %e, "the status feed refused the default filter");
                Vec::new()
            }
        }
    }

    /// What the public page starts from: the open incidents and those
    /// resolved within `public_resolved_hours` of `now` (the notifier's
    /// clock); the renderer keeps the public ones.
    fn public_snapshot(&self, mut open: Vec<FeedItem>, now: chrono::DateTime<Utc>) -> Vec<FeedItem> {
        let hours = i64::try_from(self.page.options.public_resolved_hours).unwrap_or(i64::MAX);
        if hours > 0 {
            open.extend(self.page.handle.resolved_since(now - chrono::TimeDelta::hours(hours)));
        }
        open
    }

    fn cookie_header(&self, value: &str, max_age_seconds: u64) -> String {
        let secure = if self.page.options.secure_cookie { "; Secure" } else { "" };
        format!("{COOKIE}={value}; Path=/status; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}")
    }
}

async fn executive_page(State(shared): AppState, headers: HeaderMap) -> Response {
    let title = &shared.page.options.title;
    match shared.signed_in(&headers) {
        Some((_, session)) => {
            let items = shared.snapshot();
            Html(render::executive_page(title, &session.principal, &items, Utc::now())).into_response()
        }
        None => Html(render::sign_in_page(title, None)).into_response(),
    }
}

async fn public_page(State(shared): AppState) -> Response {
    let now = shared.page.handle.now();
    let items = shared.public_snapshot(shared.snapshot(), now);
    let options = &shared.page.options;
    Html(render::public_page(&options.public_title, &items, &shared.page.catalog.get(), now)).into_response()
}

/// The sign-in form's one field.
#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(
    State(shared): AppState,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    let title = &shared.page.options.title;
    let refuse = |status: StatusCode, problem: &str| (status, Html(render::sign_in_page(title, Some(problem))));
    if let Some(problem) = cross_site(&headers) {
        return refuse(StatusCode::FORBIDDEN, &problem).into_response();
    }
    let Ok(Form(SignIn { token })) = form else {
        return refuse(StatusCode::BAD_REQUEST, "Send the form with a token.").into_response();
    };
    let token = token.trim();
    let principal = match shared.page.tokens.authenticate(token) {
        Ok(principal) => principal,
        Err(_) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "That token is not valid here (revoked, mistyped or from another server).",
            )
            .into_response();
        }
    };
    if !klaxon_auth::policy::STATUS_PAGE_READERS.contains(&principal.role) {
        let problem = format!("{principal} may not read the status page.");
        return refuse(StatusCode::FORBIDDEN, &problem).into_response();
    }
    let value: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
    let created = shared.sessions.lock().expect("sessions").create(
        &value,
        &principal.name,
        &klaxon_auth::tokens::hash(token),
        Instant::now(),
    );
    if let Err(full) = created {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, &full.to_string()).into_response();
    }
    tracing::info!(principal = %principal.name, "signed in to the status page");
    let max_age = shared.page.options.session_minutes * 60;
    let set_cookie = shared.cookie_header(&value, max_age);
    ([(header::SET_COOKIE, set_cookie)], Redirect::to("/status")).into_response()
}

async fn sign_out(State(shared): AppState, headers: HeaderMap) -> Response {
    if let Some(problem) = cross_site(&headers) {
        return (StatusCode::FORBIDDEN, problem).into_response();
    }
    if let Some(value) = cookie(&headers) {
        shared.sessions.lock().expect("sessions").remove(&value);
    }
    ([(header::SET_COOKIE, shared.cookie_header("", 0))], Redirect::to("/status")).into_response()
}

/// `204` while signed in, else `401`: how the page's script tells an ended
/// session from a refused stream.
async fn session_state(State(shared): AppState, headers: HeaderMap) -> StatusCode {
    if shared.signed_in(&headers).is_some() { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED }
}

/// One counted stream; dropping it uncounts it.
struct Counted {
    release: Box<dyn FnOnce() + Send>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let release = std::mem::replace(&mut self.release, Box::new(|| {}));
        release();
    }
}

fn stream_refused(headers: &HeaderMap) -> Option<Response> {
    // An event stream changes nothing, but it is refused to other sites too.
    cross_site(headers).map(|problem| (StatusCode::FORBIDDEN, problem).into_response())
}

async fn executive_events(State(shared): AppState, headers: HeaderMap) -> Response {
    if let Some(refused) = stream_refused(&headers) {
        return refused;
    }
    let Some((cookie, session)) = shared.signed_in(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in at /status first").into_response();
    };
    let permit = match shared.page.handle.feed_budget().take(&session.principal) {
        Ok(permit) => permit,
        Err(exhausted) => return (StatusCode::TOO_MANY_REQUESTS, exhausted.to_string()).into_response(),
    };
    let counted = Counted { release: Box::new(move || drop(permit)) };
    let (snapshot, live) = match shared.page.handle.feed(FeedFilter::default(), shared.page.shutdown.clone()) {
        Ok(feed) => feed,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let (tx, rx) = mpsc::channel(EVENTS_BUFFER);
    tokio::spawn(executive_stream(shared, cookie, counted, snapshot, live, tx));
    sse(rx)
}

fn sse(rx: mpsc::Receiver<Result<Event, Infallible>>) -> Response {
    let mut response = Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response();
    // Proxies must not hold events back.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn event(name: &str, data: &serde_json::Value) -> Result<Event, Infallible> {
    // JSON on one line: no carriage return or newline reaches the stream.
    Ok(Event::default().event(name).data(data.to_string()))
}

async fn executive_stream(
    shared: Arc<Shared>,
    cookie: String,
    _counted: Counted,
    snapshot: Vec<FeedItem>,
    mut live: mpsc::Receiver<Sent>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    let snapshot_html = render::executive_list(&snapshot, Utc::now());
    if tx.send(event("snapshot", &serde_json::json!({ "html": snapshot_html }))).await.is_err() {
        return;
    }
    let mut check = tokio::time::interval(shared.page.session_check);
    check.tick().await;
    let shutdown = shared.page.shutdown.clone();
    loop {
        let item = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = check.tick() => None,
            sent = live.recv() => match sent {
                Some(Sent { item, .. }) => Some(item),
                None => return,
            },
        };
        if shared.check(&cookie).is_none() {
            let _ = tx.send(event("signed-out", &serde_json::json!({}))).await;
            return;
        }
        let Some(item) = item else { continue };
        let html = if render::leaves_executive_page(&item) {
            String::new()
        } else {
            render::executive_incident(&item, Utc::now())
        };
        let data = serde_json::json!({ "id": item.incident.to_string(), "html": html });
        if tx.send(event("incident", &data)).await.is_err() {
            return;
        }
    }
}

async fn public_events(State(shared): AppState, headers: HeaderMap) -> Response {
    if let Some(refused) = stream_refused(&headers) {
        return refused;
    }
    let open = shared.public_streams.clone();
    let max = shared.page.options.public_streams_max;
    if open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many people are watching; reload later").into_response();
    }
    let counted = Counted {
        release: Box::new(move || {
            open.fetch_sub(1, Ordering::SeqCst);
        }),
    };
    let (snapshot, live) = match shared.page.handle.feed(FeedFilter::default(), shared.page.shutdown.clone()) {
        Ok(feed) => feed,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let snapshot = shared.public_snapshot(snapshot, shared.page.handle.now());
    let (tx, rx) = mpsc::channel(EVENTS_BUFFER);
    tokio::spawn(public_stream(shared, counted, snapshot, live, tx));
    sse(rx)
}

async fn public_stream(
    shared: Arc<Shared>,
    _counted: Counted,
    snapshot: Vec<FeedItem>,
    mut live: mpsc::Receiver<Sent>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    let catalog = shared.page.catalog.clone();
    let html = render::public_list(&snapshot, &catalog.get(), shared.page.handle.now());
    // Incidents this page shows: only their leaving is announced.
    let mut shown: HashSet<String> = snapshot.iter().filter(|i| render::is_public(i)).map(render::public_id).collect();
    if tx.send(event("snapshot", &serde_json::json!({ "html": html }))).await.is_err() {
        return;
    }
    let shutdown = shared.page.shutdown.clone();
    loop {
        let item = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            sent = live.recv() => match sent {
                Some(Sent { item, .. }) => item,
                None => return,
            },
        };
        let id = render::public_id(&item);
        let html = if render::is_public(&item) {
            shown.insert(id.clone());
            render::public_incident(&item, &catalog.get(), shared.page.handle.now())
        } else if shown.remove(&id) {
            String::new()
        } else {
            continue;
        };
        if tx.send(event("incident", &serde_json::json!({ "id": id, "html": html }))).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_by_key() {
        assert_eq!(StatusPageOptions::default().check(), Ok(()));
        let check = |edit: fn(&mut StatusPageOptions)| {
            let mut options = StatusPageOptions::default();
            edit(&mut options);
            options.check().unwrap_err()
        };
        assert_eq!(check(|o| o.session_minutes = 0), "status_page.session_minutes: 0 must be 1 to 10080");
        assert_eq!(check(|o| o.sessions_max = 100_001), "status_page.sessions_max: 100001 must be 1 to 100000");
        assert_eq!(
            check(|o| o.public_title = " ".into()),
            "status_page.public_title: must be 1 to 100 characters without control characters"
        );
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        assert_eq!(cross_site(&headers(&[])), None, "not a browser");
        assert_eq!(cross_site(&headers(&[("sec-fetch-site", "same-origin"), ("origin", "null")])), None);
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])).is_some());
        assert_eq!(cross_site(&headers(&[("host", "127.0.0.1:7680"), ("origin", "http://127.0.0.1:7680")])), None);
        assert!(cross_site(&headers(&[("host", "127.0.0.1:7680"), ("origin", "http://evil.example")])).is_some());
        assert!(cross_site(&headers(&[("origin", "http://127.0.0.1:7680")])).is_some(), "no host to match");
    }
}
