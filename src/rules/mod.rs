//! The rules language: syntax (nom, with positions) → lowering (validation, compiled
//! patterns) → the typed [`Table`]; diagnostics as data; lint warnings.

pub mod diagnostic;
pub mod keywords;
pub mod lint;
pub mod lower;
pub mod pattern;
pub mod syntax;
pub mod table;

pub use diagnostic::Diagnostic;
pub use pattern::Pattern;
pub use table::*;

/// The result of checking one rules source: the table when there were no errors,
/// and every diagnostic (errors and warnings) in source order.
#[derive(Debug)]
pub struct Checked {
    pub table: Option<Table>,
    pub diagnostics: Vec<Diagnostic>,
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
    let parsed = syntax::parse(source);
    check_entries(&parsed.entries, parsed.errors, |d| {
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
    check_entries(&entries, errors, |d| {
        let n = starts.partition_point(|&s| s < d.line).max(1);
        // No --rule strings at all: no start to subtract (and no panic).
        d.line -= starts.get(n - 1).copied().unwrap_or(0);
        d.path = format!("--rule #{n}");
    })
}

fn check_entries(
    entries: &[syntax::Entry],
    syntax_errors: Vec<Diagnostic>,
    mut place: impl FnMut(&mut Diagnostic),
) -> Checked {
    let lowered = lower::lower(entries);
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
    diagnostics.sort_by_key(|d| (d.line, d.column));
    for d in &mut diagnostics {
        place(d);
    }
    Checked {
        table: (!has_errors).then_some(lowered.table),
        diagnostics,
    }
}

/// Why a rules file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read rules file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file has errors; `rendered` holds every diagnostic, rendered with carets.
    #[error("{path} has {errors} error(s):\n{rendered}")]
    Invalid {
        path: String,
        errors: usize,
        rendered: String,
    },
}

/// Read and check a rules file: the table and its warnings, or every error rendered.
pub fn load(path: &std::path::Path) -> Result<(Table, Vec<Diagnostic>), LoadError> {
    let shown = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: shown.clone(),
        source,
    })?;
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
