//! The envelope every persisted event family shares, and its log format.
//!
//! Incident, page, notify and review events are all an [`Event`]: the
//! incident, the time and the actor, around a family-specific change enum
//! that implements [`Changes`]. The log stores an event as a record of kind
//! [`Event::kind`] whose data is [`Event::to_json`]: one flat JSON object
//! holding `incident`, `at` (RFC 3339, UTC) and `by`, followed by the fields
//! of the change. Each family names its event with a type alias, such as
//! [`crate::incident::IncidentEvent`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::DecodeError;
use crate::ids::{ActorId, IncidentId};

/// One fact about one incident: what changed, when and by whom.
///
/// `C` is the family's change enum; see the module docs for the stored form.
#[derive(Clone, PartialEq, Eq)]
pub struct Event<C> {
    /// The incident the fact is about.
    pub incident: IncidentId,
    /// When the fact was decided (the `now` given to the decision).
    pub at: DateTime<Utc>,
    /// The principal (or service actor) whose decision produced the fact.
    pub by: ActorId,
    /// What changed.
    pub change: C,
}

/// In a projection's snapshot an event is `{"kind": …, "data": …}`, the
/// data in the log's own format ([`Event::to_json`]), so a snapshot holds
/// events exactly as the log does.
impl<C: Changes> serde::Serialize for Event<C> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut event = serializer.serialize_struct("Event", 2)?;
        event.serialize_field("kind", self.kind())?;
        event.serialize_field("data", &self.to_json().to_string())?;
        event.end()
    }
}

impl<'de, C: Changes> serde::Deserialize<'de> for Event<C> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Stored {
            kind: String,
            data: String,
        }
        let stored = Stored::deserialize(deserializer)?;
        Event::from_json(&stored.kind, &stored.data).map_err(serde::de::Error::custom)
    }
}

/// The change enum of an event family: one variant per kind of fact, each
/// holding a struct that serializes to a JSON object. Implemented through
/// the crate's `changes!` macro, so the kinds and the conversions can never
/// disagree.
pub trait Changes: Sized {
    /// Every kind of the family. A kind's name and meaning never change; a
    /// new schema gets a new `.vN` name.
    const KINDS: &'static [&'static str];

    /// The name of the family's event type, such as `IncidentEvent`, which
    /// `Debug` shows.
    const EVENT_NAME: &'static str;

    /// The stable persisted name of this change, one of [`Changes::KINDS`].
    fn kind(&self) -> &'static str;

    /// The change's own fields as a JSON object.
    fn fields(&self) -> Value;

    /// Decodes the fields of a change of kind `kind`, which must be one of
    /// [`Changes::KINDS`], from `fields` (a map).
    fn from_fields<'de, D: serde::Deserializer<'de>>(kind: &str, fields: D) -> Result<Self, D::Error>;

    /// Serializes `envelope` and then the change's own fields as one flat
    /// map, straight to `serializer` (see [`Event::stored`]).
    fn serialize_flat<S: serde::Serializer>(&self, envelope: &Envelope<'_>, serializer: S) -> Result<S::Ok, S::Error>;
}

/// The envelope fields of an event as they are stored: `incident` and `by`
/// as their text, `at` as RFC 3339. Only [`Changes::serialize_flat`] uses it.
#[derive(serde::Serialize)]
pub struct Envelope<'a> {
    #[serde(serialize_with = "as_text")]
    incident: &'a IncidentId,
    at: &'a DateTime<Utc>,
    #[serde(serialize_with = "as_text")]
    by: &'a ActorId,
}

fn as_text<T: fmt::Display, S: serde::Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// An envelope followed by a change's fields, as one flat map.
#[derive(serde::Serialize)]
pub(crate) struct Flat<'a, F> {
    #[serde(flatten)]
    pub(crate) envelope: &'a Envelope<'a>,
    #[serde(flatten)]
    pub(crate) fields: &'a F,
}

/// An event in its stored form, serialized without building a
/// `serde_json::Value` first; see [`Event::stored`].
pub struct Stored<'a, C>(&'a Event<C>);

impl<C: Changes> serde::Serialize for Stored<'_, C> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let envelope = Envelope { incident: &event.incident, at: &event.at, by: &event.by };
        event.change.serialize_flat(&envelope, serializer)
    }
}

/// The names of the envelope fields, which no change may use.
const ENVELOPE_FIELDS: [&str; 3] = ["incident", "at", "by"];

impl<C: Changes> Event<C> {
    /// The stable persisted name of this event, with its schema version, such
    /// as `incident.declared.v1`. One of the family's [`Changes::KINDS`].
    pub fn kind(&self) -> &'static str {
        self.change.kind()
    }

    /// The event as the log stores it: one flat JSON object with `incident`,
    /// `at` and `by` followed by the change's own fields.
    ///
    /// [`Event::from_json`] reads it back to an equal event.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("incident".into(), Value::String(self.incident.to_string()));
        object.insert("at".into(), serde_json::to_value(self.at).expect("timestamps serialize"));
        object.insert("by".into(), Value::String(self.by.to_string()));
        let Value::Object(fields) = self.change.fields() else {
            unreachable!("every change is a struct with braces and serializes to an object")
        };
        for (name, value) in fields {
            debug_assert!(!ENVELOPE_FIELDS.contains(&name.as_str()), "field {name} shadows the envelope");
            object.insert(name, value);
        }
        Value::Object(object)
    }

    /// The event as the log stores it, like [`Event::to_json`] but written
    /// in one pass by whatever serializer it is given (for the log:
    /// `EventData::from_value`), with no intermediate `Value`: the same
    /// object, its keys in envelope-then-fields order rather than sorted.
    /// [`Event::from_json`] reads it back to an equal event.
    pub fn stored(&self) -> Stored<'_, C> {
        Stored(self)
    }

    /// Decodes a stored record of kind `kind` whose data is `data`, the text
    /// of [`Event::to_json`].
    ///
    /// Unknown kinds and data that does not fit the kind's schema (including
    /// unknown fields: a schema change is a new kind version) are reported as
    /// distinct [`DecodeError`]s naming the kind.
    pub fn from_json(kind: &str, data: &str) -> Result<Event<C>, DecodeError> {
        if !C::KINDS.contains(&kind) {
            return Err(DecodeError::UnknownKind { kind: kind.to_owned() });
        }
        let malformed = |source| DecodeError::Malformed { kind: kind.to_owned(), source };
        let mut deserializer = serde_json::Deserializer::from_str(data);
        let event = serde::de::Deserializer::deserialize_map(
            &mut deserializer,
            EventVisitor::<C> { kind, family: std::marker::PhantomData },
        )
        .map_err(malformed)?;
        deserializer.end().map_err(malformed)?;
        Ok(event)
    }
}

/// Decodes a stored event in one pass over its text: the envelope fields
/// are taken out as they come, every other field goes straight to the
/// change's own `Deserialize` (so its `deny_unknown_fields` still refuses
/// what it does not know), with no intermediate `serde_json::Value`.
struct EventVisitor<'k, C> {
    kind: &'k str,
    family: std::marker::PhantomData<C>,
}

impl<'de, C: Changes> serde::de::Visitor<'de> for EventVisitor<'_, C> {
    type Value = Event<C>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<Event<C>, M::Error> {
        let mut fields = ChangeFields { map, incident: None, at: None, by: None };
        let change = C::from_fields(self.kind, &mut fields)?;
        let missing = <M::Error as serde::de::Error>::missing_field;
        Ok(Event {
            incident: fields.incident.ok_or_else(|| missing("incident"))?,
            at: fields.at.ok_or_else(|| missing("at"))?,
            by: fields.by.ok_or_else(|| missing("by"))?,
            change,
        })
    }
}

/// The stored object as the change sees it: a map without the envelope
/// fields, which are kept aside as they pass.
struct ChangeFields<M> {
    map: M,
    incident: Option<IncidentId>,
    at: Option<DateTime<Utc>>,
    by: Option<ActorId>,
}

impl<'de, M: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for ChangeFields<M> {
    type Error = M::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, M::Error> {
        let mut seed = Some(seed);
        loop {
            let Some(key) = self.map.next_key_seed(KeySeed { inner: &mut seed })? else { return Ok(None) };
            let duplicate = <M::Error as serde::de::Error>::duplicate_field;
            match key {
                Key::Change(value) => return Ok(Some(value)),
                Key::Incident if self.incident.is_some() => return Err(duplicate("incident")),
                Key::At if self.at.is_some() => return Err(duplicate("at")),
                Key::By if self.by.is_some() => return Err(duplicate("by")),
                Key::Incident => self.incident = Some(self.map.next_value()?),
                Key::At => self.at = Some(self.map.next_value()?),
                Key::By => self.by = Some(self.map.next_value()?),
            }
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, M::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Presents the change's fields to the change's `Deserialize`, which asks
/// for a struct: every request is answered with the map.
impl<'de, M: serde::de::MapAccess<'de>> serde::de::Deserializer<'de> for &mut ChangeFields<M> {
    type Error = M::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, M::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// A key of the stored object: an envelope field, or one of the change's
/// (already given to the change's key seed).
enum Key<T> {
    Incident,
    At,
    By,
    Change(T),
}

/// Reads one key: an envelope name is kept aside, any other name goes to
/// the change's key seed (taken once: a key the change reads ends the
/// look for one).
struct KeySeed<'s, K> {
    inner: &'s mut Option<K>,
}

impl<'de, K: serde::de::DeserializeSeed<'de>> serde::de::DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn deserialize<D: serde::de::Deserializer<'de>>(self, deserializer: D) -> Result<Key<K::Value>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: serde::de::DeserializeSeed<'de>> serde::de::Visitor<'de> for KeySeed<'_, K> {
    type Value = Key<K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key<K::Value>, E> {
        use serde::de::IntoDeserializer;
        match name {
            "incident" => Ok(Key::Incident),
            "at" => Ok(Key::At),
            "by" => Ok(Key::By),
            _ => {
                let seed = self.inner.take().expect("a key seed is used once");
                seed.deserialize(name.into_deserializer()).map(Key::Change)
            }
        }
    }
}

/// Shows the family's event name (`IncidentEvent { incident: .. }`), as the
/// per-family structs this type replaced did.
impl<C: Changes + fmt::Debug> fmt::Debug for Event<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(C::EVENT_NAME)
            .field("incident", &self.incident)
            .field("at", &self.at)
            .field("by", &self.by)
            .field("change", &self.change)
            .finish()
    }
}

/// Declares a family's change enum with one tuple variant per fact, its kind
/// names, the module's `KINDS` const, an inherent `kind()` and the
/// [`Changes`] impl, so that they can never disagree.
macro_rules! changes {
    (
        $(#[$enum_meta:meta])*
        pub enum $change:ident for $event:ident;
        $(#[$kinds_meta:meta])*
        pub const KINDS;
        $( $(#[$meta:meta])* $variant:ident => $kind:literal, )*
    ) => {
        $(#[$enum_meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $change {
            $( $(#[$meta])* $variant($variant), )*
        }

        $(#[$kinds_meta])*
        pub const KINDS: &[&str] = &[ $( $kind, )* ];

        impl $change {
            /// The stable persisted name of this change, one of [`KINDS`].
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $change::$variant(_) => $kind, )*
                }
            }
        }

        impl $crate::envelope::Changes for $change {
            const KINDS: &'static [&'static str] = KINDS;
            const EVENT_NAME: &'static str = stringify!($event);

            fn kind(&self) -> &'static str {
                $change::kind(self)
            }

            fn fields(&self) -> ::serde_json::Value {
                match self {
                    $( $change::$variant(fields) => ::serde_json::to_value(fields), )*
                }
                .expect("event structs always serialize")
            }

            fn from_fields<'de, D: ::serde::Deserializer<'de>>(kind: &str, fields: D) -> Result<$change, D::Error> {
                match kind {
                    $( $kind => <$variant as ::serde::Deserialize>::deserialize(fields).map($change::$variant), )*
                    _ => unreachable!("the kind was checked against KINDS"),
                }
            }

            fn serialize_flat<S: ::serde::Serializer>(
                &self,
                envelope: &$crate::envelope::Envelope<'_>,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                match self {
                    $( $change::$variant(fields) => {
                        ::serde::Serialize::serialize(&$crate::envelope::Flat { envelope, fields }, serializer)
                    } )*
                }
            }
        }
    };
}

pub(crate) use changes;

/// Checks shared by the event families' format tests: golden JSON, kind
/// coverage and round trips.
#[cfg(test)]
pub(crate) mod testkit {
    use expect_test::Expect;

    use super::{Changes, Event};

    /// Asserts that the goldens cover every kind of the family, in the order
    /// of its `KINDS` (repeated kinds must be adjacent).
    pub(crate) fn assert_every_kind<C: Changes>(goldens: &[(Event<C>, Expect)]) {
        let mut kinds: Vec<&str> = goldens.iter().map(|(event, _)| event.kind()).collect();
        kinds.dedup();
        assert_eq!(kinds, C::KINDS);
    }

    /// Asserts each golden's pinned text: the kind, the pretty JSON and,
    /// when `summary` is given, the summary line.
    pub(crate) fn assert_goldens<C: Changes>(goldens: &[(Event<C>, Expect)], summary: Option<fn(&Event<C>) -> String>) {
        for (event, expected) in goldens {
            let json = serde_json::to_string_pretty(&event.to_json()).unwrap();
            let mut text = format!("{}\n{json}\n", event.kind());
            if let Some(summary) = summary {
                text.push_str(&summary(event));
                text.push('\n');
            }
            expected.assert_eq(&text);
        }
    }

    /// `event` written and read back; on the way, asserts that its one-pass
    /// stored form ([`Event::stored`]) is the same JSON object as
    /// [`Event::to_json`].
    pub(crate) fn round_trip<C: Changes>(event: &Event<C>) -> Event<C> {
        let value = event.to_json();
        let stored = serde_json::to_string(&event.stored()).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&stored).unwrap(), value, "{stored}");
        Event::from_json(event.kind(), &value.to_string()).unwrap()
    }

    /// Asserts that every golden reads back to an equal event, and that
    /// its one-pass stored form ([`Event::stored`]) is the same JSON
    /// object as [`Event::to_json`] and reads back to it too.
    pub(crate) fn assert_round_trips<C: Changes + PartialEq + std::fmt::Debug>(goldens: &[(Event<C>, Expect)]) {
        for (event, _) in goldens {
            assert_eq!(&round_trip(event), event);
            let stored = serde_json::to_string(&event.stored()).unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(&stored).unwrap(), event.to_json(), "{stored}");
            assert_eq!(&Event::from_json(event.kind(), &stored).unwrap(), event);
            assert!(stored.starts_with("{\"incident\":"), "the envelope comes first: {stored}");
        }
    }
}
