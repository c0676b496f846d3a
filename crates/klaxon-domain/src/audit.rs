//! The audit trail's pure parts: what an accepted configuration records
//! (`config.applied.v1`, with its diff by section and key), what a token's
//! creation and revocation record, the filter of `klaxon audit`, and one
//! readable line for any record of the log.
//!
//! Nothing here reads a file or a clock: the caller hands in the
//! configuration as JSON (already stripped of anything secret) and the
//! record's fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The stream of configuration changes.
pub const CONFIG_STREAM: &str = "config";
/// An accepted configuration: [`ConfigApplied`].
pub const CONFIG_APPLIED: &str = "config.applied.v1";
/// The stream of token changes.
pub const TOKENS_STREAM: &str = "tokens";
/// A token made for a principal: [`TokenChanged`].
pub const TOKEN_CREATED: &str = "token.created.v1";
/// A principal's token removed: [`TokenChanged`].
pub const TOKEN_REVOKED: &str = "token.revoked.v1";

/// `config.applied.v1`: a configuration a process accepted, at start or
/// at a reload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigApplied {
    /// SHA-256 (hex) of the canonical configuration: the file's TOML with
    /// its keys sorted, comments and layout dropped.
    pub hash: String,
    /// The hash of the configuration recorded before it, if any.
    pub previous: Option<String>,
    /// The file it was read from, as the process named it.
    pub file: String,
    /// `start` (recorded as the process started) or `reload` (SIGHUP).
    pub via: String,
    /// What changed since the previous configuration, by key path, sorted.
    pub changes: Vec<KeyChange>,
    /// The configuration itself, without secrets, so that the next change
    /// can be diffed against it by any process.
    pub config: Value,
}

/// One key of a configuration that was added, removed or changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    /// Its path: `section.key`, an element of an array of tables by its
    /// `id` or `name` (`severity.rules[sev1-checkout].severity`), else by
    /// index (`[0]`).
    pub key: String,
    /// What happened to it.
    pub change: Change,
    /// The value before (none when added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// The value after (none when removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// The id of the `config.applied.v1` that moves the configuration from
/// `previous` to `hash`: every process that applies the same file after
/// the same one derives the same id, so it is recorded once, and a return
/// to an earlier configuration is a new record.
pub fn config_event_id(previous: Option<&str>, hash: &str) -> uuid::Uuid {
    let name = format!("config:{}>{hash}", previous.unwrap_or(""));
    uuid::Uuid::new_v5(&crate::ids::KLAXON_NAMESPACE, name.as_bytes())
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// It is new.
    Added,
    /// It is gone.
    Removed,
    /// Its value is different.
    Changed,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        })
    }
}

/// The keys that differ between two configurations, sorted by path. A
/// leaf is a scalar or an array of scalars; tables are walked; arrays of
/// tables are walked element by element, each named by its `id` or `name`
/// when every element has a distinct one (so inserting a rule does not
/// show every later rule as changed), else by its index.
pub fn diff(old: &Value, new: &Value) -> Vec<KeyChange> {
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    flatten("", old, &mut before);
    flatten("", new, &mut after);
    let mut changes = Vec::new();
    for (key, from) in &before {
        match after.remove(key) {
            None => changes.push(KeyChange {
                key: key.clone(),
                change: Change::Removed,
                from: Some(from.clone()),
                to: None,
            }),
            Some(to) if to != *from => changes.push(KeyChange {
                key: key.clone(),
                change: Change::Changed,
                from: Some(from.clone()),
                to: Some(to),
            }),
            Some(_) => {}
        }
    }
    for (key, to) in after {
        changes.push(KeyChange { key, change: Change::Added, from: None, to: Some(to) });
    }
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    changes
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    let join = |key: &str| if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
    match value {
        Value::Object(map) => {
            if map.is_empty() && !prefix.is_empty() {
                out.insert(prefix.to_owned(), value.clone());
            }
            for (key, value) in map {
                flatten(&join(key), value, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let names = element_names(items);
            for (i, item) in items.iter().enumerate() {
                let name = names.as_ref().map_or_else(|| i.to_string(), |names| names[i].clone());
                flatten(&format!("{prefix}[{name}]"), item, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// Each element's `id`, else `name`, when every element has one and no
/// two are the same.
fn element_names(items: &[Value]) -> Option<Vec<String>> {
    for field in ["id", "name"] {
        let names: Option<Vec<String>> = items.iter().map(|i| i.get(field)?.as_str().map(str::to_owned)).collect();
        if let Some(names) = names {
            let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
            if distinct.len() == names.len() {
                return Some(names);
            }
        }
    }
    None
}

/// `token.created.v1` / `token.revoked.v1`: who may call, changed. Never
/// the token nor its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenChanged {
    /// The principal.
    pub name: String,
    /// Its role (for a revocation: the role it had).
    pub role: String,
    /// The teams it is limited to (empty: every team).
    #[serde(default)]
    pub teams: Vec<String>,
}

/// What `klaxon audit` keeps: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub until: Option<DateTime<Utc>>,
    /// A kind starting with this (`incident.`, `config.`).
    pub kind_prefix: Option<String>,
}

impl Filter {
    /// Whether a record of `kind` by `actor` recorded `at` passes.
    pub fn admits(&self, actor: &str, at: DateTime<Utc>, kind: &str) -> bool {
        self.actor.as_deref().is_none_or(|a| a == actor)
            && self.from.is_none_or(|from| at >= from)
            && self.until.is_none_or(|until| at < until)
            && self.kind_prefix.as_deref().is_none_or(|p| kind.starts_with(p))
    }
}

/// The actor of a record: its metadata's, else the `by` of its data.
pub fn actor_of(metadata_actor: Option<&str>, data: &str) -> String {
    if let Some(actor) = metadata_actor {
        return actor.to_owned();
    }
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| v.get("by").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// One readable line about a record of any stream: the family's own
/// summary for incident, page, notify, review and shift notice events, a short account
/// of configuration and token changes, else the kind and the stream.
pub fn summary(kind: &str, stream: &str, data: &str) -> String {
    let family = |kinds: &[&str]| kinds.contains(&kind);
    let decoded = if family(crate::incident::KINDS) {
        crate::incident::IncidentEvent::from_json(kind, data).ok().map(|e| e.summary())
    } else if family(crate::paging::KINDS) {
        crate::paging::PageEvent::from_json(kind, data).ok().map(|e| e.summary())
    } else if family(crate::notifier::KINDS) {
        crate::notifier::NotifyEvent::from_json(kind, data).ok().map(|e| e.summary())
    } else if family(crate::review::KINDS) {
        crate::review::ReviewEvent::from_json(kind, data).ok().map(|e| e.summary())
    } else if family(crate::oncall::notices::KINDS) {
        crate::oncall::notices::NoticeEvent::from_json(kind, data).ok().map(|e| e.summary())
    } else if kind == CONFIG_APPLIED {
        serde_json::from_str::<ConfigApplied>(data).ok().map(|c| config_summary(&c))
    } else if kind == TOKEN_CREATED || kind == TOKEN_REVOKED {
        serde_json::from_str::<TokenChanged>(data).ok().map(|t| {
            let verb = if kind == TOKEN_CREATED { "created" } else { "revoked" };
            format!("{verb} the {} token of {}", t.role, t.name)
        })
    } else {
        None
    };
    decoded.unwrap_or_else(|| format!("{kind} in {stream}"))
}

/// `configuration 3f2a9c01b7d4 applied at reload: 2 keys (changed severity.default, added slo.sev2.ack_minutes)`.
fn config_summary(c: &ConfigApplied) -> String {
    const SHOWN: usize = 5;
    let hash: String = c.hash.chars().take(12).collect();
    if c.previous.is_none() {
        return format!("configuration {hash} applied at {} (first recorded)", c.via);
    }
    let mut keys: Vec<String> = c.changes.iter().take(SHOWN).map(|k| format!("{} {}", k.change, k.key)).collect();
    if c.changes.len() > SHOWN {
        keys.push(format!("{} more", c.changes.len() - SHOWN));
    }
    let count = crate::text::counted(c.changes.len() as u64, "key");
    format!("configuration {hash} applied at {}: {count} ({})", c.via, keys.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_diff_names_each_key_by_section_and_an_element_by_its_id() {
        let old = json!({
            "severity": {"default": "sev4", "rules": [{"id": "a", "severity": "sev2"}, {"id": "b", "severity": "sev3"}]},
            "services": [{"name": "payments", "tier": 1}],
            "listen": "127.0.0.1:7600",
        });
        let new = json!({
            "severity": {"default": "sev4", "rules": [{"id": "new", "severity": "sev1"}, {"id": "a", "severity": "sev1"}]},
            "services": [{"name": "payments", "tier": 1}],
            "slo": {"sev1": {"ack_minutes": 5}},
        });
        let changes: Vec<(String, Change, Option<Value>, Option<Value>)> =
            diff(&old, &new).into_iter().map(|c| (c.key, c.change, c.from, c.to)).collect();
        assert_eq!(
            changes,
            vec![
                ("listen".into(), Change::Removed, Some(json!("127.0.0.1:7600")), None),
                ("severity.rules[a].severity".into(), Change::Changed, Some(json!("sev2")), Some(json!("sev1"))),
                ("severity.rules[b].id".into(), Change::Removed, Some(json!("b")), None),
                ("severity.rules[b].severity".into(), Change::Removed, Some(json!("sev3")), None),
                ("severity.rules[new].id".into(), Change::Added, None, Some(json!("new"))),
                ("severity.rules[new].severity".into(), Change::Added, None, Some(json!("sev1"))),
                ("slo.sev1.ack_minutes".into(), Change::Added, None, Some(json!(5))),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn tables_without_distinct_names_go_by_index() {
        let old = json!({"x": [{"a": 1}, {"a": 2}]});
        let new = json!({"x": [{"a": 1}, {"a": 3}]});
        let keys: Vec<String> = diff(&old, &new).into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec!["x[1].a"]);
    }

    #[test]
    fn the_filter_keeps_what_every_condition_admits() {
        let at = "2026-03-01T10:00:00Z".parse().unwrap();
        let all = Filter::default();
        assert!(all.admits("maria", at, "incident.declared.v1"));
        let f = Filter {
            actor: Some("maria".into()),
            from: Some("2026-03-01T10:00:00Z".parse().unwrap()),
            until: Some("2026-03-01T11:00:00Z".parse().unwrap()),
            kind_prefix: Some("incident.".into()),
        };
        assert!(f.admits("maria", at, "incident.declared.v1"));
        assert!(!f.admits("omar", at, "incident.declared.v1"));
        assert!(!f.admits("maria", at, "config.applied.v1"));
        assert!(!f.admits("maria", "2026-03-01T11:00:00Z".parse().unwrap(), "incident.declared.v1"));
        assert!(!f.admits("maria", "2026-03-01T09:59:59Z".parse().unwrap(), "incident.declared.v1"));
    }

    #[test]
    fn summaries_name_the_change() {
        let applied = ConfigApplied {
            hash: "0123456789abcdef".into(),
            previous: Some("ff".into()),
            file: "k.toml".into(),
            via: "reload".into(),
            changes: diff(&json!({"severity": {"default": "sev4"}}), &json!({"severity": {"default": "sev3"}})),
            config: json!({}),
        };
        let data = serde_json::to_string(&applied).unwrap();
        assert_eq!(
            summary(CONFIG_APPLIED, CONFIG_STREAM, &data),
            "configuration 0123456789ab applied at reload: 1 key (changed severity.default)"
        );
        let token = serde_json::to_string(&TokenChanged { name: "ana".into(), role: "engineer".into(), teams: vec![] })
            .unwrap();
        assert_eq!(summary(TOKEN_REVOKED, TOKENS_STREAM, &token), "revoked the engineer token of ana");
        assert_eq!(
            summary("schedule.override_added.v1", "schedule-x", "{}"),
            "schedule.override_added.v1 in schedule-x"
        );
        assert_eq!(actor_of(None, r#"{"by":"maria"}"#), "maria");
        assert_eq!(actor_of(Some("omar"), r#"{"by":"maria"}"#), "omar");
    }
}
