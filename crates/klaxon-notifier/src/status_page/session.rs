//! Status page sessions: bounded in number and lifetime, kept only in
//! memory (a restart signs everyone out), and keyed by the SHA-256 of the
//! cookie, so the map holds no usable cookie. A session remembers the hash
//! of the token it was made from, never the token: each request checks
//! that hash against the token file again, so revoking the token ends the
//! session.
//!
//! Time is passed in (`now`), so the rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// One signed-in browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who signed in.
    pub principal: String,
    /// The SHA-256 (hex) of the token they signed in with.
    pub token_hash: String,
    /// When it ends.
    pub expires_at: Instant,
    created_at: Instant,
}

/// Why a session could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// Every slot is taken by a live session of someone else.
    #[error("too many people are signed in ({0} sessions); try again later")]
    Sessions(usize),
}

/// The sessions of one status page.
#[derive(Debug)]
pub struct Sessions {
    by_key: HashMap<[u8; 32], Session>,
    max: usize,
    per_principal_max: usize,
    lifetime: Duration,
}

/// The map key of a cookie value.
fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// At most `max` sessions in all and `per_principal_max` per principal
    /// (a new one replaces that principal's oldest), each ending
    /// `lifetime` after sign-in.
    pub fn new(max: usize, per_principal_max: usize, lifetime: Duration) -> Sessions {
        Sessions { by_key: HashMap::new(), max: max.max(1), per_principal_max: per_principal_max.max(1), lifetime }
    }

    /// Starts a session for `principal` at `now` under the new random
    /// `cookie` the caller made, or says why not.
    pub fn create(&mut self, cookie: &str, principal: &str, token_hash: &str, now: Instant) -> Result<(), Full> {
        self.by_key.retain(|_, s| s.expires_at > now);
        let mut own: Vec<([u8; 32], Instant)> =
            self.by_key.iter().filter(|(_, s)| s.principal == principal).map(|(k, s)| (*k, s.created_at)).collect();
        if own.len() >= self.per_principal_max {
            own.sort_by_key(|(_, created)| *created);
            let excess = own.len() + 1 - self.per_principal_max;
            for (k, _) in own.into_iter().take(excess) {
                self.by_key.remove(&k);
            }
        }
        if self.by_key.len() >= self.max {
            return Err(Full::Sessions(self.max));
        }
        let session = Session {
            principal: principal.to_owned(),
            token_hash: token_hash.to_owned(),
            expires_at: now + self.lifetime,
            created_at: now,
        };
        self.by_key.insert(key(cookie), session);
        Ok(())
    }

    /// The live session of `cookie` at `now`; an expired one is forgotten.
    pub fn get(&mut self, cookie: &str, now: Instant) -> Option<Session> {
        let k = key(cookie);
        match self.by_key.get(&k) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                self.by_key.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `cookie`.
    pub fn remove(&mut self, cookie: &str) {
        self.by_key.remove(&key(cookie));
    }

    /// How many sessions are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_session_lives_for_its_lifetime_then_is_forgotten() {
        let start = Instant::now();
        let mut sessions = Sessions::new(10, 2, HOUR);
        sessions.create("cookie-a", "ceo", "hash-a", start).unwrap();
        assert_eq!(sessions.get("cookie-a", start + HOUR / 2).unwrap().principal, "ceo");
        assert_eq!(sessions.get("cookie-b", start), None, "an unknown cookie");
        assert_eq!(sessions.get("cookie-a", start + HOUR), None, "ended at its lifetime");
        assert!(sessions.is_empty(), "and forgotten");
    }

    #[test]
    fn a_principal_keeps_only_its_newest_sessions() {
        let start = Instant::now();
        let mut sessions = Sessions::new(10, 2, HOUR);
        for (i, cookie) in ["one", "two", "three"].into_iter().enumerate() {
            sessions.create(cookie, "ceo", "h", start + Duration::from_secs(i as u64)).unwrap();
        }
        sessions.create("other", "cfo", "h", start).unwrap();
        assert_eq!(sessions.get("one", start + Duration::from_secs(5)), None, "the oldest gave way");
        assert!(sessions.get("two", start + Duration::from_secs(5)).is_some());
        assert!(sessions.get("three", start + Duration::from_secs(5)).is_some());
        assert!(sessions.get("other", start + Duration::from_secs(5)).is_some(), "others keep theirs");
    }

    #[test]
    fn a_full_store_refuses_until_sessions_expire() {
        let start = Instant::now();
        let mut sessions = Sessions::new(2, 2, HOUR);
        sessions.create("a", "ceo", "h", start).unwrap();
        sessions.create("b", "cfo", "h", start).unwrap();
        assert_eq!(sessions.create("c", "cto", "h", start), Err(Full::Sessions(2)));
        assert_eq!(sessions.len(), 2);
        sessions.create("c", "cto", "h", start + HOUR).unwrap();
        assert_eq!(sessions.len(), 1, "expired sessions were swept");
    }

    #[test]
    fn signing_out_ends_the_session_and_cookies_are_not_stored() {
        let start = Instant::now();
        let mut sessions = Sessions::new(2, 2, HOUR);
        sessions.create("secret-cookie", "ceo", "h", start).unwrap();
        assert!(!format!("{sessions:?}").contains("secret-cookie"));
        sessions.remove("secret-cookie");
        assert_eq!(sessions.get("secret-cookie", start), None);
    }
}
