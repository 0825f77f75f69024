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

use crate::ApiError;

/// A reason, a title, a name: what fits on one line.
pub const LINE: usize = 200;
/// A comment, a description, notes.
pub const NOTE: usize = 4_000;

/// Characters that reorder how text is shown.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Why `text` is not a valid line (or note, with `lines`) of at most `max`
/// characters, if it is not.
pub fn problem(text: &str, max: usize, lines: bool) -> Option<String> {
    let count = text.chars().count();
    if count > max {
        return Some(format!("at most {max} characters, got {count}"));
    }
    let allowed = |c: char| lines && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| (c.is_control() && !allowed(c)) || is_bidi_control(c)) {
        let what = if lines { "line breaks and tabs" } else { "nothing" };
        return Some(format!("no control or direction-override characters (of those, {what} allowed)"));
    }
    None
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
                match problem(&text, N, $lines) {
                    Some(why) => Err(serde::de::Error::custom(why)),
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
        Some(why) => Err(ApiError::bad_request(format!("`{field}`: {why}"))),
        None => Ok(()),
    }
}

/// Checks `text` as a [`Note`] of at most `max` characters.
pub fn note(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    match problem(text, max, true) {
        Some(why) => Err(ApiError::bad_request(format!("`{field}`: {why}"))),
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
        return Err(ApiError::bad_request("`locale`: a language tag such as zh-CN or en, at most 35 characters"));
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
    let refuse = |why: &str| Err(ApiError::bad_request(format!("`file_name`: {why}")));
    if name.is_empty() || name.chars().count() > 255 {
        return refuse("1 to 255 characters");
    }
    if let Some(why) = problem(&name, 255, false) {
        return refuse(&why);
    }
    if name.contains(['/', '\\', '<', '>', ':', '"', '|', '?', '*']) {
        return refuse(r#"none of / \ < > : " | ? *"#);
    }
    if name.ends_with('.') {
        return refuse("a name may not end in a dot");
    }
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    if DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return refuse("a device name (CON, NUL, COM1, …) is not a file name");
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
        assert!(problem(&"字".repeat(201), 200, false).unwrap().contains("at most 200 characters, got 201"));
        assert!(problem("a\nb", LINE, false).is_some());
        assert!(problem("a\nb\tc", NOTE, true).is_none());
        assert!(problem("a\0b", NOTE, true).is_some());
        assert!(problem("invoice\u{202E}fdp.exe", NOTE, true).is_some());
        let line: Result<Line<5>, _> = serde_json::from_str(r#""toolong""#);
        assert!(line.unwrap_err().to_string().contains("at most 5 characters"));
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
