//! The people of the end-to-end tests and their API tokens.
//!
//! Every test person has one role (and maybe teams), as a real deployment
//! would. Tokens are generated once per test process, at random; servers
//! the helpers start get a token file holding their hashes, and the CLI
//! helpers present the acting person's token. Nothing secret is in the
//! repository.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use klaxon_auth::Role;
use klaxon_auth::tokens::{TokenEntry, TokenFile};

/// The principal Klaxon's own processes present to the log server.
pub const SERVICE: &str = "klaxon-services";

/// Everyone the tests act as: name, role, teams (empty: every team).
pub const PEOPLE: &[(&str, Role, &[&str])] = &[
    // Incident managers.
    ("maria", Role::Manager, &[]),
    ("omar", Role::Manager, &[]),
    ("li", Role::Manager, &[]),
    ("victor", Role::Manager, &[]),
    // Engineers: on call (ana, carl) and others.
    ("ana", Role::Engineer, &[]),
    ("carl", Role::Engineer, &[]),
    ("mallory", Role::Engineer, &[]),
    // Reviewers and executives.
    ("rita", Role::Reviewer, &[]),
    ("ceo", Role::Executive, &[]),
    // A help desk's tool, which servers may list in `[auth]
    // help_desk_reporters`.
    ("desk", Role::Engineer, &[]),
    // Monitoring integrations, which report as fast as they need: role
    // integration has no request rate (and no log access).
    ("monitor", Role::Integration, &[]),
    ("alertmanager", Role::Integration, &[]),
    ("pagerduty", Role::Integration, &[]),
    (SERVICE, Role::Service, &[]),
    // One principal per role scoped to team payments, and one scoped to
    // team search, for the authorization matrix.
    ("manager-payments", Role::Manager, &["payments"]),
    ("engineer-payments", Role::Engineer, &["payments"]),
    ("executive-payments", Role::Executive, &["payments"]),
    ("reviewer-payments", Role::Reviewer, &["payments"]),
    ("service-payments", Role::Service, &["payments"]),
    ("integration-payments", Role::Integration, &["payments"]),
    ("manager-search", Role::Manager, &["search"]),
    ("engineer-search", Role::Engineer, &["search"]),
    ("executive-search", Role::Executive, &["search"]),
    ("reviewer-search", Role::Reviewer, &["search"]),
    ("service-search", Role::Service, &["search"]),
    ("integration-search", Role::Integration, &["search"]),
];

fn tokens() -> &'static HashMap<&'static str, String> {
    static TOKENS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    TOKENS.get_or_init(|| PEOPLE.iter().map(|(name, _, _)| (*name, klaxon_auth::tokens::generate())).collect())
}

/// The token of a test person.
pub fn token(name: &str) -> &'static str {
    tokens()
        .get(name)
        .unwrap_or_else(|| panic!("{name:?} is not a test person; add them to klaxon_tests::auth::PEOPLE"))
}

/// Writes a token file with every test person (hashes only).
pub fn write_tokens(path: &Path) {
    let entries = PEOPLE
        .iter()
        .map(|(name, role, teams)| TokenEntry {
            name: (*name).to_owned(),
            role: *role,
            teams: teams.iter().map(|t| (*t).to_owned()).collect(),
            sha256: klaxon_auth::tokens::hash(token(name)),
            created_at: String::new(),
        })
        .collect();
    TokenFile { entries }.write(path).expect("write the test token file");
}

/// Writes the services' own token to `path`.
pub fn write_service_token(path: &Path) {
    std::fs::write(path, token(SERVICE)).expect("write the service token");
}

/// The `authorization` header value of a test person.
pub fn bearer(name: &str) -> tonic::metadata::AsciiMetadataValue {
    format!("Bearer {}", token(name)).parse().expect("tokens are header text")
}

/// A tonic interceptor presenting a test person's token.
pub fn as_person(name: &str) -> impl tonic::service::Interceptor + Clone + use<> {
    let value = bearer(name);
    move |mut request: tonic::Request<()>| {
        request.metadata_mut().insert("authorization", value.clone());
        Ok(request)
    }
}

/// Writes the token file and the services' own token into `dir`, and
/// returns the environment that makes every process of a distributed
/// topology use them.
pub fn cluster_env(dir: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir).expect("create the folder for the tokens");
    let tokens = dir.join("tokens.toml");
    let service_token = dir.join("service.token");
    write_tokens(&tokens);
    write_service_token(&service_token);
    vec![
        ("KLAXON_TOKENS_FILE".into(), tokens.display().to_string()),
        ("KLAXON_SERVICE_TOKEN_FILE".into(), service_token.display().to_string()),
    ]
}
