//! Text from producers (message ids, header values, queue names) made safe for one log
//! line or one report line: control characters, line and paragraph separators and
//! bidirectional overrides are escaped, so a value can neither end a line nor forge one.

use std::borrow::Cow;
use std::fmt;

/// True for a character that must not reach a terminal or a log line as it is.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{2028}' | '\u{2029}'              // line / paragraph separator
            | '\u{200E}' | '\u{200F}'            // LRM / RLM
            | '\u{202A}'..='\u{202E}'            // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}'            // bidi isolates
            | '\u{FEFF}')
}

/// `s` with every unsafe character written as `\u{..}` (or `\n`, `\t`, ...). A backslash
/// is written `\\` so that an escape in the output always means one in the input.
/// Borrowed when nothing needs escaping (the common case costs no allocation).
pub fn text(s: &str) -> Cow<'_, str> {
    if !needs_text_escape(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// True when [`text`] changes `s`: a byte at a time while the text is ASCII (printable
/// ASCII other than `\\` is safe), by characters from the first non-ASCII byte on.
fn needs_text_escape(s: &str) -> bool {
    for (i, b) in s.bytes().enumerate() {
        if b >= 0x80 {
            return s[i..].chars().any(|c| is_unsafe(c) || c == '\\');
        }
        if b < 0x20 || b == 0x7f || b == b'\\' {
            return true;
        }
    }
    false
}

/// `s` with every unsafe character escaped and nothing else changed (backslashes
/// kept): for a whole formatted log line, whose own escapes must stay as they are.
pub fn unsafe_chars(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes that may not be UTF-8: UTF-8 text escaped as [`text`] does, anything else
/// as `\xNN` escapes.
pub fn bytes(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => text(s),
        Err(_) => Cow::Owned(b.escape_ascii().to_string()),
    }
}

/// A `Display` of [`text`], for log fields: `message_id = %Escaped(id)`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text(self.0))
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(text("order-42 é"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_forged_log_line_stays_on_one_line() {
        let forged = "x\n2026-12-02T00:00:00Z  INFO dlqd: done\x1b[2K\u{202E}";
        let shown = text(forged);
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert_eq!(
            shown,
            "x\\n2026-12-02T00:00:00Z  INFO dlqd: done\\u{1b}[2K\\u{202e}"
        );
    }

    #[test]
    fn a_backslash_is_doubled_so_escapes_are_unambiguous() {
        assert_eq!(text("a\\nb"), "a\\\\nb");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_hex_escaped() {
        assert_eq!(bytes(b"id\xff\n"), "id\\xff\\n");
    }
}
