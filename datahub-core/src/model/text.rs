//! Character classes shared by the field rules: control characters, bidirectional text controls
//! and invisible formatting characters.
//!
//! Each check returns an `InvalidInput` error naming the field and the class of character, never
//! the character or the text itself.

use crate::{Error, Result};

/// Which otherwise refused characters a text field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controls {
    /// No control characters at all.
    None,
    /// Newline (`\n`) and tab, for multi-line free text such as a description.
    NewlineAndTab,
}

/// Whether `c` is a bidirectional text control (Trojan Source, CVE-2021-42574): embeddings,
/// overrides, isolates and the implicit direction marks.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Whether `c` renders as nothing (or as blank) while being part of the text: zero-width
/// characters, the byte-order mark, soft hyphen, word joiner and invisible operators, Unicode tag
/// characters, interlinear annotations and the Hangul fillers used for look-alike names.
///
/// This is Unicode's format category (Cf) minus the bidi controls, which have their own message,
/// plus the blank "letters" known from spoofing; variation selectors (emoji) stay allowed.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Whether `c` is a control character in the wide sense: C0 and C1 controls (which include
/// DEL and NEL), the line and paragraph separators, and the noncharacters U+FFFE and U+FFFF.
pub(crate) fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FFFE}' | '\u{FFFF}')
}

/// Refuses control characters (except those `allowed`), bidi controls and invisible characters.
pub(crate) fn check_chars(field: &'static str, s: &str, allowed: Controls) -> Result<()> {
    for c in s.chars() {
        if is_control(c) {
            let ok = allowed == Controls::NewlineAndTab && matches!(c, '\n' | '\t');
            if !ok {
                return Err(Error::invalid(
                    field,
                    match allowed {
                        Controls::None => "must not contain control characters or line breaks",
                        Controls::NewlineAndTab => {
                            "must not contain control characters other than newline and tab"
                        }
                    },
                ));
            }
        } else if is_bidi_control(c) {
            return Err(Error::invalid(
                field,
                "must not contain bidirectional text control characters",
            ));
        } else if is_invisible(c) {
            return Err(Error::invalid(
                field,
                "must not contain invisible formatting characters (e.g. zero-width spaces)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for c in ['\u{202E}', '\u{2066}', '\u{200F}', '\u{061C}'] {
            assert!(is_bidi_control(c), "{c:?}");
            assert!(!is_invisible(c), "{c:?}");
        }
        for c in ['\u{200B}', '\u{FEFF}', '\u{00AD}', '\u{E0041}', '\u{3164}'] {
            assert!(is_invisible(c), "{c:?}");
        }
        for c in ['\0', '\u{7F}', '\u{85}', '\u{2028}', '\u{FFFF}'] {
            assert!(is_control(c), "{c:?}");
        }
        for c in ['a', 'é', 'ß', '日', '\u{FE0F}', ' '] {
            assert!(
                !is_control(c) && !is_bidi_control(c) && !is_invisible(c),
                "{c:?}"
            );
        }
    }

    #[test]
    fn newline_and_tab_only_where_allowed() {
        assert!(check_chars("f", "a\nb\tc", Controls::NewlineAndTab).is_ok());
        assert!(check_chars("f", "a\rb", Controls::NewlineAndTab).is_err());
        assert!(check_chars("f", "a\nb", Controls::None).is_err());
        let e = check_chars("f", "x\u{202E}y", Controls::None).unwrap_err();
        assert_eq!(e.field(), Some("f"));
        assert!(e.message().contains("bidirectional"));
    }
}
