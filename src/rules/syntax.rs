//! The rules file's concrete syntax: a nom parser from source text to entries of
//! `KEYWORD(value)` items, each with its line and column. Parsing never fails: it
//! returns what it could read and every error, recovering per value and per line.
//!
//! Lexical rules (SPEC §3): comment lines start with `*` or `#`; blank lines are
//! ignored; a line ending in `+` continues with the first non-blank character of the
//! next line, one ending in `-` with the next line from its first column. Items are
//! separated by blanks or commas. A value is `(unquoted)`, `('quoted, '' for a quote')`
//! or, for pattern keywords, `(/regex/)` which may contain parentheses.

use nom::bytes::complete::{take_till, take_while, take_while1};
use nom::{IResult, Parser};

use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::field::Field;
use crate::rules::keywords::{self, Kw};

/// A parsed rules source: its entries (one per logical line) and its syntax errors.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub errors: Vec<Diagnostic>,
}

/// One logical line: control data or a rule.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The physical line the entry starts on (1-based).
    pub line: u32,
    pub items: Vec<Item>,
    /// The logical line (continuations joined) and how it maps back to the source.
    pub text: String,
    segments: Vec<Segment>,
    /// The entry ends at a `+`/`-` that ran into a comment or blank line (an error was
    /// reported there), or is the rest that follows one: a missing ACTION or a late
    /// control keyword is not reported again for it.
    pub cut: bool,
}

/// `KEYWORD(value)`.
#[derive(Debug, Clone)]
pub struct Item {
    /// As written.
    pub keyword: String,
    pub keyword_span: Span,
    /// `None` when the value was missing or malformed (an error was reported).
    pub value: Option<Value>,
}

/// A value between parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value: trimmed if unquoted, unescaped if quoted, verbatim for a regex
    /// (slashes included, `\/` kept as written).
    pub text: String,
    pub kind: ValueKind,
    /// Where the value's first character is.
    pub span: Span,
    /// Byte offset of `text` in the entry's logical line (for positions inside it).
    pub offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Plain,
    Quoted,
    /// Contains `/.../` (for `HDR`, after `name=`).
    Regex,
}

/// A piece of a physical line inside a logical line.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Byte offset in the logical line where this piece starts.
    start: usize,
    line: u32,
    /// 1-based character column of the piece's first character.
    column: u32,
}

impl Entry {
    /// The span of bytes `start..end` of the logical line, clipped to one physical line.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let start = floor_char(&self.text, start.min(self.text.len()));
        let end = floor_char(&self.text, end.clamp(start, self.text.len()));
        let i = self
            .segments
            .partition_point(|s| s.start <= start)
            .saturating_sub(1);
        let Some(seg) = self.segments.get(i) else {
            return Span::new(self.line, 1, 1);
        };
        let seg_end = self
            .segments
            .get(i + 1)
            .map_or(self.text.len(), |s| s.start);
        let column = seg.column + self.text[seg.start..start].chars().count() as u32;
        let len = self.text[start..end.min(seg_end).max(start)]
            .chars()
            .count() as u32;
        Span::new(seg.line, column, len)
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Parse a rules source. Never fails; see [`Parsed::errors`].
pub fn parse(source: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let lines: Vec<&str> = source.lines().collect();
    let mut i = 0;
    // The previous entry was cut at a continuation: the next one is its rest.
    let mut after_cut = false;
    while i < lines.len() {
        let first = lines[i];
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('*') || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        // Join continuation lines into one logical line.
        let start_line = i as u32 + 1;
        let mut text = String::new();
        let mut segments = Vec::new();
        let mut from_col = 0usize; // byte offset in the physical line to start from
        let mut cut = std::mem::take(&mut after_cut);
        loop {
            let phys = lines[i];
            let piece = &phys[from_col..];
            let column = phys[..from_col].chars().count() as u32 + 1;
            let stripped = piece.trim_end();
            let (content, cont) = match stripped.chars().last() {
                Some('+') => (&stripped[..stripped.len() - 1], Some('+')),
                Some('-') => (&stripped[..stripped.len() - 1], Some('-')),
                _ => (piece, None),
            };
            segments.push(Segment {
                start: text.len(),
                line: i as u32 + 1,
                column,
            });
            text.push_str(content);
            i += 1;
            match cont {
                // Only blank lines follow: the file ends, as after a last `+`.
                Some(_) if lines[i..].iter().all(|l| l.trim().is_empty()) => break,
                Some(c) if i < lines.len() => {
                    let next = lines[i];
                    let next_trimmed = next.trim_start();
                    let blank = next_trimmed.is_empty();
                    // Inside a value (`DESTQ(orders.+` / `*)`) a leading `*` is content.
                    let comment = (next_trimmed.starts_with('*') || next_trimmed.starts_with('#'))
                        && !in_value(&text);
                    if blank || comment {
                        let at = phys[..from_col + stripped.len() - 1].chars().count() as u32 + 1;
                        parsed.errors.push(
                            Diagnostic::error(
                                Span::new(i as u32, at, 1),
                                format!(
                                    "the `{c}` at the end of line {} continues this entry onto {}, line {}",
                                    i,
                                    if blank { "a blank line" } else { "a comment" },
                                    i + 1
                                ),
                            )
                            .with_help(
                                "a continued entry cannot be followed by a comment or blank line: remove the continuation, or move the comment or blank line out of the entry",
                            ),
                        );
                        cut = true;
                        after_cut = true;
                        break;
                    }
                    from_col = if c == '+' {
                        next.len() - next.trim_start().len()
                    } else {
                        0
                    };
                }
                _ => break,
            }
        }
        let mut entry = Entry {
            line: start_line,
            items: Vec::new(),
            text,
            segments,
            cut,
        };
        let mut errors = Vec::new();
        let items = parse_items(&entry, &mut errors);
        entry.items = items;
        parsed.errors.extend(errors);
        if !entry.items.is_empty() {
            parsed.entries.push(entry);
        } else if cut {
            // Nothing here (a lone `+`): the rest still follows a cut.
            after_cut = true;
        }
    }
    parsed
}

/// True when `text` ends inside a value: an unclosed `(` or quote.
fn in_value(text: &str) -> bool {
    let mut depth = 0usize;
    let mut quoted = false;
    for c in text.chars() {
        if quoted {
            quoted = c != '\'';
            continue;
        }
        match c {
            '\'' if depth > 0 => quoted = true,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    quoted || depth > 0
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn separators(i: &str) -> IResult<&str, &str> {
    take_while(|c| is_blank(c) || c == ',').parse(i)
}

fn blanks(i: &str) -> IResult<&str, &str> {
    take_while(is_blank).parse(i)
}

fn keyword(i: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_').parse(i)
}

/// Parse the items of one logical line, recovering from errors.
fn parse_items(entry: &Entry, errors: &mut Vec<Diagnostic>) -> Vec<Item> {
    let text = entry.text.as_str();
    let off = |rest: &str| text.len() - rest.len();
    let mut items = Vec::new();
    let mut rest = text;
    loop {
        rest = match separators(rest) {
            Ok((r, _)) => r,
            Err(_) => rest,
        };
        if rest.is_empty() {
            break;
        }
        let Ok((after_kw, kw)) = keyword(rest) else {
            // Not a keyword: report and skip to the next separator.
            let start = off(rest);
            let junk_len = rest
                .find(|c: char| is_blank(c) || c == ',')
                .unwrap_or(rest.len());
            let c = rest.chars().next().unwrap_or(' ');
            let mut d = Diagnostic::error(
                entry.span(start, start + c.len_utf8()),
                format!("unexpected `{c}`: expected a keyword"),
            );
            if c == '(' || c == ')' {
                d = d.with_help(
                    "a value in parentheses must follow its keyword, as in DESTQ(orders)",
                );
            }
            errors.push(d);
            rest = &rest[junk_len.max(c.len_utf8())..];
            continue;
        };
        let kw_start = off(rest);
        let keyword_span = entry.span(kw_start, kw_start + kw.len());
        let known = keywords::lookup(kw);
        let (after_blanks, _) = blanks(after_kw).unwrap_or((after_kw, ""));
        if !after_blanks.starts_with('(') {
            if known.is_some() {
                errors.push(
                    Diagnostic::error(keyword_span, format!("{kw} needs a value in parentheses"))
                        .with_help(format!("write {}(...)", kw.to_ascii_uppercase())),
                );
            }
            items.push(Item {
                keyword: kw.to_string(),
                keyword_span,
                value: None,
            });
            rest = after_kw;
            continue;
        }
        let (r, value) = value(entry, known, kw, after_blanks, errors);
        items.push(Item {
            keyword: kw.to_string(),
            keyword_span,
            value,
        });
        rest = r;
    }
    items
}

/// Parse `(value)` starting at the `(`; on error, report it and skip past the value.
fn value<'a>(
    entry: &Entry,
    known: Option<Kw>,
    kw: &str,
    input: &'a str,
    errors: &mut Vec<Diagnostic>,
) -> (&'a str, Option<Value>) {
    let text = entry.text.as_str();
    let off = |rest: &str| text.len() - rest.len();
    let open = off(input);
    let inner = &input[1..];
    let (body, _) = blanks(inner).unwrap_or((inner, ""));
    let upper = kw.to_ascii_uppercase();

    // Where a regex may start: at the value's start, or after `name=` for HDR.
    let regex_start = match known {
        Some(Kw::Pattern(Field::Hdr)) => {
            let name_end = body.find(['=', ')', '(', '\'']).unwrap_or(body.len());
            if body[name_end..].starts_with('=') {
                let after = &body[name_end + 1..];
                let (after, _) = blanks(after).unwrap_or((after, ""));
                after.starts_with('/').then(|| body.len() - after.len())
            } else {
                None
            }
        }
        Some(k) if k.takes_regex() && body.starts_with('/') => Some(0),
        _ => None,
    };

    if let Some(at) = regex_start {
        let slash = &body[at..];
        let mut escaped = false;
        let mut close = None;
        for (i, c) in slash.char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '/' {
                close = Some(i);
                break;
            }
        }
        let Some(close) = close else {
            let s = off(slash);
            errors.push(
                Diagnostic::error(
                    entry.span(s, s + 1),
                    format!("unterminated regular expression in {upper}: no closing `/`"),
                )
                .with_help("a `/` inside a regular expression is written `\\/`"),
            );
            return ("", None);
        };
        let value_text = &body[..at + close + 1];
        let after = &slash[close + 1..];
        let (after, _) = blanks(after).unwrap_or((after, ""));
        let start = off(body);
        if let Some(r) = after.strip_prefix(')') {
            let value = Value {
                text: value_text.to_string(),
                kind: ValueKind::Regex,
                span: entry.span(start, start + value_text.len()),
                offset: start,
            };
            return (r, Some(value));
        }
        let s = off(after);
        errors.push(Diagnostic::error(
            entry.span(s, s + 1),
            format!("expected `)` after the regular expression in {upper}"),
        ));
        return (skip_past_close(after), None);
    }

    if let Some(q) = body.strip_prefix('\'') {
        // Quoted: up to a lone quote; '' is a quote.
        let mut out = String::new();
        let mut chars = q.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if let Some(&(_, '\'')) = chars.peek() {
                    chars.next();
                    out.push('\'');
                } else {
                    end = Some(i);
                    break;
                }
            } else {
                out.push(c);
            }
        }
        let quote_at = off(body);
        let Some(end) = end else {
            errors.push(
                Diagnostic::error(
                    entry.span(quote_at, quote_at + 1),
                    format!("unterminated quote in the value of {upper}"),
                )
                .with_help("close the value with `'`; write `''` for a quote inside it"),
            );
            return ("", None);
        };
        let after = &q[end + 1..];
        let (after, _) = blanks(after).unwrap_or((after, ""));
        if let Some(r) = after.strip_prefix(')') {
            if out.is_empty() {
                errors.push(empty_value(entry, open, off(r), &upper));
                return (r, None);
            }
            let value = Value {
                text: out,
                kind: ValueKind::Quoted,
                span: entry.span(quote_at, off(after)),
                offset: quote_at + 1,
            };
            return (r, Some(value));
        }
        let s = off(after);
        errors.push(Diagnostic::error(
            entry.span(s, s + 1),
            format!("expected `)` after the quoted value of {upper}"),
        ));
        return (skip_past_close(after), None);
    }

    // Unquoted: up to `)`, with no `(` or `'` inside.
    let (after, raw) =
        match take_till::<_, _, ()>(|c| c == ')' || c == '(' || c == '\'').parse(body) {
            Ok(x) => x,
            Err(_) => (body, ""),
        };
    match after.chars().next() {
        Some(')') => {
            let trimmed = raw.trim_end_matches(is_blank);
            if trimmed.is_empty() {
                errors.push(empty_value(entry, open, off(after) + 1, &upper));
                return (&after[1..], None);
            }
            let start = off(body);
            let value = Value {
                text: trimmed.to_string(),
                kind: ValueKind::Plain,
                span: entry.span(start, start + trimmed.len()),
                offset: start,
            };
            (&after[1..], Some(value))
        }
        Some(c) => {
            let s = off(after);
            errors.push(
                Diagnostic::error(
                    entry.span(s, s + 1),
                    format!("`{c}` in the value of {upper}: an unquoted value may not contain `(`, `)` or `'`"),
                )
                .with_help(format!("quote the value: {upper}('...'), writing '' for a quote")),
            );
            (skip_past_close(after), None)
        }
        None => {
            errors.push(
                Diagnostic::error(
                    entry.span(open, open + 1),
                    format!("unterminated parenthesis: the value of {upper} has no closing `)`"),
                )
                .with_help("close the value with `)`"),
            );
            ("", None)
        }
    }
}

fn empty_value(entry: &Entry, open: usize, end: usize, upper: &str) -> Diagnostic {
    Diagnostic::error(
        entry.span(open, end),
        format!("empty value: {upper}() needs a value"),
    )
}

/// Skip past the `)` that closes the current value, counting nested parentheses
/// (or to the end of the line).
fn skip_past_close(s: &str) -> &str {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[i + 1..];
                }
            }
            _ => {}
        }
    }
    ""
}

impl Entry {
    /// Move the entry down by `by` lines (for sources that are pieces of a larger whole).
    pub fn shift_lines(&mut self, by: u32) {
        self.line += by;
        for s in &mut self.segments {
            s.line += by;
        }
        for item in &mut self.items {
            item.keyword_span.line += by;
            if let Some(v) = &mut item.value {
                v.span.line += by;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact dump: `KW@l:c=value@l:c` per item (`q'…'` quoted, `re…` regex,
    /// `-` no value), entries separated by ` | `, then `!l:c+len message` per error.
    fn dump(source: &str) -> String {
        let p = parse(source);
        let mut out = Vec::new();
        for e in &p.entries {
            let items: Vec<String> = e
                .items
                .iter()
                .map(|i| {
                    let k = format!(
                        "{}@{}:{}",
                        i.keyword, i.keyword_span.line, i.keyword_span.column
                    );
                    match &i.value {
                        None => format!("{k}=-"),
                        Some(v) => {
                            let t = match v.kind {
                                ValueKind::Plain => v.text.clone(),
                                ValueKind::Quoted => format!("q'{}'", v.text),
                                ValueKind::Regex => format!("re{}", v.text),
                            };
                            format!("{k}={t}@{}:{}", v.span.line, v.span.column)
                        }
                    }
                })
                .collect();
            out.push(format!("L{} {}", e.line, items.join(" ")));
        }
        let mut s = out.join(" | ");
        for d in &p.errors {
            s.push_str(&format!(
                " !{}:{}+{} {}",
                d.line, d.column, d.len, d.message
            ));
        }
        s
    }

    fn check(input: &str, expected: &str) {
        assert_eq!(dump(input), expected, "input: {input:?}");
    }

    #[test]
    fn parses() {
        let cases: &[(&str, &str)] = &[
            (
                "DESTQ(a) ACTION(IGNORE)",
                "L1 DESTQ@1:1=a@1:7 ACTION@1:10=IGNORE@1:17",
            ),
            (
                "destq(a),action(ignore)",
                "L1 destq@1:1=a@1:7 action@1:10=ignore@1:17",
            ),
            (
                "  DESTQ(a) ,, ACTION(X)",
                "L1 DESTQ@1:3=a@1:9 ACTION@1:15=X@1:22",
            ),
            ("DELAY( 1m 30s )", "L1 DELAY@1:1=1m 30s@1:8"),
            ("DESTQ (a)", "L1 DESTQ@1:1=a@1:8"),
            (
                "FWDQ('timeouts(acme)')",
                "L1 FWDQ@1:1=q'timeouts(acme)'@1:6",
            ),
            ("FWDQ('it''s')", "L1 FWDQ@1:1=q'it's'@1:6"),
            ("FWDQ( ' a ' )", "L1 FWDQ@1:1=q' a '@1:7"),
            ("DESTQ(/^a(b|c)$/)", "L1 DESTQ@1:1=re/^a(b|c)$/@1:7"),
            (r"DESTQ(/a\/b/)", r"L1 DESTQ@1:1=re/a\/b/@1:7"),
            ("HDR(x-t=/a(b)/)", "L1 HDR@1:1=rex-t=/a(b)/@1:5"),
            ("HDR(x-t=a*)", "L1 HDR@1:1=x-t=a*@1:5"),
            ("FWDQ(/x/)", "L1 FWDQ@1:1=/x/@1:6"),
            (
                "* comment\n\n  # another\nACTION(IGNORE)",
                "L4 ACTION@4:1=IGNORE@4:8",
            ),
            (
                "DESTQ(a) +\n   ACTION(IGNORE)",
                "L1 DESTQ@1:1=a@1:7 ACTION@2:4=IGNORE@2:11",
            ),
            (
                "DESTQ(a) -\n   ACTION(IGNORE)",
                "L1 DESTQ@1:1=a@1:7 ACTION@2:4=IGNORE@2:11",
            ),
            (
                "DESTQ(ab+\n   cd) ACTION(X)",
                "L1 DESTQ@1:1=abcd@1:7 ACTION@2:8=X@2:15",
            ),
            ("DESTQ(ab-\n cd)", "L1 DESTQ@1:1=ab cd@1:7"),
            ("DESTQ(a) +  \n\n", "L1 DESTQ@1:1=a@1:7"),
            (
                "DESTQ(orders.+\n  *) ACTION(X)",
                "L1 DESTQ@1:1=orders.*@1:7 ACTION@2:6=X@2:13",
            ),
            // A continuation into a comment or blank line: one error, at the `+`/`-`;
            // the entry ends there and the rest is an entry of its own.
            (
                "DESTQ(a) +\n* note\n  ACTION(X)",
                "L1 DESTQ@1:1=a@1:7 | L3 ACTION@3:3=X@3:10 !1:10+1 the `+` at the end of line 1 continues this entry onto a comment, line 2",
            ),
            (
                "DESTQ(a) ACTION(X) -\n\nDESTQ(b) ACTION(Y)",
                "L1 DESTQ@1:1=a@1:7 ACTION@1:10=X@1:17 | L3 DESTQ@3:1=b@3:7 ACTION@3:10=Y@3:17 !1:20+1 the `-` at the end of line 1 continues this entry onto a blank line, line 2",
            ),
            (
                "DESTQ(a)\r\nACTION(X)\r\n",
                "L1 DESTQ@1:1=a@1:7 | L2 ACTION@2:1=X@2:8",
            ),
            (
                "DESTQ(é) ACTION(X)",
                "L1 DESTQ@1:1=é@1:7 ACTION@1:10=X@1:17",
            ),
            // Errors, each with its position, and recovery.
            (
                "DESTQ()",
                "L1 DESTQ@1:1=- !1:6+2 empty value: DESTQ() needs a value",
            ),
            (
                "DESTQ(  ) X(a)",
                "L1 DESTQ@1:1=- X@1:11=a@1:13 !1:6+4 empty value: DESTQ() needs a value",
            ),
            (
                "FWDQ('')",
                "L1 FWDQ@1:1=- !1:5+4 empty value: FWDQ() needs a value",
            ),
            (
                "DESTQ(abc",
                "L1 DESTQ@1:1=- !1:6+1 unterminated parenthesis: the value of DESTQ has no closing `)`",
            ),
            (
                "FWDQ('abc)",
                "L1 FWDQ@1:1=- !1:6+1 unterminated quote in the value of FWDQ",
            ),
            (
                "DESTQ(/abc)",
                "L1 DESTQ@1:1=- !1:7+1 unterminated regular expression in DESTQ: no closing `/`",
            ),
            (
                "DESTQ(/a/b) ACTION(X)",
                "L1 DESTQ@1:1=- ACTION@1:13=X@1:20 !1:10+1 expected `)` after the regular expression in DESTQ",
            ),
            (
                "FWDQ('a'b) ACTION(X)",
                "L1 FWDQ@1:1=- ACTION@1:12=X@1:19 !1:9+1 expected `)` after the quoted value of FWDQ",
            ),
            (
                "FWDQ(a(b)) ACTION(X)",
                "L1 FWDQ@1:1=- ACTION@1:12=X@1:19 !1:7+1 `(` in the value of FWDQ: an unquoted value may not contain `(`, `)` or `'`",
            ),
            (
                "DESTQ ACTION(X)",
                "L1 DESTQ@1:1=- ACTION@1:7=X@1:14 !1:1+5 DESTQ needs a value in parentheses",
            ),
            ("FOO ACTION(X)", "L1 FOO@1:1=- ACTION@1:5=X@1:12"),
            (
                ") ACTION(X)",
                "L1 ACTION@1:3=X@1:10 !1:1+1 unexpected `)`: expected a keyword",
            ),
            (
                "DESTQ() +\n  FWDQ(x",
                "L1 DESTQ@1:1=- FWDQ@2:3=- !1:6+2 empty value: DESTQ() needs a value !2:7+1 unterminated parenthesis: the value of FWDQ has no closing `)`",
            ),
            (
                "DESTQ()\nFWDQ('x\nACTION(X)",
                "L1 DESTQ@1:1=- | L2 FWDQ@2:1=- | L3 ACTION@3:1=X@3:8 !1:6+2 empty value: DESTQ() needs a value !2:6+1 unterminated quote in the value of FWDQ",
            ),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }

    #[test]
    fn span_stays_on_its_line() {
        let p = parse("DESTQ(abc-\ndef) ACTION(X)");
        let v = p.entries[0].items[0].value.as_ref().unwrap();
        assert_eq!(v.text, "abcdef");
        // The span starts on line 1 and is clipped to it.
        assert_eq!((v.span.line, v.span.column, v.span.len), (1, 7, 3));
    }
}
