//! Errors and warnings about a rules file, as data, rendered `file:line:col` with a caret.

use std::fmt::Write as _;

/// One error or warning, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    pub message: String,
    /// How many characters of the line the problem covers (at least 1).
    pub len: u32,
    /// A suggestion, printed as `help: ...`.
    pub help: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A place in a source: 1-based line and column (in characters) and a length in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub len: u32,
}

impl Span {
    pub fn new(line: u32, column: u32, len: u32) -> Span {
        Span {
            line,
            column,
            len: len.max(1),
        }
    }
}

impl Diagnostic {
    /// An error at `span`; the path is filled in by whoever knows it.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, span, message)
    }

    /// A warning at `span`.
    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, span, message)
    }

    fn new(severity: Severity, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity,
            path: String::new(),
            line: span.line.max(1),
            column: span.column.max(1),
            message: message.into(),
            len: span.len.max(1),
            help: None,
        }
    }

    /// Adds a `help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The first line: `path:line:col: error: message`.
    pub fn headline(&self) -> String {
        format!(
            "{}:{}:{}: {}: {}",
            self.path,
            self.line,
            self.column,
            self.severity.as_str(),
            self.message
        )
    }

    /// The diagnostic as text, rustc-style: the headline, the source line, a caret line
    /// under the span, and the help if any. Ends with a newline.
    ///
    /// ```text
    /// rules/orders.rules:4:16: error: unknown keyword DESTQQ
    ///   4 | REASON(maxlen) DESTQQ(orders.*) ACTION(RETRY)
    ///     |                ^^^^^^
    ///     = help: did you mean DESTQ?
    /// ```
    pub fn render(&self, source_line: &str) -> String {
        let source_line = source_line.trim_end_matches(['\r', '\n']);
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline());
        let _ = writeln!(out, "  {number} | {source_line}");
        // Pad with the line's own tabs so the caret lines up however tabs are shown.
        let mut pad = String::new();
        let mut chars = source_line.chars();
        for _ in 1..self.column {
            match chars.next() {
                Some('\t') => pad.push('\t'),
                _ => pad.push(' '),
            }
        }
        let line_chars = source_line.chars().count() as u32;
        let room = (line_chars + 1).saturating_sub(self.column).max(1);
        let carets = "^".repeat(self.len.clamp(1, room) as usize);
        let _ = writeln!(out, "  {gutter} | {pad}{carets}");
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  {gutter} = help: {help}");
        }
        out
    }
}

/// Renders every diagnostic against its source, in order.
pub fn render_all(diagnostics: &[Diagnostic], source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for d in diagnostics {
        let line = lines
            .get((d.line as usize).saturating_sub(1))
            .copied()
            .unwrap_or("");
        out.push_str(&d.render(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let mut d = Diagnostic::error(Span::new(4, 16, 6), "unknown keyword DESTQQ")
            .with_help("did you mean DESTQ?");
        d.path = "rules/orders.rules".into();
        let got = d.render("REASON(maxlen) DESTQQ(orders.*) ACTION(RETRY)");
        assert_eq!(
            got,
            "rules/orders.rules:4:16: error: unknown keyword DESTQQ\n  \
             4 | REASON(maxlen) DESTQQ(orders.*) ACTION(RETRY)\n    \
             |                ^^^^^^\n    \
             = help: did you mean DESTQ?\n"
        );
    }

    #[test]
    fn caret_past_end_of_line_is_one_wide() {
        let d = Diagnostic::error(Span::new(1, 6, 9), "x");
        assert!(d.render("DESTQ").contains("|      ^\n"));
    }
}
