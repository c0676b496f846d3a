//! Bearer tokens, kept only as SHA-256 hashes in a TOML file.
//!
//! A token is `klx_` and 64 hex digits: 256 random bits from the operating
//! system. Because tokens are random rather than chosen, one unsalted
//! SHA-256 is enough to make a leaked file useless; there is nothing to
//! guess. `klaxond token create` appends an entry and prints the token
//! once; `klaxond token revoke` removes it. Both replace the file
//! atomically (a temporary file renamed over it), and a running server
//! notices the change on the next call: revocation needs no restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::principal::{Principal, Role};

/// What every token starts with, so that one pasted in the wrong place is
/// recognisable (and found by secret scanners).
pub const TOKEN_PREFIX: &str = "klx_";
/// Longest principal name, as long as an actor id may be.
pub const NAME_CHARS_MAX: usize = 64;

/// A token file, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// One entry per principal.
    #[serde(default, rename = "tokens")]
    pub entries: Vec<TokenEntry>,
}

/// One principal and the hash of its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The principal's name; events record it as their actor.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The teams it is limited to; absent or empty for every team.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    /// When it was created (RFC 3339), for people reading the file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
}

/// What can go wrong with a token file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid token file.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key.
        reason: String,
    },
    /// A name or team that cannot be used.
    #[error("{0}")]
    BadInput(String),
    /// `create` for a name that has a token already.
    #[error("{name} already has a token; revoke it first (klaxond token revoke {name})")]
    Exists {
        /// The name.
        name: String,
    },
    /// `revoke` for a name without a token.
    #[error("{name} has no token in {}", path.display())]
    NotFound {
        /// The name.
        name: String,
        /// The file.
        path: PathBuf,
    },
}

/// A new random token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the operating system's random source works");
    format!("{TOKEN_PREFIX}{}", hex(&bytes))
}

/// The hash stored for `token`.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` may name a principal: what an actor id accepts (letters,
/// digits, `.`, `_`, `-`, `@`, `:`, at most [`NAME_CHARS_MAX`]).
fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.chars().count() <= NAME_CHARS_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "{what} {name:?} must be 1 to {NAME_CHARS_MAX} letters, digits, '.', '_', '-', '@' or ':'"
        )))
    }
}

impl TokenFile {
    /// Reads `path`; a missing file is an empty one.
    pub fn read(path: &Path) -> Result<TokenFile, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenFile::default()),
            Err(source) => return Err(Error::Io { path: path.to_owned(), source }),
        };
        let file: TokenFile =
            toml::from_str(&text).map_err(|e| Error::Invalid { path: path.to_owned(), reason: e.to_string() })?;
        file.check().map_err(|reason| Error::Invalid { path: path.to_owned(), reason })?;
        Ok(file)
    }

    fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            check_name("name", &e.name).map_err(|err| format!("tokens[{i}].name: {err}"))?;
            for team in &e.teams {
                check_name("team", team).map_err(|err| format!("tokens[{i}].teams: {err}"))?;
            }
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(format!("tokens[{i}].sha256: must be 64 lowercase hex digits"));
            }
            if !names.insert(&e.name) {
                return Err(format!("tokens[{i}].name: {:?} appears twice", e.name));
            }
        }
        Ok(())
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io { path: path.to_owned(), source };
        let mut text = String::from(
            "# Klaxon API tokens: SHA-256 hashes only, never the tokens.\n\
             # Managed by `klaxond token create|revoke|list`; a running klaxond rereads it on change.\n\n",
        );
        text.push_str(&toml::to_string(self).expect("a token file serializes"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("toml.tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds a principal with a new token and returns the token, which is
    /// stored nowhere.
    pub fn create(&mut self, name: &str, role: Role, teams: &[String]) -> Result<String, Error> {
        check_name("name", name)?;
        for team in teams {
            check_name("team", team)?;
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(Error::Exists { name: name.to_owned() });
        }
        let token = generate();
        self.entries.push(TokenEntry {
            name: name.to_owned(),
            role,
            teams: teams.to_vec(),
            sha256: hash(&token),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        Ok(token)
    }

    /// Removes `name`'s token; whether there was one.
    pub fn revoke(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        self.entries.len() != before
    }
}

/// `klaxond token create`: adds `name` to the file at `path` and returns
/// its token.
pub fn create(path: &Path, name: &str, role: Role, teams: &[String]) -> Result<String, Error> {
    let mut file = TokenFile::read(path)?;
    let token = file.create(name, role, teams)?;
    file.write(path)?;
    Ok(token)
}

/// `klaxond token revoke`: removes `name` from the file at `path`.
pub fn revoke(path: &Path, name: &str) -> Result<(), Error> {
    let mut file = TokenFile::read(path)?;
    if !file.revoke(name) {
        return Err(Error::NotFound { name: name.to_owned(), path: path.to_owned() });
    }
    file.write(path)
}

impl klaxon_domain::class::Classify for Error {
    fn class(&self) -> klaxon_domain::class::Class {
        use klaxon_domain::class::Class;
        match self {
            Error::Io { .. } => Class::Internal,
            Error::Invalid { .. } | Error::BadInput(_) => Class::InvalidArgument,
            Error::Exists { .. } => Class::AlreadyExists,
            Error::NotFound { .. } => Class::NotFound,
        }
    }
}

impl klaxon_domain::class::Classify for Rejected {
    fn class(&self) -> klaxon_domain::class::Class {
        klaxon_domain::class::Class::Unauthenticated
    }
}

/// Why a presented token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No `authorization: Bearer …`.
    #[error(
        "a bearer token is required (authorization: Bearer klx_…); create one with `klaxond token create`: the CLI reads it from KLAXON_TOKEN, Alertmanager from http_config.authorization"
    )]
    Missing,
    /// A token that no entry has (mistyped, revoked or from another server).
    #[error("the bearer token is not valid here (revoked, mistyped or from another server)")]
    Unknown,
}

/// The tokens a server accepts: the token file, reread whenever it changes
/// on disk (its modification time, size or inode), so that `klaxond token`
/// takes effect on the next call.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    stamp: Option<Stamp>,
    by_hash: HashMap<String, Principal>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

impl TokenStore {
    /// The store for the file at `path`. It must be readable and valid now
    /// (a missing file is empty: every call is refused until a token is
    /// created); later edits that break it are logged and ignored, keeping
    /// the last good tokens.
    pub fn open(path: &Path) -> Result<TokenStore, Error> {
        let store = TokenStore { path: path.to_owned(), state: Mutex::new(Loaded::default()) };
        let file = TokenFile::read(path)?;
        store.install(&file, stamp(path));
        Ok(store)
    }

    /// How many principals it knows now.
    pub fn len(&self) -> usize {
        self.refresh();
        self.state.lock().expect("token store").by_hash.len()
    }

    /// Whether it knows no principal.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn install(&self, file: &TokenFile, stamp: Option<Stamp>) {
        let by_hash = file
            .entries
            .iter()
            .map(|e| (e.sha256.clone(), Principal { name: e.name.clone(), role: e.role, teams: e.teams.clone() }))
            .collect();
        *self.state.lock().expect("token store") = Loaded { stamp, by_hash };
    }

    fn refresh(&self) {
        let now = stamp(&self.path);
        if self.state.lock().expect("token store").stamp == now {
            return;
        }
        match TokenFile::read(&self.path) {
            Ok(file) => {
                tracing::info!(path = %self.path.display(), principals = file.entries.len(), "token file reloaded");
                self.install(&file, now);
            }
            Err(e) => {
                tracing::error!(error = %e, "the token file changed but cannot be used; keeping the tokens read before");
                self.state.lock().expect("token store").stamp = now;
            }
        }
    }

    /// The principal named `name` now (from any of its tokens), for a
    /// caller identified otherwise than by a token: the e-mail intake maps
    /// a sender's address to a principal by name, and a revoked principal
    /// stops being one.
    pub fn principal_named(&self, name: &str) -> Option<Principal> {
        self.refresh();
        self.state.lock().expect("token store").by_hash.values().find(|p| p.name == name).cloned()
    }

    /// Who `token` belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Principal, Rejected> {
        self.refresh();
        self.state.lock().expect("token store").by_hash.get(&hash(token)).cloned().ok_or(Rejected::Unknown)
    }

    /// Who the token whose SHA-256 hash (as [`hash`] writes it) is
    /// `sha256` belongs to now: how something made from a token (a status
    /// page session) notices its revocation without keeping the token.
    pub fn authenticate_hash(&self, sha256: &str) -> Result<Principal, Rejected> {
        self.refresh();
        self.state.lock().expect("token store").by_hash.get(sha256).cloned().ok_or(Rejected::Unknown)
    }

    /// Who the `authorization: Bearer …` header belongs to.
    pub fn authenticate_header(&self, value: Option<&http::HeaderValue>) -> Result<Principal, Rejected> {
        let value = value.ok_or(Rejected::Missing)?;
        self.authenticate(bearer(value).ok_or(Rejected::Unknown)?)
    }
}

/// The token of an `authorization: Bearer …` header value, if it is one.
pub fn bearer(value: &http::HeaderValue) -> Option<&str> {
    value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_tokens_authenticate_and_only_their_hash_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = create(&path, "alice", Role::Manager, &["payments".into()]).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64, "{token}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token[TOKEN_PREFIX.len()..]), "the token itself is never written");
        assert!(text.contains(&hash(&token)));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let store = TokenStore::open(&path).unwrap();
        let alice = store.authenticate(&token).unwrap();
        assert_eq!(alice, Principal { name: "alice".into(), role: Role::Manager, teams: vec!["payments".into()] });
        assert_eq!(store.authenticate(&generate()), Err(Rejected::Unknown));
    }

    #[test]
    fn revocation_and_new_tokens_take_effect_without_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let store = TokenStore::open(&path).unwrap();
        assert!(store.is_empty(), "a missing file is empty");
        let alice = create(&path, "alice", Role::Engineer, &[]).unwrap();
        assert_eq!(store.authenticate(&alice).unwrap().name, "alice");
        let bob = create(&path, "bob", Role::Executive, &[]).unwrap();
        assert_eq!(store.authenticate_hash(&hash(&alice)).unwrap().name, "alice");
        revoke(&path, "alice").unwrap();
        assert_eq!(store.authenticate(&alice), Err(Rejected::Unknown));
        assert_eq!(store.authenticate_hash(&hash(&alice)), Err(Rejected::Unknown), "a revoked token's hash too");
        assert_eq!(store.authenticate(&bob).unwrap().role, Role::Executive);
        assert!(matches!(revoke(&path, "alice"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = create(&path, "alice", Role::Manager, &[]).unwrap();
        let store = TokenStore::open(&path).unwrap();
        std::fs::write(&path, "[[tokens]]\nname = 'x'\n").unwrap();
        assert_eq!(store.authenticate(&token).unwrap().name, "alice");
        assert!(matches!(TokenStore::open(&path), Err(Error::Invalid { .. })), "but a server does not start on it");
    }

    #[test]
    fn bad_names_duplicates_and_headers_are_refused_precisely() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        for bad in ["", "has space", "x/y", &"n".repeat(65)] {
            assert!(matches!(create(&path, bad, Role::Manager, &[]), Err(Error::BadInput(_))), "{bad:?}");
        }
        assert!(matches!(create(&path, "ok", Role::Manager, &["a b".into()]), Err(Error::BadInput(_))));
        assert!(!path.exists(), "refused input writes nothing");
        create(&path, "ok", Role::Manager, &[]).unwrap();
        assert!(matches!(create(&path, "ok", Role::Engineer, &[]), Err(Error::Exists { .. })));

        let store = TokenStore::open(&path).unwrap();
        assert_eq!(store.authenticate_header(None), Err(Rejected::Missing));
        for value in ["Basic abc", "Bearer", "Bearer klx_nope"] {
            let value = http::HeaderValue::from_str(value).unwrap();
            assert_eq!(store.authenticate_header(Some(&value)), Err(Rejected::Unknown), "{value:?}");
        }
    }
}
