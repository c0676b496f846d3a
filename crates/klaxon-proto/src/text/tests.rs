//! The text table against the descriptor set, and the check against the
//! one rule, field by field, with arbitrary strings.

use std::collections::BTreeSet;

use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorSet};

use super::*;

fn descriptors() -> FileDescriptorSet {
    FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).expect("the descriptor set")
}

/// Every message of `klaxon.v1` by full name (nested ones included).
fn messages(set: &FileDescriptorSet) -> Vec<(String, DescriptorProto)> {
    fn walk(prefix: &str, message: &DescriptorProto, out: &mut Vec<(String, DescriptorProto)>) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            walk(&name, nested, out);
        }
        out.push((name, message.clone()));
    }
    let mut out = Vec::new();
    for file in &set.file {
        for message in &file.message_type {
            walk(file.package(), message, &mut out);
        }
    }
    out
}

fn message<'a>(all: &'a [(String, DescriptorProto)], name: &str) -> &'a DescriptorProto {
    &all.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no message {name}")).1
}

/// Every string field reachable from the requests of the public services:
/// `(message, path)` as [`TEXT_FIELDS`] and [`PARSED_FIELDS`] spell them.
fn request_string_fields() -> BTreeSet<(String, String)> {
    let set = descriptors();
    let all = messages(&set);
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut queue: Vec<String> = Vec::new();
    for file in &set.file {
        for service in &file.service {
            if INTERNAL_SERVICES.contains(&format!("{}.{}", file.package(), service.name()).as_str()) {
                continue;
            }
            for method in &service.method {
                queue.push(method.input_type().trim_start_matches('.').to_owned());
            }
        }
    }
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        for field in &message(&all, &name).field {
            match field.r#type() {
                Type::String => {
                    out.insert((name.clone(), field.name().to_owned()));
                }
                Type::Message => {
                    let nested = field.type_name().trim_start_matches('.');
                    if !nested.starts_with("klaxon.") {
                        continue;
                    }
                    let entry = message(&all, nested);
                    if entry.options.as_ref().is_some_and(|o| o.map_entry()) {
                        for part in &entry.field {
                            if part.r#type() == Type::String {
                                out.insert((name.clone(), format!("{}.{}", field.name(), part.name())));
                            }
                        }
                    } else {
                        queue.push(nested.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn every_string_field_of_every_request_is_classified_once() {
    let text: Vec<(String, String)> = TEXT_FIELDS.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    let parsed: Vec<(String, String)> = PARSED_FIELDS.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let mut listed = BTreeSet::new();
    for key in text.iter().chain(&parsed) {
        assert!(listed.insert(key.clone()), "{key:?} is listed twice");
    }
    let fields = request_string_fields();
    let missing: Vec<_> = fields.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&fields).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "string fields of requests without a row (free text in TEXT_FIELDS, or PARSED_FIELDS): {missing:?}; \
         rows of no such field: {stale:?}"
    );
}

/// Checks an encoded message of the named type with [`check_text`].
type Checker = fn(&[u8]) -> Result<(), Error>;

fn checker(message: &str) -> Option<Checker> {
    macro_rules! checkers {
        ($($t:ident),* $(,)?) => {
            match message {
                $(concat!("klaxon.v1.", stringify!($t)) =>
                    Some(|bytes| check_text(&v1::$t::decode(bytes).expect("a valid encoding"))),)*
                _ => None,
            }
        };
    }
    checkers!(
        ReportRequest,
        HypotheticalReport,
        OverrideSeverityRequest,
        DeclineHandoffRequest,
        CancelHandoffRequest,
        PostUpdateRequest,
        RecordCustomerImpactRequest,
        MitigateRequest,
        ResolveRequest,
        ReopenRequest,
        ValidateResolutionRequest,
        MarkNoiseRequest,
        PageResponderRequest,
        BridgeRequest,
        EditReviewRequest,
        NewActionItem,
    )
}

/// `value` as the field at `path` of `message_name`, encoded. A map key
/// gets the value `v`, a map value the key `k`.
fn encode(all: &[(String, DescriptorProto)], message_name: &str, path: &str, value: &str, out: &mut Vec<u8>) {
    let number = |m: &DescriptorProto, name: &str| {
        let field = m.field.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("no field {name}"));
        u32::try_from(field.number()).expect("a field number")
    };
    let m = message(all, message_name);
    match path.split_once('.') {
        None => prost::encoding::string::encode(number(m, path), &value.to_owned(), out),
        Some((map, part)) => {
            let (key, entry_value) = if part == "key" { (value, "v") } else { ("k", value) };
            let mut entry = Vec::new();
            prost::encoding::string::encode(1, &key.to_owned(), &mut entry);
            prost::encoding::string::encode(2, &entry_value.to_owned(), &mut entry);
            encode_key(number(m, map), WireType::LengthDelimited, out);
            encode_varint(entry.len() as u64, out);
            out.extend_from_slice(&entry);
        }
    }
}

/// A `message_name` whose field at `path` holds `value` and whose other
/// free-text fields hold valid text; the field under test is encoded last,
/// so that it wins a oneof.
fn request_with(all: &[(String, DescriptorProto)], message_name: &str, path: &str, value: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (m, other, _) in TEXT_FIELDS {
        if *m == message_name && *other != path {
            encode(all, message_name, other, "x", &mut bytes);
        }
    }
    encode(all, message_name, path, value, &mut bytes);
    bytes
}

#[test]
fn every_message_with_free_text_is_checked() {
    let all = messages(&descriptors());
    for (message_name, path, _) in TEXT_FIELDS {
        let check = checker(message_name).unwrap_or_else(|| panic!("{message_name} has no FreeText checker here"));
        let bytes = request_with(&all, message_name, path, "\u{0}");
        let refused = check(&bytes).expect_err("a control character");
        assert!(refused.to_string().contains(field_name(path)), "{message_name}.{path}: {refused}");
    }
}

/// A new action item is checked through the edit that carries it, which is
/// what the servers and the CLI check.
#[test]
fn an_edit_checks_the_new_action_item_it_carries() {
    use v1::edit_review_request::Edit;
    let edit = |title: &str| v1::EditReviewRequest {
        incident_id: "INC-7".into(),
        edit: Some(Edit::NewActionItem(v1::NewActionItem {
            title: title.into(),
            owner: "ana".into(),
            due: String::new(),
        })),
        ..Default::default()
    };
    assert_eq!(check_text(&edit("Add a canary stage")), Ok(()));
    let refused = check_text(&edit("Add a canary\nstage")).unwrap_err().to_string();
    assert!(refused.starts_with("invalid title: must be one line"), "{refused}");
}

/// Strings around a bound, or short ones rich in what the rule cares about.
fn value(chars_max: usize) -> impl Strategy<Value = String> {
    let interesting = prop_oneof![
        Just('\n'),
        Just('\t'),
        Just('\r'),
        Just(' '),
        Just('\u{0}'),
        Just('\u{1b}'),
        Just('\u{7f}'),
        Just('\u{85}'),
        Just('é'),
        Just('x'),
    ];
    let short = prop::collection::vec(prop_oneof![3 => interesting, 1 => any::<char>()], 0..16)
        .prop_map(|chars| chars.into_iter().collect::<String>());
    let around_bound = (0..3usize, prop_oneof![Just(""), Just(" "), Just("\n"), Just("\u{0}")])
        .prop_map(move |(delta, end)| format!("{}{end}", "y".repeat(chars_max + delta - 1)));
    prop_oneof![3 => short, 1 => around_bound]
}

fn field_and_value() -> impl Strategy<Value = (usize, String)> {
    (0..TEXT_FIELDS.len()).prop_flat_map(|i| (Just(i), value(TEXT_FIELDS[i].2.chars_max)))
}

proptest! {
    /// Through the wire check, an arbitrary string in any free-text field
    /// of any request is refused exactly when the one rule refuses it, with
    /// the rule's error naming the field (see [`request_with`]).
    #[test]
    fn the_wire_check_agrees_with_the_rule_on_every_field((i, value) in field_and_value()) {
        let all = messages(&descriptors());
        let (message_name, path, kind) = TEXT_FIELDS[i];
        let bytes = request_with(&all, message_name, path, &value);
        let checked = checker(message_name).expect("a checker")(&bytes);
        prop_assert_eq!(checked, kind.check(field_name(path), &value).map(|_| ()));
    }
}
