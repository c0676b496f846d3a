//! Free text: the one set of rules for every text a person or a program
//! writes into Klaxon (titles, descriptions, updates, summaries, reasons,
//! notes, review text, labels), whatever the path it came by (gRPC, the
//! bridge, the HTTP intake, the CLI).
//!
//! A [`Kind`] says what a field may hold: its [`Shape`] (one line, or a long
//! text that keeps newlines and tabs), its bound in characters, and whether
//! it may be left empty. [`Kind::check`] is the rule:
//!
//! 1. the ends are trimmed (Unicode whitespace, which includes newline, tab
//!    and carriage return);
//! 2. what remains holds no control character (Unicode category `Cc`:
//!    U+0000–U+001F and U+007F–U+009F), except newline and tab in long
//!    text;
//! 3. it is not blank, unless the kind is optional;
//! 4. it has at most `chars_max` characters.
//!
//! A refusal is an [`Error::InvalidField`] or [`Error::TooLarge`] naming the
//! field as the caller spells it (`title`, `write_summary`, `note`, …).
//!
//! [`Kind::clean`] is the lenient form for writers that cannot be asked again
//! and must not be refused over a stray byte, such as a monitoring system's
//! webhook: control characters become spaces (in long text, `\r\n` and `\r`
//! become `\n`), the ends are trimmed and an over-long text is cut with an
//! ellipsis. Whatever it returns, [`Kind::check`] accepts, or it is empty
//! (and a required field is then missing).
//!
//! Format characters (Unicode `Cf`, such as bidirectional marks) and line or
//! paragraph separators are not control characters and are allowed: they
//! are part of ordinary text in some languages.
//!
//! In the other direction, [`counted`] writes a count with its noun (`1
//! incident`, `3 incidents`) wherever Klaxon's own text says how many.

use crate::Error;

#[cfg(test)]
pub(crate) mod tests;

/// How a text may be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One line: no control character at all (titles, labels).
    Line,
    /// Several lines: newline and tab are kept, no other control character
    /// (descriptions, updates, summaries, reasons, notes, review text).
    Long,
}

/// What one free-text field may hold. The kinds Klaxon uses are the
/// constants of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// One line or several.
    pub shape: Shape,
    /// The most characters (Unicode scalar values) after trimming.
    pub chars_max: usize,
    /// Whether an empty (or blank) value is accepted, as "not given".
    pub optional: bool,
}

/// A one-line title: of an incident, a report merged into it, an action item.
pub const TITLE: Kind = Kind::line(crate::incident::TITLE_CHARS_MAX);
/// A report's description, which may be left out.
pub const DESCRIPTION: Kind = Kind::long(crate::incident::DESCRIPTION_CHARS_MAX).or_empty();
/// An update's text, a summary, a reason, a validation note, a bridge note.
pub const NOTE: Kind = Kind::long(crate::incident::NOTE_CHARS_MAX);
/// A label's name.
pub const LABEL_NAME: Kind = Kind::line(crate::incident::LABEL_CHARS_MAX);
/// A label's value, which may be empty.
pub const LABEL_VALUE: Kind = Kind::line(crate::incident::LABEL_CHARS_MAX).or_empty();
/// A review's summary or impact statement (Markdown).
pub const REVIEW_TEXT: Kind = Kind::long(crate::review::REVIEW_TEXT_CHARS_MAX);
/// A contributing factor of a review.
pub const FACTOR: Kind = Kind::long(crate::review::FACTOR_CHARS_MAX);
/// An action item's title.
pub const ACTION_ITEM_TITLE: Kind = Kind::line(crate::review::ACTION_ITEM_TITLE_CHARS_MAX);

/// What [`Kind::clean`] puts at the end of a text it had to cut.
pub const ELLIPSIS: char = '…';

impl Kind {
    /// A required one-line text of at most `chars_max` characters.
    pub const fn line(chars_max: usize) -> Kind {
        Kind { shape: Shape::Line, chars_max, optional: false }
    }

    /// A required long text of at most `chars_max` characters.
    pub const fn long(chars_max: usize) -> Kind {
        Kind { shape: Shape::Long, chars_max, optional: false }
    }

    /// The same kind, but an empty value is accepted (as "not given").
    pub const fn or_empty(self) -> Kind {
        Kind { optional: true, ..self }
    }

    /// Whether `c` may appear inside a text of this kind.
    pub fn allows(self, c: char) -> bool {
        !c.is_control() || (self.shape == Shape::Long && (c == '\n' || c == '\t'))
    }

    /// The rule: `value` trimmed, or why it is refused, naming `field`.
    pub fn check(self, field: &'static str, value: &str) -> Result<String, Error> {
        let value = value.trim();
        if let Some((at, c)) = value.chars().enumerate().find(|(_, c)| !self.allows(*c)) {
            let allowed = match self.shape {
                Shape::Line => "one line of text without control characters",
                Shape::Long => "text without control characters other than newline and tab",
            };
            return Err(Error::invalid(
                field,
                format!("must be {allowed}; character {} is U+{:04X}", at + 1, u32::from(c)),
            ));
        }
        if value.is_empty() && !self.optional {
            return Err(Error::invalid(field, "must not be blank"));
        }
        let len = value.chars().count();
        if len > self.chars_max {
            return Err(Error::TooLarge { field, len, max: self.chars_max });
        }
        Ok(value.to_owned())
    }

    /// Makes any text fit this kind: control characters become spaces (in
    /// long text, `\r\n` and a lone `\r` become a newline), the ends are
    /// trimmed, and a text over the bound is cut to `chars_max - 1`
    /// characters plus [`ELLIPSIS`]. The result is empty when nothing but
    /// whitespace and control characters was given; otherwise
    /// [`Kind::check`] accepts it unchanged. A text `check` accepts comes out
    /// as `check` returns it.
    pub fn clean(self, value: &str) -> String {
        let mut cleaned = String::with_capacity(value.len());
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            if self.allows(c) {
                cleaned.push(c);
            } else if c == '\r' && self.shape == Shape::Long {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                cleaned.push('\n');
            } else {
                cleaned.push(' ');
            }
        }
        let trimmed = cleaned.trim();
        if trimmed.chars().count() <= self.chars_max {
            return trimmed.to_owned();
        }
        let mut cut: String = trimmed.chars().take(self.chars_max.saturating_sub(1)).collect();
        cut.truncate(cut.trim_end().len());
        if self.chars_max > 0 {
            cut.push(ELLIPSIS);
        }
        cut
    }

    /// Whether `value` holds nothing but whitespace and control characters:
    /// [`Kind::clean`] would make it empty.
    pub fn is_blank(value: &str) -> bool {
        value.chars().all(|c| c.is_whitespace() || c.is_control())
    }
}

/// `n` and a noun that takes an `s` in the plural, for text Klaxon writes:
/// `1 incident`, `0 incidents`, `3 attempts`.
pub fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Names listed at most by [`known`].
pub const KNOWN_NAMED_MAX: usize = 10;

/// What a refusal of an unknown name adds, so that a typo is seen at once:
/// `the schedules are a, b` (`kinds` is the plural), the first
/// [`KNOWN_NAMED_MAX`] and how many in all beyond that, or `there are no
/// schedules` when `names` is empty.
pub fn known<'a>(kinds: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    match names.len() {
        0 => format!("there are no {kinds}"),
        n if n > KNOWN_NAMED_MAX => format!("the {kinds} are {}, … ({n} in all)", names[..KNOWN_NAMED_MAX].join(", ")),
        _ => format!("the {kinds} are {}", names.join(", ")),
    }
}
