//! Lowering: validate parsed entries and build the typed [`Table`] — keywords resolved
//! (with runmqdlq aliases), values checked and converted, patterns compiled, actions
//! assembled — reporting every error with its position.
//!
//! This file is the driver (which entry is control data, which a rule) and what every
//! entry shares: resolving keywords, refusing duplicates, collecting diagnostics.
//! `control` lowers the control entry, `rule` walks a rule's items, `patterns` and
//! `action` lower their parts, `regex` compiles a pattern with positions for its
//! errors, `values` and `template` parse values, `mq` is runmqdlq compatibility.

mod action;
mod control;
mod mq;
mod patterns;
mod regex;
mod rule;
pub(crate) mod template;
pub mod values;

use std::collections::HashMap;

use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::field::Kind;
use crate::rules::keywords::{self, Class, Kw};
use crate::rules::pattern::LazyRegex;
use crate::rules::syntax::{Entry, Item};
use crate::rules::table::Table;

pub use values::parse_duration;

/// The result of lowering: the table (meaningful only when there are no errors), the
/// diagnostics found, and the positions lint needs.
#[derive(Debug, Default)]
pub struct Lowered {
    pub table: Table,
    pub diagnostics: Vec<Diagnostic>,
    /// One per rule in `table.rules`.
    pub spans: Vec<RuleSpans>,
    /// Where `INPUTQ`'s value is, when given.
    pub input_queue: Option<Span>,
}

/// Where the parts of a rule are written, for warnings about it.
#[derive(Debug, Clone, Default)]
pub struct RuleSpans {
    /// The rule's first keyword.
    pub start: Span,
    /// The `RETRY` keyword.
    pub retry: Option<Span>,
    /// The `FWDQ` value.
    pub fwdq: Option<Span>,
    /// The `DESTQ` value.
    pub destq: Option<Span>,
    /// The `FWDEX` value.
    pub fwdex: Option<Span>,
    /// The `FWDRKEY` value.
    pub fwdrkey: Option<Span>,
    /// The `PUTAUT` value.
    pub putaut: Option<Span>,
}

/// Where lowering puts its diagnostics, with a cache of checked regexes (the same
/// regex written on many rules is checked once, and its clones share one matcher).
#[derive(Default)]
struct Sink {
    diags: Vec<Diagnostic>,
    regexes: HashMap<String, LazyRegex>,
}

impl std::ops::Deref for Sink {
    type Target = Vec<Diagnostic>;
    fn deref(&self) -> &Vec<Diagnostic> {
        &self.diags
    }
}

impl std::ops::DerefMut for Sink {
    fn deref_mut(&mut self) -> &mut Vec<Diagnostic> {
        &mut self.diags
    }
}

/// Lower every entry. The first entry may be control data.
pub fn lower(entries: &[Entry]) -> Lowered {
    let mut out = Lowered::default();
    let mut sink = Sink::default();
    for (index, entry) in entries.iter().enumerate() {
        // The rest of a first entry cut at a continuation is still the first entry.
        let first = index == 0 || (index == 1 && entry.cut && entries[0].cut);
        // runmqdlq's INPUTQM (MQ-only) is control data too: `INPUTQM(QM1)` alone is
        // a control entry, not a rule without an ACTION.
        let is_control = entry.items.iter().any(|it| {
            keywords::lookup(&it.keyword)
                .is_some_and(|k| k.class() == Class::Control || k == Kw::MqOnly("INPUTQM"))
        });
        if is_control {
            control::lower_control(entry, first, &mut out, &mut sink);
        } else {
            rule::lower_rule(entry, &mut out, &mut sink);
        }
    }
    out.diagnostics = std::mem::take(&mut sink.diags);
    out
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.is_error()).count()
}

/// Resolve an item's keyword, reporting an unknown one with a suggestion.
fn resolve(item: &Item, diags: &mut Sink) -> Option<Kw> {
    let kw = keywords::lookup(&item.keyword);
    if kw.is_none() {
        let mut d = Diagnostic::error(
            item.keyword_span,
            format!("unknown keyword {}", item.keyword),
        );
        if let Some(s) = keywords::suggest(&item.keyword) {
            d = d.with_help(format!("did you mean {s}?"));
        }
        diags.push(d);
    }
    kw
}

/// False (and an error) when the keyword was already given in this entry (HDR may
/// repeat).
/// The keywords an entry has given so far, with where: a handful, so a list (a hash
/// map per entry cost more than the lookups it saved).
#[derive(Debug, Default)]
pub(super) struct Seen(Vec<(Kw, Span)>);

impl Seen {
    pub(super) fn get(&self, kw: &Kw) -> Option<&Span> {
        self.0.iter().find(|(k, _)| k == kw).map(|(_, s)| s)
    }

    pub(super) fn contains_key(&self, kw: &Kw) -> bool {
        self.get(kw).is_some()
    }

    /// Records `kw` (not yet seen) at `span`.
    fn insert(&mut self, kw: Kw, span: Span) {
        self.0.push((kw, span));
    }
}

fn check_duplicate(kw: Kw, item: &Item, seen: &mut Seen, diags: &mut Sink) -> bool {
    if matches!(kw, Kw::Pattern(f) if matches!(f.kind(), Kind::Header)) {
        return true;
    }
    if let Some(first) = seen.get(&kw) {
        let written = item.keyword.to_ascii_uppercase();
        let what = if written == kw.name() {
            format!("duplicate keyword {written}")
        } else {
            format!("duplicate keyword {written} (an alias of {})", kw.name())
        };
        diags.push(
            Diagnostic::error(item.keyword_span, what).with_help(format!(
                "{} is already given at column {}; each keyword appears at most once per rule",
                kw.name(),
                first.column
            )),
        );
        return false;
    }
    seen.insert(kw, item.keyword_span);
    true
}

#[cfg(test)]
mod tests;
