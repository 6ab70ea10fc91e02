//! Target templates: `FWDQ(&DESTQ.parked)` parsed into literal text and substitution
//! variables (`&DESTQ`, `&DESTEX`, `&RKEY`, `&REASON`, `&REPLYTO`/`&REPLYQ`), an unknown
//! one reported at its position with the closest known name.

use super::regex::sub_span;
use crate::rules::diagnostic::Diagnostic;
use crate::rules::keywords;
use crate::rules::syntax::{Entry, Value};
use crate::rules::table::{Template, TemplatePart, Var};

/// The substitution names, with runmqdlq's `&REPLYQ` for `&REPLYTO`.
pub(crate) const VARS: &[(&str, Var)] = &[
    ("DESTQ", Var::DestQ),
    ("DESTEX", Var::DestEx),
    ("RKEY", Var::RKey),
    ("REASON", Var::Reason),
    ("REPLYTO", Var::ReplyTo),
    ("REPLYQ", Var::ReplyTo),
];

/// A target name with `&DESTQ`-style substitutions.
pub(super) fn template(
    entry: &Entry,
    kw: &str,
    value: &Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<Template> {
    let text = &value.text;
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut ok = true;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let after_amp = rest.strip_prefix('&').unwrap_or("");
        let letters = after_amp
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_amp.len());
        if rest.starts_with('&') && letters > 0 {
            let name = &after_amp[..letters];
            match VARS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some(&(_, var)) => {
                    if !lit.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(TemplatePart::Var(var));
                }
                None => {
                    let mut d = Diagnostic::error(
                        sub_span(entry, value, i, i + 1 + letters),
                        format!("unknown substitution &{name} in {kw}"),
                    );
                    d = match keywords::closest(name, VARS.iter().map(|(n, _)| *n)) {
                        Some(s) => d.with_help(format!(
                            "did you mean &{s}? a substitution ends at the first character that is not a letter"
                        )),
                        None => d.with_help("substitutions are &DESTQ, &DESTEX, &RKEY, &REASON, &REPLYTO"),
                    };
                    diags.push(d);
                    ok = false;
                }
            }
            i += 1 + letters;
        } else {
            let c = rest.chars().next().unwrap_or('&');
            lit.push(c);
            i += c.len_utf8();
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    ok.then_some(Template { parts })
}
