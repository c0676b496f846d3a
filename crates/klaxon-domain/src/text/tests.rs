use proptest::prelude::*;

use super::*;

/// One check: `(kind, value)` gives `Ok(text)` or `Err(message)`.
fn check(kind: Kind, value: &str, expected: Result<&str, &str>) {
    let got = kind.check("field", value).map_err(|e| e.to_string());
    assert_eq!(got.as_deref().map_err(String::as_str), expected, "{kind:?} {value:?}");
}

#[test]
fn the_rule_trims_and_refuses_control_characters_blank_and_overlong_text() {
    let line = Kind::line(5);
    let long = Kind::long(5);
    check(line, "  ok \n", Ok("ok"));
    check(
        line,
        "\u{0}\u{1}\u{2}",
        Err("invalid field: must be one line of text without control characters; character 1 is U+0000"),
    );
    check(
        line,
        "a\nb",
        Err("invalid field: must be one line of text without control characters; character 2 is U+000A"),
    );
    check(
        line,
        "a\tb",
        Err("invalid field: must be one line of text without control characters; character 2 is U+0009"),
    );
    check(long, "a\nb\tc", Ok("a\nb\tc"));
    check(
        long,
        "a\rb",
        Err("invalid field: must be text without control characters other than newline and tab; character 2 is U+000D"),
    );
    check(
        long,
        "ab\u{7f}",
        Err("invalid field: must be text without control characters other than newline and tab; character 3 is U+007F"),
    );
    check(
        long,
        "\u{9b}",
        Err("invalid field: must be text without control characters other than newline and tab; character 1 is U+009B"),
    );
    check(line, " \t\n ", Err("invalid field: must not be blank"));
    check(line, "", Err("invalid field: must not be blank"));
    check(line.or_empty(), " ", Ok(""));
    check(
        line.or_empty(),
        "\u{1}",
        Err("invalid field: must be one line of text without control characters; character 1 is U+0001"),
    );
    check(line, "123456", Err("field is too large: 6 > 5"));
    check(line, "  12345  ", Ok("12345"));
    check(line, "ééééé", Ok("ééééé"));
    // Format characters and separators are text, not control characters.
    check(line, "a\u{200f}b\u{2028}c", Ok("a\u{200f}b\u{2028}c"));
}

#[test]
fn cleaning_keeps_what_fits_and_makes_the_rest_fit() {
    let line = Kind::line(8);
    let long = Kind::long(8);
    for (kind, value, cleaned) in [
        (line, "  Disk up  ", "Disk up"),
        (line, "a\nb\tc\u{0}d", "a b c d"),
        (long, "a\r\nb\rc\u{0}d", "a\nb\nc d"),
        (long, "a\n\tb", "a\n\tb"),
        (line, "0123456789", "0123456…"),
        (line, "0123456 89", "0123456…"),
        (line, "012345 789", "012345…"),
        (line, "\u{0}\u{1} \n", ""),
        (line, "", ""),
    ] {
        assert_eq!(kind.clean(value), cleaned, "{kind:?} {value:?}");
    }
}

/// Any string, biased towards the characters the rule cares about.
pub(crate) fn text() -> impl Strategy<Value = String> {
    let interesting = prop_oneof![
        Just('\n'),
        Just('\t'),
        Just('\r'),
        Just(' '),
        Just('\u{0}'),
        Just('\u{7f}'),
        Just('\u{85}'),
        Just('\u{a0}'),
        Just('\u{2028}'),
        Just('\u{200f}'),
        Just('é'),
        Just('x'),
    ];
    prop::collection::vec(prop_oneof![3 => interesting, 1 => any::<char>()], 0..24)
        .prop_map(|chars| chars.into_iter().collect())
}

fn kind() -> impl Strategy<Value = Kind> {
    (prop_oneof![Just(Shape::Line), Just(Shape::Long)], 1usize..16, any::<bool>())
        .prop_map(|(shape, chars_max, optional)| Kind { shape, chars_max, optional })
}

proptest! {
    /// The rule, restated plainly: accepted exactly when the trimmed text
    /// has only allowed characters, is not blank (unless optional) and fits;
    /// then the trimmed text is what is kept.
    #[test]
    fn check_accepts_exactly_the_trimmed_allowed_bounded_text(kind in kind(), value in text()) {
        let trimmed = value.trim();
        let ok = trimmed.chars().all(|c| !c.is_control() || (kind.shape == Shape::Long && (c == '\n' || c == '\t')))
            && (kind.optional || !trimmed.is_empty())
            && trimmed.chars().count() <= kind.chars_max;
        match kind.check("field", &value) {
            Ok(kept) => {
                prop_assert!(ok, "accepted {value:?}");
                prop_assert_eq!(kept, trimmed);
            }
            Err(e) => {
                prop_assert!(!ok, "refused {value:?}: {e}");
                prop_assert!(e.to_string().contains("field"), "{e}");
            }
        }
    }

    /// Cleaning gives text the rule accepts unchanged (or nothing), and
    /// leaves text the rule accepts as the rule keeps it.
    #[test]
    fn cleaned_text_passes_the_rule(kind in kind(), value in text()) {
        let cleaned = kind.clean(&value);
        prop_assert_eq!(cleaned.is_empty(), Kind::is_blank(&value));
        if !cleaned.is_empty() {
            prop_assert_eq!(kind.check("field", &cleaned), Ok(cleaned.clone()));
        }
        if let Ok(kept) = kind.check("field", &value) {
            prop_assert_eq!(cleaned, kept);
        }
    }
}

#[test]
fn a_count_takes_the_plural_unless_it_is_one() {
    assert_eq!(counted(0u32, "incident"), "0 incidents");
    assert_eq!(counted(1u32, "incident"), "1 incident");
    assert_eq!(counted(2u64, "attempt"), "2 attempts");
}

#[test]
fn known_names_what_there_is_and_stops_at_ten() {
    assert_eq!(known("schedules", []), "there are no schedules");
    assert_eq!(known("schedules", ["primary"]), "the schedules are primary");
    assert_eq!(known("teams", ["payments", "search"]), "the teams are payments, search");
    let many: Vec<String> = (1..=12).map(|n| format!("s{n}")).collect();
    assert_eq!(
        known("schedules", many.iter().map(String::as_str)),
        "the schedules are s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, … (12 in all)"
    );
}
