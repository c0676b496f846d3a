//! Which incident a Klaxon e-mail belongs to, by its `Message-ID`.
//!
//! The e-mail channel derives a message's `Message-ID` from the
//! notification's idempotency key ([`klaxon_channels::message_id`]:
//! `<klaxon.` + a digest of the key + `@domain>`), and paging and the
//! notifier derive those keys from the events they record: a page's id
//! (`INC-7-P3`), an executive post's `INC-7/executive/sev1/<channel>`, an
//! overdue-update reminder's `INC-7/update-due/<unix seconds>`. So the
//! index is a fold of those events like any projection: rebuilt from the
//! log at start, nothing stored beside it. The domain part of the id is
//! ignored (it names the channel's `from` domain, which configuration may
//! change); the digest alone identifies the message.
//!
//! The index has one entry per message Klaxon ever sent by e-mail, so it
//! grows with history: each is kept as the digest's 16 bytes (24 bytes
//! with its incident), not as the 39-character local part in a string of
//! its own, about half the memory (`docs/benchmarks.md`, "Mail threads
//! as bytes"). Snapshots still save the local part, so their JSON is
//! unchanged.

use std::collections::HashMap;

use klaxon_bus::SharedRecord;
use klaxon_domain::ids::IncidentId;
use klaxon_domain::notifier::NotifyChange;
use klaxon_domain::paging::PageChange;
use klaxon_reactor::decode;

/// The kinds whose messages may carry a `Message-ID`.
const KINDS: [&str; 3] = ["page.responder_paged.v1", "notify.executives_notified.v1", "notify.update_overdue.v1"];

/// The index: the digest of each message's id (the 32 hex digits of its
/// local part `klaxon.<hex>`, as 16 bytes) → its incident. Saved as
/// `{"by_local_part": {"klaxon.<hex>": "INC-7", …}}`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Threads {
    by_local_part: Digests,
}

/// A message id's digest: the 16 bytes its local part spells in hex.
type Digest = [u8; 16];

/// The map of [`Threads`], serialized with the local parts as keys.
#[derive(Clone, Debug, Default)]
struct Digests(HashMap<Digest, IncidentId>);

impl serde::Serialize for Digests {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(digest, id)| (local_part_of(digest), id)))
    }
}

impl<'de> serde::Deserialize<'de> for Digests {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digests, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Digests;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of Klaxon message ids' local parts to incident ids")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Digests, A::Error> {
                let mut digests = HashMap::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((local, id)) = map.next_entry::<std::borrow::Cow<'de, str>, IncidentId>()? {
                    let digest = digest_of_local_part(&local).ok_or_else(|| {
                        serde::de::Error::custom(format!("{local:?} is not the local part of a Klaxon message id"))
                    })?;
                    digests.insert(digest, id);
                }
                Ok(Digests(digests))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Threads {
    /// Folds one record in (records of other kinds are ignored).
    pub(crate) fn fold(&mut self, record: &SharedRecord) -> Result<(), klaxon_reactor::Error> {
        if !KINDS.contains(&record.kind.as_str()) {
            return Ok(());
        }
        let keyed = if let Some(event) = decode::shared_event::<PageChange>(record)? {
            match &event.change {
                PageChange::ResponderPaged(paged) => Some((event.incident, paged.page.to_string())),
                _ => None,
            }
        } else if let Some(event) = decode::shared_event::<NotifyChange>(record)? {
            let id = event.incident;
            match &event.change {
                // `klaxon_domain::notifier::Post::idempotency_key`.
                NotifyChange::ExecutivesNotified(n) => {
                    Some((id, format!("{id}/{}/sev{}/{}", n.audience, n.severity.number(), n.channel)))
                }
                // The reminder's key in `Notification::outgoing`.
                NotifyChange::UpdateOverdue(o) => Some((id, format!("{id}/update-due/{}", o.due_at.timestamp()))),
                // A follow-up's own key names the changes it covers, which its
                // event does not keep; replies to it still carry the first
                // post's id in `References` (the e-mail channel threads
                // follow-ups under it), which the arm above indexes.
                NotifyChange::DeliveryFailed(_) | NotifyChange::ThreadStarted(_) => None,
            }
        } else {
            None
        };
        if let Some((incident, key)) = keyed {
            self.by_local_part.0.insert(digest_of_key(&key), incident);
        }
        Ok(())
    }

    /// The incident of the Klaxon message whose id is `message_id` (with
    /// or without angle brackets), if Klaxon sent it.
    pub(crate) fn incident(&self, message_id: &str) -> Option<IncidentId> {
        self.by_local_part.0.get(&digest_of_local_part(&klaxon_local_part(message_id)?)?).copied()
    }
}

/// The digest of the `Message-ID` of the message with idempotency key
/// `key`, as the e-mail channel makes it.
fn digest_of_key(key: &str) -> Digest {
    let id = klaxon_channels::message_id(key, "klaxon.invalid");
    klaxon_local_part(&id)
        .as_deref()
        .and_then(digest_of_local_part)
        .expect("the channel's ids have a klaxon local part")
}

/// The 16 bytes of `klaxon.<32 hex digits>` (either case).
fn digest_of_local_part(local: &str) -> Option<Digest> {
    let hex = local.strip_prefix("klaxon.")?.as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let mut digest = [0u8; 16];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(digest)
}

/// `klaxon.<32 lowercase hex digits>` of a digest.
fn local_part_of(digest: &Digest) -> String {
    use std::fmt::Write as _;
    let mut local = String::with_capacity(7 + 32);
    local.push_str("klaxon.");
    for byte in digest {
        let _ = write!(local, "{byte:02x}");
    }
    local
}

/// `klaxon.<hex>` of a `Message-ID` of Klaxon's shape, lowercased; `None`
/// for any other id.
pub(crate) fn klaxon_local_part(message_id: &str) -> Option<String> {
    let id = message_id.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, _domain) = id.split_once('@')?;
    let hex = local.strip_prefix("klaxon.")?;
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| local.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_channel_are_recognised_and_others_are_not() {
        let id = klaxon_channels::message_id("INC-7-P1", "mail.example.com");
        let local = klaxon_local_part(&id).unwrap();
        assert_eq!(local, local_part_of(&digest_of_key("INC-7-P1")), "the domain does not matter");
        assert_eq!(digest_of_local_part(&local), Some(digest_of_key("INC-7-P1")));
        assert_eq!(
            digest_of_local_part(&local.to_ascii_uppercase().replace("KLAXON.", "klaxon.")),
            Some(digest_of_key("INC-7-P1"))
        );
        assert_eq!(klaxon_local_part(id.trim_matches(['<', '>'])).as_deref(), Some(local.as_str()));
        assert_eq!(klaxon_local_part("<CAF=abc@mail.gmail.com>"), None);
        assert_eq!(klaxon_local_part("<klaxon.1234@example.com>"), None, "too short");
        assert_ne!(digest_of_key("INC-7-P1"), digest_of_key("INC-7-P2"));
    }

    /// The index is saved as before (local parts as keys), so snapshots
    /// keep their shape, and loads back to the same lookups.
    #[test]
    fn the_index_saves_local_parts_and_loads_back() {
        let id: IncidentId = "INC-7".parse().unwrap();
        let mut threads = Threads::default();
        threads.by_local_part.0.insert(digest_of_key("INC-7-P1"), id);
        let json = serde_json::to_value(&threads).unwrap();
        let local = klaxon_local_part(&klaxon_channels::message_id("INC-7-P1", "x.example")).unwrap();
        assert_eq!(json, serde_json::json!({ "by_local_part": { local.clone(): "INC-7" } }));
        let loaded: Threads = serde_json::from_value(json).unwrap();
        assert_eq!(loaded.incident(&format!("<{local}@mail.example.com>")), Some(id));
        let bad = serde_json::json!({ "by_local_part": { "klaxon.zz": "INC-7" } });
        assert!(serde_json::from_value::<Threads>(bad).is_err());
    }
}
