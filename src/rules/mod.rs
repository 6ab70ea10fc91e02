//! The rules language: syntax (nom, with positions) → lowering (validation, compiled
//! patterns) → the typed [`Table`]; diagnostics as data; lint warnings.

pub mod control;
pub mod diagnostic;
pub mod display;
pub mod field;
pub mod keywords;
pub mod lint;
pub mod lower;
pub mod pattern;
pub mod syntax;
pub mod table;

pub use diagnostic::Diagnostic;
pub use field::Field;
pub use pattern::Pattern;
pub use table::*;

use std::time::{Duration, Instant};

/// The result of checking one rules source: the table when there were no errors,
/// and every diagnostic (errors and warnings) in source order.
#[derive(Debug)]
pub struct Checked {
    pub table: Option<Table>,
    pub diagnostics: Vec<Diagnostic>,
    /// Where the table's parts are written (meaningful with `table`), for diagnostics
    /// about them found elsewhere (`dlqd check --broker`).
    pub positions: Positions,
}

/// Where a table's parts are written: `INPUTQ`'s value, and one [`lower::RuleSpans`]
/// per rule of the table, in order.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    pub input_queue: Option<diagnostic::Span>,
    pub rules: Vec<lower::RuleSpans>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Parse, validate and lint a rules source. `path` is used only in diagnostics.
pub fn check_source(path: &str, source: &str) -> Checked {
    let start = Instant::now();
    let parsed = syntax::parse(source);
    let parse = start.elapsed();
    check_entries(&parsed.entries, parsed.errors, parse, |d| {
        d.path = path.to_string()
    })
}

/// Check an inline rules table given on the command line (`dlqd run --rule`): each
/// string is one entry. Diagnostics are placed at `--rule #N`, line 1 (or the line
/// within that string); rule N's `line` in the table is N when every string is one line.
pub fn check_inline(rules: &[String]) -> Checked {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    // Each string's lines get their own range of line numbers; remember the ranges.
    let mut starts = Vec::new();
    let mut line = 0u32;
    for text in rules {
        starts.push(line);
        let mut parsed = syntax::parse(text);
        for e in &mut parsed.entries {
            e.shift_lines(line);
        }
        for d in &mut parsed.errors {
            d.line += line;
        }
        entries.extend(parsed.entries);
        errors.extend(parsed.errors);
        line += (text.lines().count() as u32).max(1);
    }
    check_entries(&entries, errors, Duration::ZERO, |d| {
        let n = starts.partition_point(|&s| s < d.line).max(1);
        // No --rule strings at all: no start to subtract (and no panic).
        d.line -= starts.get(n - 1).copied().unwrap_or(0);
        d.path = format!("--rule #{n}");
    })
}

/// Lower and lint parsed entries. `parse` is how long parsing took: the time of each
/// phase is logged at debug level (`DLQD_LOG=dlqd::rules=debug`), for the check benchmark.
fn check_entries(
    entries: &[syntax::Entry],
    syntax_errors: Vec<Diagnostic>,
    parse: Duration,
    mut place: impl FnMut(&mut Diagnostic),
) -> Checked {
    let start = Instant::now();
    let lowered = lower::lower(entries);
    let lower = start.elapsed();
    let start = Instant::now();
    let mut diagnostics = syntax_errors;
    diagnostics.extend(lowered.diagnostics);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    if !has_errors {
        diagnostics.extend(lint::lint(
            &lowered.table,
            &lowered.spans,
            lowered.input_queue,
        ));
    }
    let lint = start.elapsed();
    diagnostics.sort_by_key(|d| (d.line, d.column));
    for d in &mut diagnostics {
        place(d);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        rules = lowered.table.rules.len(),
        parse_ms = ms(parse),
        lower_ms = ms(lower),
        lint_ms = ms(lint),
        "rules checked"
    );
    Checked {
        table: (!has_errors).then_some(lowered.table),
        diagnostics,
        positions: Positions {
            input_queue: lowered.input_queue,
            rules: lowered.spans,
        },
    }
}

/// Why a rules file could not be loaded.
///
/// The messages are complete in themselves (the I/O error's words included) and have
/// no `source()`: shown with anyhow's `{:#}` the cause appears once, not twice.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read rules file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// The file has errors; `rendered` holds every diagnostic, rendered with carets.
    #[error("{path} has {errors} error(s):\n{rendered}")]
    Invalid {
        path: String,
        errors: usize,
        rendered: String,
    },
}

/// Read a rules file's text. A file that is not UTF-8 is an [`LoadError::Invalid`]
/// with one error at the line and column of its first bad byte.
pub fn read_source(path: &std::path::Path) -> Result<String, LoadError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| LoadError::Io {
        path: shown.clone(),
        error,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let (d, line) = not_utf8(&shown, bytes, e.utf8_error().valid_up_to());
        LoadError::Invalid {
            errors: 1,
            rendered: d.render(&line),
            path: shown,
        }
    })
}

/// The error for bytes that stop being UTF-8 at `valid` (the first bad byte), and the
/// source line it is on, made readable (bad bytes as U+FFFD).
pub fn not_utf8(path: &str, bytes: &[u8], valid: usize) -> (Diagnostic, String) {
    let valid = valid.min(bytes.len());
    let line_start = bytes[..valid]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = bytes[valid..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| valid + i);
    let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let column = String::from_utf8_lossy(&bytes[line_start..valid])
        .chars()
        .count() as u32
        + 1;
    let bad = bytes.get(valid).copied().unwrap_or(0);
    let mut d = Diagnostic::error(
        diagnostic::Span::new(line, column, 1),
        format!("the rules file is not UTF-8: byte 0x{bad:02X} is not part of a UTF-8 character"),
    )
    .with_help(
        "rules files are UTF-8 text; convert it, e.g. iconv -f LATIN1 -t UTF-8 (a Latin-1 comment is the usual cause)",
    );
    d.path = path.to_string();
    let text = String::from_utf8_lossy(&bytes[line_start..line_end]).into_owned();
    (d, text)
}

/// Read and check a rules file: the table and its warnings, or every error rendered.
pub fn load(path: &std::path::Path) -> Result<(Table, Vec<Diagnostic>), LoadError> {
    let shown = path.display().to_string();
    let source = read_source(path)?;
    let checked = check_source(&shown, &source);
    match checked.table {
        Some(table) => Ok((table, checked.diagnostics)),
        None => Err(LoadError::Invalid {
            errors: checked.errors(),
            rendered: diagnostic::render_all(&checked.diagnostics, &source),
            path: shown,
        }),
    }
}
