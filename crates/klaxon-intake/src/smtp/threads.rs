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

use std::collections::HashMap;

use klaxon_domain::ids::IncidentId;
use klaxon_domain::notifier::NotifyChange;
use klaxon_domain::paging::PageChange;
use klaxon_log::Record;
use klaxon_reactor::decode;

/// The kinds whose messages may carry a `Message-ID`.
const KINDS: [&str; 3] = ["page.responder_paged.v1", "notify.executives_notified.v1", "notify.update_overdue.v1"];

/// The index: the local part of each message's id (`klaxon.<hex>`) → its
/// incident.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Threads {
    by_local_part: HashMap<String, IncidentId>,
}

impl Threads {
    /// Folds one record in (records of other kinds are ignored).
    pub(crate) fn fold(&mut self, record: &Record) -> Result<(), klaxon_reactor::Error> {
        if !KINDS.contains(&record.kind.as_str()) {
            return Ok(());
        }
        let keyed = if let Some(event) = decode::event::<PageChange>(record)? {
            match &event.change {
                PageChange::ResponderPaged(paged) => Some((event.incident, paged.page.to_string())),
                _ => None,
            }
        } else if let Some(event) = decode::event::<NotifyChange>(record)? {
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
            self.by_local_part.insert(local_part_of_key(&key), incident);
        }
        Ok(())
    }

    /// The incident of the Klaxon message whose id is `message_id` (with
    /// or without angle brackets), if Klaxon sent it.
    pub(crate) fn incident(&self, message_id: &str) -> Option<IncidentId> {
        self.by_local_part.get(&klaxon_local_part(message_id)?).copied()
    }
}

/// The local part of the `Message-ID` of the message with idempotency key
/// `key`, as the e-mail channel makes it.
fn local_part_of_key(key: &str) -> String {
    let id = klaxon_channels::message_id(key, "klaxon.invalid");
    klaxon_local_part(&id).expect("the channel's ids have a klaxon local part")
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
        assert_eq!(local, local_part_of_key("INC-7-P1"), "the domain does not matter");
        assert_eq!(klaxon_local_part(id.trim_matches(['<', '>'])).as_deref(), Some(local.as_str()));
        assert_eq!(klaxon_local_part("<CAF=abc@mail.gmail.com>"), None);
        assert_eq!(klaxon_local_part("<klaxon.1234@example.com>"), None, "too short");
        assert_ne!(local_part_of_key("INC-7-P1"), local_part_of_key("INC-7-P2"));
    }
}
