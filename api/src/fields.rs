//! Limits on the free text a request carries, field by field (issue 27,
//! L5): without them a transfer reason or a locale was bounded only by the
//! 64 KiB body, and stored for ever in the log.
//!
//! - [`Line`]: one line (a reason, a title, a name): at most `N`
//!   characters, no control characters, and no bidirectional-override
//!   characters (U+202A–U+202E, U+2066–U+2069), which make text display in
//!   another order than it is stored.
//! - [`Note`]: free text of at most `N` characters that may hold line breaks
//!   and tabs, otherwise as [`Line`].
//! - [`locale`]: a BCP 47 language tag such as `zh-CN`.
//! - [`file_name`]: an attachment's name, normalised (NFC, trimmed) and
//!   refused when it could be taken for something else (a path, a device
//!   name on Windows, a name ending in a dot or a space).
//!
//! [`Line`] and [`Note`] check while the body is read, so a request with a
//! field out of bounds is refused (400, naming the field) before anything
//! else is done.

use std::fmt;

use serde::{Deserialize, Deserializer};

use witness_domain::Refusal;

use crate::ApiError;

/// A reason, a title, a name: what fits on one line.
pub const LINE: usize = 200;
/// A comment, a description, notes.
pub const NOTE: usize = 4_000;

/// Characters that reorder how text is shown.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// What stands for the field's name in [`problem`]'s refusals until the
/// caller names it ([`Refusal::with`]).
const FIELD: &str = "{field}";

/// Why `text` is not a valid line (or note, with `lines`) of at most `max`
/// characters, if it is not: a refusal whose `{field}` the caller sets.
pub fn problem(text: &str, max: usize, lines: bool) -> Option<Refusal> {
    Problem::find(text, max, lines).map(|p| p.refusal())
}

/// What [`problem`] finds; it travels through serde (whose errors are
/// text) as JSON between markers no one types, to [`from_serde`].
#[derive(serde::Serialize, serde::Deserialize)]
enum Problem {
    TooLong { max: usize, count: usize },
    Characters { lines: bool },
}

impl Problem {
    fn refusal(&self) -> Refusal {
        match *self {
            Problem::TooLong { max, count } => refusal!(
                "too_long",
                "`{field}`: at most {max} characters, got {count}",
                field = FIELD,
                max = max,
                count = count
            ),
            Problem::Characters { lines: true } => refusal!(
                "control_characters_note",
                "`{field}`: no control or direction-override characters (line breaks and tabs are allowed)",
                field = FIELD
            ),
            Problem::Characters { lines: false } => {
                refusal!("control_characters", "`{field}`: no control or direction-override characters", field = FIELD)
            }
        }
    }

    fn find(text: &str, max: usize, lines: bool) -> Option<Problem> {
        let count = text.chars().count();
        if count > max {
            return Some(Problem::TooLong { max, count });
        }
        let allowed = |c: char| lines && matches!(c, '\n' | '\r' | '\t');
        let bad = text.chars().any(|c| (c.is_control() && !allowed(c)) || is_bidi_control(c));
        bad.then_some(Problem::Characters { lines })
    }
}

/// The [`problem`] a JSON body's field had (`path`, as serde names it),
/// if serde's `message` carries one.
pub(crate) fn from_serde(path: &str, message: &str) -> Option<Refusal> {
    let json = message.split('\u{1}').nth(1)?;
    let problem: Problem = serde_json::from_str(json).ok()?;
    Some(problem.refusal().with("field", path))
}

macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $lines:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Default)]
        pub struct $name<const N: usize>(pub String);

        impl<const N: usize> $name<N> {
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl<const N: usize> fmt::Debug for $name<N> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl<const N: usize> std::ops::Deref for $name<N> {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl<'de, const N: usize> Deserialize<'de> for $name<N> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                match Problem::find(&text, N, $lines) {
                    Some(problem) => {
                        let json = serde_json::to_string(&problem).expect("a problem serialises");
                        Err(serde::de::Error::custom(format!("\u{1}{json}\u{1}")))
                    }
                    None => Ok(Self(text)),
                }
            }
        }
    };
}

bounded!(
    /// One line of at most `N` characters (see the module docs).
    Line,
    false
);
bounded!(
    /// Free text of at most `N` characters, line breaks allowed (see the
    /// module docs).
    Note,
    true
);

/// Checks `text` as a [`Line`] of at most `max` characters, for a field
/// that arrives inside a type of the event schemas.
pub fn line(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    match problem(text, max, false) {
        Some(refusal) => Err(ApiError::bad_request(refusal.with("field", field))),
        None => Ok(()),
    }
}

/// Checks `text` as a [`Note`] of at most `max` characters.
pub fn note(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    match problem(text, max, true) {
        Some(refusal) => Err(ApiError::bad_request(refusal.with("field", field))),
        None => Ok(()),
    }
}

/// A BCP 47 language tag: subtags of 1 to 8 letters or digits joined by
/// `-`, the first of letters, at most 35 characters (`zh-CN`, `zh-Hans-CN`,
/// `en`).
pub fn locale(text: &str) -> Result<(), ApiError> {
    let mut subtags = text.split('-');
    let first = subtags.next().unwrap_or_default();
    let valid = text.len() <= 35
        && (2..=8).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && subtags.all(|s| (1..=8).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()));
    if !valid {
        return Err(ApiError::bad_request(refusal!(
            "locale_tag",
            "`locale`: a language tag such as zh-CN or en, at most 35 characters"
        )));
    }
    Ok(())
}

/// Names Windows gives to devices, whatever the extension.
const DEVICES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// An attachment's file name as stored: NFC, white space trimmed; refused
/// when empty, longer than 255 characters, with a control or
/// direction-override character, a slash, backslash or any of `<>:"|?*`,
/// ending in a dot, or a Windows device name (`CON`, `nul.txt`, …).
pub fn file_name(name: &str) -> Result<String, ApiError> {
    use unicode_normalization::UnicodeNormalization;
    let name: String = name.trim().nfc().collect();
    let refuse = |refusal: Refusal| Err(ApiError::bad_request(refusal));
    if name.is_empty() || name.chars().count() > 255 {
        return refuse(refusal!("file_name_length", "`file_name`: 1 to 255 characters"));
    }
    if let Some(refusal) = problem(&name, 255, false) {
        return refuse(refusal.with("field", "file_name"));
    }
    if name.contains(['/', '\\', '<', '>', ':', '"', '|', '?', '*']) {
        return refuse(refusal!("file_name_characters", "`file_name`: none of / \\ < > : \" | ? *"));
    }
    if name.ends_with('.') {
        return refuse(refusal!("file_name_dot", "`file_name`: a name may not end in a dot"));
    }
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    if DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return refuse(refusal!(
            "file_name_device",
            "`file_name`: a device name (CON, NUL, COM1, …) is not a file name"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_notes_are_bounded_and_free_of_control_and_override_characters() {
        assert!(problem("转人工 please", LINE, false).is_none());
        assert!(problem(&"字".repeat(200), 200, false).is_none(), "characters, not bytes");
        assert!(problem(&"字".repeat(201), 200, false)
            .unwrap()
            .to_string()
            .contains("at most 200 characters, got 201"));
        assert!(problem("a\nb", LINE, false).is_some());
        assert!(problem("a\nb\tc", NOTE, true).is_none());
        assert!(problem("a\0b", NOTE, true).is_some());
        assert!(problem("invoice\u{202E}fdp.exe", NOTE, true).is_some());
        let line: Result<Line<5>, _> = serde_json::from_str(r#""toolong""#);
        let refusal = from_serde("reason", &line.unwrap_err().to_string()).expect("the refusal, through serde");
        assert_eq!(refusal.to_string(), "`reason`: at most 5 characters, got 7");
        assert_eq!(from_serde("reason", "expected a string"), None, "serde's own errors are not ours");
        let note: Note<10> = serde_json::from_str(r#""ok\nfine""#).unwrap();
        assert_eq!(&*note, "ok\nfine");
    }

    #[test]
    fn locales_are_language_tags() {
        for ok in ["zh-CN", "en", "zh-Hans-CN", "en-GB"] {
            assert!(locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "x", "zh_CN", "zh-", "<script>", &"zh-CN".repeat(10), "12-CN"] {
            assert!(locale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_are_normalised_and_refused_when_they_could_deceive() {
        assert_eq!(file_name("  账单.pdf ").unwrap(), "账单.pdf");
        // "é" as e and a combining accent becomes one character.
        assert_eq!(file_name("cafe\u{301}.txt").unwrap(), "caf\u{e9}.txt");
        for bad in [
            "",
            "a\0b.txt",
            "invoice\u{202E}fdp.exe",
            "CON",
            "con.txt",
            "Nul.tar.gz",
            "LPT1",
            "../x",
            "a\\b",
            "x.",
            "a:b",
        ] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
        assert!(file_name(&"x".repeat(256)).is_err());
        assert!(file_name("CONTRACT.pdf").is_ok(), "only the whole stem is a device");
    }
}
