//! The live status page in a real browser: headless Chromium over
//! WebDriver against a real `klaxond up`, incidents driven with the real
//! `klaxon` CLI. `KLAXON_SCREENSHOT_DIR=docs` saves the pages' screenshots
//! there (how `docs/status-*.png` were made).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Locator;
use klaxon_tests::browser::{Browser, request};
use klaxon_tests::{Klaxond, auth, binary, klaxon_ok};

const CONFIG: &str = r#"
[[services]]
name = "checkout-api"
team = "payments"
tier = 1
escalation_policy = "payments"
public_name = "Checkout"

[[services]]
name = "ledger"
team = "payments"
tier = 2
escalation_policy = "payments"

[notifier]
feed_interval_ms = 200

[status_page]
title = "Acme incidents"
public_title = "Acme status"

[limits]
feeds_per_principal = 2
"#;

/// Internal text that must never reach the public page.
const INTERNAL: &[&str] = &[
    "INC-",
    "ledger-db-7",
    "replica lag",
    "checkout-api",
    "maria",
    "acme-corp",
    "Rollback of build 4711",
    "paged the DBA",
    "EU card processing",
];

struct Setup {
    _dir: tempfile::TempDir,
    server: Klaxond,
    http: String,
    shots: Option<PathBuf>,
}

fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("klaxon.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = Klaxond::start_with(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let http = server.http_address.clone().expect("klaxond up serves HTTP");
    let shots = std::env::var_os("KLAXON_SCREENSHOT_DIR").map(PathBuf::from);
    Setup { _dir: dir, server, http, shots }
}

impl Setup {
    fn run(&self, actor: &str, args: &[&str]) -> String {
        klaxon_ok(&self.server.url, actor, args)
    }

    /// A declared Sev-1 on `service` with a commander, impact and updates
    /// for executives, customers and responders; returns its id.
    fn incident(&self, title: &str, service: &str, severity: &str) -> String {
        let out = self.run("monitor", &["report", "--title", title, "--service", service, "--customer", "acme-corp"]);
        let id = out.split_whitespace().next().unwrap().to_owned();
        self.run("maria", &["declare", &id, "--severity", severity]);
        self.run("maria", &["assign", &id, "maria"]);
        self.run(
            "maria",
            &[
                "impact",
                &id,
                "--customers-affected",
                "40",
                "--customer",
                "acme-corp",
                "--multi-customer",
                "--summary",
                "EU card processing",
            ],
        );
        self.run("maria", &["update", &id, "Rollback of build 4711 under way.", "--audience", "executive"]);
        self.run("maria", &["update", &id, "ledger-db-7 replica lag; paged the DBA", "--audience", "internal"]);
        id
    }

    async fn screenshot(&self, browser: &Browser, name: &str) {
        if let Some(dir) = &self.shots {
            browser.screenshot(&dir.join(name)).await;
        }
    }
}

const LIVE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executive_signs_in_once_and_sees_updates_live_while_customers_see_only_customer_updates() {
    let setup = start();
    let dir = tempfile::tempdir().unwrap();
    let browser = Browser::start(dir.path(), 1200, 900).await;
    let client = &browser.client;
    let status = format!("http://{}/status", setup.http);

    // Without a session: the sign-in form, and nothing about incidents.
    let id = setup.incident("Checkout fails: ledger-db-7 failover", "checkout-api", "1");
    setup.incident("Ledger exports delayed", "ledger", "2");
    client.goto(&status).await.unwrap();
    client.find(Locator::Id("signin")).await.expect("the sign-in form");
    let text = browser.text().await;
    assert!(!text.contains(&id) && !text.contains("ledger-db-7"), "{text}");
    assert!(!client.current_url().await.unwrap().as_str().contains("klx_"));
    setup.screenshot(&browser, "status-sign-in.png").await;

    // A wrong token: refused, still the form.
    client.find(Locator::Id("token")).await.unwrap().send_keys("klx_not-a-token").await.unwrap();
    client.find(Locator::Css("#signin button")).await.unwrap().click().await.unwrap();
    let text = browser.wait_for_text(LIVE, |t| t.contains("not valid here")).await.unwrap();
    assert!(!text.contains(&id), "{text}");

    // The executive signs in once: the token goes in a form POST, never a URL.
    client.find(Locator::Id("token")).await.unwrap().send_keys(auth::token("ceo")).await.unwrap();
    client.find(Locator::Css("#signin button")).await.unwrap().click().await.unwrap();
    let text = browser.wait_for_text(LIVE, |t| t.contains("Live") && t.contains(&id)).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().as_str(), status, "no token in the URL");
    for expected in
        ["SEV1", "SEV2", "Checkout fails: ledger-db-7 failover", "maria", "40", "Rollback of build 4711 under way."]
    {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    assert!(!text.contains("paged the DBA"), "internal updates are not for executives: {text}");
    let first = text.find("SEV1").unwrap();
    assert!(first < text.find("SEV2").unwrap(), "the most severe first: {text}");
    let cookies = client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "klaxon_status").expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site().map(|s| s.to_string()), Some("Strict".to_owned()));
    assert!(!session.value().contains("klx_"), "the cookie is not the token");

    // A new executive update appears without a reload, as text: its markup
    // is shown, never run.
    client.execute("window.klaxonMarker = 42;", vec![]).await.unwrap();
    setup.run(
        "maria",
        &[
            "update",
            &id,
            "<script>window.pwned = 1</script><b>Traffic</b> moved to eu-west.",
            "--audience",
            "executive",
        ],
    );
    let text = browser.wait_for_text(LIVE, |t| t.contains("moved to eu-west")).await.unwrap();
    assert!(text.contains("<script>window.pwned = 1</script><b>Traffic</b> moved to eu-west."), "{text}");
    let marker = client.execute("return [window.klaxonMarker, window.pwned === undefined];", vec![]).await.unwrap();
    assert_eq!(marker, serde_json::json!([42, true]), "the same document, and no script of the update ran");
    let bold = client.find_all(Locator::Css(&format!("#{id} blockquote b"))).await.unwrap();
    assert!(bold.is_empty(), "no element from the update's text");
    setup.screenshot(&browser, "status-executive.png").await;
    if setup.shots.is_some() {
        // The same page on a phone.
        client.set_window_size(400, 860).await.unwrap();
        setup.screenshot(&browser, "status-executive-phone.png").await;
        client.set_window_size(1200, 900).await.unwrap();
    }

    // The public page: only customer updates of incidents that affect customers.
    setup.run("maria", &["update", &id, "Some card payments fail. We are working on a fix.", "--audience", "customer"]);
    client.goto(&format!("{status}/public")).await.unwrap();
    let text =
        browser.wait_for_text(LIVE, |t| t.contains("Live") && t.contains("Some card payments fail")).await.unwrap();
    assert!(text.contains("Checkout") && text.contains("Major outage") && text.contains("Investigating"), "{text}");
    for internal in INTERNAL {
        assert!(!text.contains(internal), "{internal:?} on the public page: {text}");
    }
    assert!(!text.contains("Ledger exports"), "an incident without a customer update is not public: {text}");
    let source = client.source().await.unwrap();
    for internal in INTERNAL {
        assert!(!source.contains(internal), "{internal:?} in the public page's source");
    }
    // Live there too, escaped; and internal text posted meanwhile stays out.
    setup.run("maria", &["update", &id, "ledger-db-7 is back; paged the DBA again", "--audience", "internal"]);
    setup.run("maria", &["update", &id, "Payments <i>recover</i> now.", "--audience", "customer"]);
    let text = browser.wait_for_text(LIVE, |t| t.contains("recover")).await.unwrap();
    assert!(text.contains("Payments <i>recover</i> now."), "{text}");
    for internal in INTERNAL {
        assert!(!text.contains(internal), "{internal:?} on the public page: {text}");
    }
    let source = client.source().await.unwrap();
    assert!(!source.contains("ledger-db-7") && !source.contains(&id), "nothing internal in the DOM");
    setup.screenshot(&browser, "status-public.png").await;

    // Revoking the token ends the session: the page shows the sign-in form.
    let tokens = setup.server.data_dir.join("tokens.toml");
    let revoked = std::process::Command::new(binary("klaxond"))
        .args(["token", "revoke", "ceo", "--tokens-file", tokens.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    client.goto(&status).await.unwrap();
    client.find(Locator::Id("signin")).await.expect("signed out by the revocation");
    assert!(!browser.text().await.contains(&id));
    browser.close().await;
    assert!(setup.server.stop().success());
}

#[test]
fn cross_site_requests_are_refused_and_streams_are_bounded_per_principal() {
    let setup = start();
    let http = setup.http.as_str();
    let form = format!("token={}", auth::token("ceo"));
    let form_type = ("Content-Type", "application/x-www-form-urlencoded");

    // Another site's form cannot sign anyone in.
    for forged in [("Origin", "http://evil.example"), ("Sec-Fetch-Site", "cross-site")] {
        let refused = request(http, "POST", "/status/sign-in", &[form_type, forged], &form);
        assert_eq!(refused.status, 403, "{forged:?}: {}", refused.body);
        assert!(refused.body.contains("cross-site request refused"), "{}", refused.body);
        assert_eq!(refused.header("set-cookie"), None);
    }
    // A role that may not read feeds is refused; a bad token too.
    let service = request(http, "POST", "/status/sign-in", &[form_type], &format!("token={}", auth::token("monitor")));
    assert_eq!(service.status, 403);
    assert!(service.body.contains("monitor (integration) may not read the status page"), "{}", service.body);
    assert_eq!(request(http, "POST", "/status/sign-in", &[form_type], "token=klx_nope").status, 401);

    // The same sign-in from the page's own origin works.
    let origin = format!("http://{http}");
    let signed = request(http, "POST", "/status/sign-in", &[form_type, ("Origin", &origin)], &form);
    assert_eq!(signed.status, 303);
    let set_cookie = signed.header("set-cookie").expect("a session cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/status", "Max-Age=43200"] {
        assert!(set_cookie.contains(attribute), "{attribute} missing: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let with_cookie = [("Cookie", cookie.as_str())];

    // Pages are locked down: no inline script, no framing.
    let page = request(http, "GET", "/status", &with_cookie, "");
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").unwrap().contains("script-src 'self'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.body.contains("Sign out") && !page.body.contains("<script>"));

    // feeds_per_principal = 2: a third stream of the same principal is refused.
    let one = request(http, "GET", "/status/events", &with_cookie, "");
    let two = request(http, "GET", "/status/events", &with_cookie, "");
    assert_eq!((one.status, two.status), (200, 200));
    let three = request(http, "GET", "/status/events", &with_cookie, "");
    assert_eq!(three.status, 429, "{}", three.body);
    assert!(three.body.contains("ceo has 2 live feeds open"), "{}", three.body);
    // Without a session there is no stream at all, and another site gets none.
    assert_eq!(request(http, "GET", "/status/events", &[], "").status, 401);
    let forged = [("Cookie", cookie.as_str()), ("Sec-Fetch-Site", "cross-site")];
    assert_eq!(request(http, "GET", "/status/events", &forged, "").status, 403);
    // Closing one frees its slot.
    drop(one);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = request(http, "GET", "/status/events", &with_cookie, "");
        if again.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed stream's slot was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Signing out from another site is refused; from the page it ends the session.
    let forged_out =
        request(http, "POST", "/status/sign-out", &[with_cookie[0], ("Origin", "http://evil.example")], "");
    assert_eq!(forged_out.status, 403);
    assert_eq!(request(http, "GET", "/status/session", &with_cookie, "").status, 204);
    let out = request(http, "POST", "/status/sign-out", &[with_cookie[0], ("Origin", &origin)], "");
    assert_eq!(out.status, 303);
    assert_eq!(request(http, "GET", "/status/session", &with_cookie, "").status, 401);
    assert!(setup.server.stop().success());
}

/// Signs `who` in to the status page; returns the `Cookie` header value.
fn sign_in(http: &str, who: &str) -> String {
    let form_type = ("Content-Type", "application/x-www-form-urlencoded");
    let signed = request(http, "POST", "/status/sign-in", &[form_type], &format!("token={}", auth::token(who)));
    assert_eq!(signed.status, 303, "{}", signed.body);
    signed.header("set-cookie").expect("a session cookie").split(';').next().unwrap().to_owned()
}

/// Opens `/status/events` until it is answered `want` (a closed feed frees
/// its place a moment after the client leaves), within 10 s.
fn events_until(http: &str, cookie: &str, want: u16) -> klaxon_tests::browser::Raw {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = request(http, "GET", "/status/events", &[("Cookie", cookie)], "");
        if answer.status == want {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "still {} instead of {want}: {}", answer.status, answer.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_feeds_and_status_page_streams_share_one_budget_per_principal() {
    use klaxon_proto::v1::{FeedFilter, status_feed_client::StatusFeedClient};
    let setup = start();
    let http = setup.http.clone();
    let channel = tonic::transport::Endpoint::from_shared(setup.server.url.clone()).unwrap().connect().await.unwrap();
    let mut feeds = StatusFeedClient::with_interceptor(channel, auth::as_person("ceo"));
    let cookie = sign_in(&http, "ceo");
    let in_thread = |f: Box<dyn FnOnce() -> klaxon_tests::browser::Raw + Send>| tokio::task::spawn_blocking(f);

    // feeds_per_principal = 2: two gRPC feeds leave no room for a page's stream.
    let one = feeds.subscribe(FeedFilter::default()).await.expect("first feed").into_inner();
    let two = feeds.subscribe(FeedFilter::default()).await.expect("second feed").into_inner();
    let (h, c) = (http.clone(), cookie.clone());
    let refused =
        in_thread(Box::new(move || request(&h, "GET", "/status/events", &[("Cookie", &c)], ""))).await.unwrap();
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("ceo has 2 live feeds open"), "{}", refused.body);
    // Another executive has a budget of its own.
    let (h, other) = (http.clone(), sign_in(&http, "executive-payments"));
    let other = in_thread(Box::new(move || events_until(&h, &other, 200))).await.unwrap();

    // Closing a gRPC feed makes room for the stream ...
    drop(one);
    let (h, c) = (http.clone(), cookie.clone());
    let stream = in_thread(Box::new(move || events_until(&h, &c, 200))).await.unwrap();
    // ... and then a gRPC feed is what is refused, and vice versa.
    let refused = feeds.subscribe(FeedFilter::default()).await.expect_err("a third live feed");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("ceo has 2 live feeds open"), "{}", refused.message());
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let _three = loop {
        match feeds.subscribe(FeedFilter::default()).await {
            Ok(feed) => break feed,
            Err(status) => assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "the closed stream's place was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop((two, other));
    assert!(setup.server.stop().success());
}

#[test]
fn a_resolved_incident_stays_on_the_public_page_as_resolved_with_its_last_customer_update() {
    let setup = start();
    let http = setup.http.as_str();
    let id = setup.incident("Checkout fails: ledger-db-7 failover", "checkout-api", "1");
    setup.run("maria", &["update", &id, "Some card payments fail.", "--audience", "customer"]);
    setup.run("maria", &["update", &id, "Card payments work again.", "--audience", "customer"]);
    setup.run("maria", &["resolve", &id, "--summary", "Rollback of build 4711"]);
    // The notifier folds the resolution shortly after it is acknowledged.
    let deadline = std::time::Instant::now() + LIVE;
    let page = loop {
        let page = request(http, "GET", "/status/public", &[], "");
        assert_eq!(page.status, 200);
        if page.body.contains(">Resolved<") {
            break page.body;
        }
        assert!(std::time::Instant::now() < deadline, "never shown as resolved: {}", page.body);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.contains("Checkout") && page.contains("Card payments work again."), "{page}");
    assert!(!page.contains("Investigating") && !page.contains("Some card payments fail."), "{page}");
    for internal in INTERNAL {
        assert!(!page.contains(internal), "{internal:?} on the public page: {page}");
    }
    assert!(setup.server.stop().success());
}
