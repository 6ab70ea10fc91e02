//! Tables, rules and their parts written back in rules-language syntax (`Display`):
//! canonical keywords in [`Field::ALL`] order, defaults left out, values quoted where
//! the parser needs it. Reading the text back gives the same rule.

use std::borrow::Cow;
use std::fmt::{self, Display, Formatter};
use std::time::Duration;

use crate::rules::control::ControlKw;
use crate::rules::field::{Field, Kind};
use crate::rules::lower::template::VARS;
use crate::rules::pattern::Pattern;
use crate::rules::table::*;

/// A value as a rules file needs it written: quoted (`'it''s'`) when it is empty or
/// has `(`, `)`, `'`, a blank or a comma.
pub fn value(v: &str) -> Cow<'_, str> {
    if v.is_empty() || v.contains(['(', ')', '\'', ' ', '\t', ',']) {
        quoted(v).into()
    } else {
        v.into()
    }
}

fn quoted(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn duration(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// A pattern as the value of a text keyword: `/regex/` as it is, a generic pattern
/// quoted when needed — and when it starts with `/`, which would start a regex.
fn pattern(p: &Pattern) -> Cow<'_, str> {
    match p {
        Pattern::Regex(r) => format!("/{}/", r.as_str()).into(),
        Pattern::Literal(t) | Pattern::Glob(t) if t.starts_with('/') => quoted(t).into(),
        Pattern::Literal(t) | Pattern::Glob(t) => value(t),
    }
}

/// Writes items separated by one blank.
struct Items<'a, 'b> {
    f: &'a mut Formatter<'b>,
    first: bool,
}

impl<'a, 'b> Items<'a, 'b> {
    fn new(f: &'a mut Formatter<'b>) -> Self {
        Items { f, first: true }
    }

    fn item(&mut self, keyword: &str, value: impl Display) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.f.write_str(" ")?;
        }
        write!(self.f, "{keyword}({value})")
    }
}

impl Display for Template {
    /// `&DESTQ.parked` (not quoted: see [`value`]).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                TemplatePart::Literal(s) => f.write_str(s)?,
                TemplatePart::Var(v) => {
                    let name = VARS.iter().find(|(_, x)| x == v).map_or("?", |(n, _)| n);
                    write!(f, "&{name}")?
                }
            }
        }
        Ok(())
    }
}

fn write_patterns(p: &Patterns, out: &mut Items) -> fmt::Result {
    for field in Field::ALL {
        let kw = field.keyword();
        match field.kind() {
            Kind::Text(_) | Kind::AnyText(..) => {
                if let Some(pat) = p.text(field) {
                    out.item(kw, pattern(pat))?;
                }
            }
            Kind::Flag(_) => {
                if let Some(yes) = p.persist {
                    out.item(kw, if yes { "YES" } else { "NO" })?;
                }
            }
            Kind::Header => {
                for (name, pat) in &p.headers {
                    let text = format!("{name}={}", pat.source());
                    match pat {
                        // The parser reads `name=/regex/` unquoted only.
                        Pattern::Regex(_) => out.item(kw, text)?,
                        // A pattern starting with `/` would be read as a regex.
                        _ if pat.source().starts_with('/') => out.item(kw, quoted(&text))?,
                        _ => out.item(kw, value(&text))?,
                    }
                }
            }
            Kind::Size => match p.size {
                Some(SizeBound::Greater(n)) => out.item(kw, format_args!(">{n}"))?,
                Some(SizeBound::Less(n)) => out.item(kw, format_args!("<{n}"))?,
                None => {}
            },
        }
    }
    if let Some(n) = &p.never {
        out.item(n.keyword, value(&n.value))?;
    }
    Ok(())
}

fn write_action(action: &Action, out: &mut Items) -> fmt::Result {
    match action {
        Action::Retry(r) => {
            out.item("ACTION", "RETRY")?;
            match r.limit {
                Some(n) => out.item("RETRY", n)?,
                None => out.item("RETRY", "*")?,
            }
            let d = &r.delay;
            if d.steps != [Duration::ZERO] {
                let steps: Vec<String> = d.steps.iter().map(|s| duration(*s).to_string()).collect();
                out.item("DELAY", steps.join(","))?;
            }
            if d.backoff != 1.0 {
                out.item("BACKOFF", d.backoff)?;
            }
            if d.max != DelaySchedule::default_max(&d.steps) {
                out.item("MAXDELAY", duration(d.max))?;
            }
            if r.put_authority != PutAuthority::Def {
                out.item("PUTAUT", r.put_authority.name())?;
            }
        }
        Action::Forward(fw) => {
            out.item("ACTION", "FWD")?;
            match &fw.target {
                ForwardTarget::Queue(q) => out.item("FWDQ", value(&q.to_string()))?,
                ForwardTarget::Exchange {
                    exchange,
                    routing_key,
                } => {
                    out.item("FWDEX", value(&exchange.to_string()))?;
                    if let Some(k) = routing_key {
                        out.item("FWDRKEY", value(&k.to_string()))?;
                    }
                }
            }
            if !fw.keep_headers {
                out.item("HEADER", "NO")?;
            }
            if fw.put_authority != PutAuthority::Def {
                out.item("PUTAUT", fw.put_authority.name())?;
            }
        }
        Action::Discard { archive } => {
            out.item("ACTION", "DISCARD")?;
            if let Some(a) = archive {
                out.item("ARCHIVE", value(&a.display().to_string()))?;
            }
        }
        Action::Leave => out.item("ACTION", "IGNORE")?,
    }
    Ok(())
}

impl Display for Patterns {
    /// `DESTQ(orders.*) REASON(maxlen)`; empty for a catch-all.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_patterns(self, &mut Items::new(f))
    }
}

impl Display for Action {
    /// `ACTION(RETRY) RETRY(5) DELAY(1s) BACKOFF(2)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_action(self, &mut Items::new(f))
    }
}

impl Display for Rule {
    /// The patterns, then the action: `DESTQ(orders.*) ACTION(IGNORE)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut out = Items::new(f);
        write_patterns(&self.patterns, &mut out)?;
        write_action(&self.action, &mut out)
    }
}

impl Display for Control {
    /// `INPUTQ(orders.dlq) WAIT(NO)`: the keywords whose value is not the default; empty
    /// when none is.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut out = Items::new(f);
        for kw in ControlKw::ALL {
            if let Some(v) = (kw.info().write)(self) {
                out.item(kw.name(), v)?;
            }
        }
        Ok(())
    }
}

impl Display for Table {
    /// A rules file: the control data on the first line (when not all default), then
    /// one rule per line.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.control != Control::default() {
            writeln!(f, "{}", self.control)?;
        }
        for rule in &self.rules {
            writeln!(f, "{rule}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::check_source;
    use crate::rules::table::*;

    fn table(source: &str) -> Table {
        let c = check_source("t", source);
        c.table
            .unwrap_or_else(|| panic!("{source:?} has errors: {:?}", c.diagnostics))
    }

    /// The rules of a table without their lines (a table written back puts each rule
    /// on a line of its own).
    fn meaning(t: &Table) -> (Control, Vec<(Patterns, Action)>) {
        let rules = t
            .rules
            .iter()
            .map(|r| (r.patterns.clone(), r.action.clone()));
        (t.control.clone(), rules.collect())
    }

    /// `source` parses; written back, it reads `want`; that parses to the same table.
    fn round_trip(source: &str, want: &str) {
        let first = table(source);
        let text = first.to_string();
        assert_eq!(text.trim_end(), want, "{source:?}");
        assert_eq!(
            meaning(&table(&text)),
            meaning(&first),
            "{source:?} → {text:?}"
        );
    }

    #[test]
    fn rules_are_written_back_in_rules_syntax_and_read_the_same() {
        for (source, want) in [
            ("ACTION(IGNORE)", "ACTION(IGNORE)"),
            (
                "reason(maxlen) destq(orders.*) action(retry) retry(5) delay(1s) backoff(2)",
                "DESTQ(orders.*) REASON(maxlen) ACTION(RETRY) RETRY(5) DELAY(1s) BACKOFF(2)",
            ),
            // Every pattern field, with aliases resolved, in Field::ALL order.
            (
                "SIZE(<2KiB) HDR(b=/^(x|y)$/) HDR(a=1) PERSIST(NO) RKEY(k.*) REPLYQ(r) MSGID(m) \
                 FORMAT(text/plain) MSGTYPE(t) USERID(u) APPLNAME(a?) REASON(MQRC_Q_FULL) \
                 DESTEX(/^e(1|2)/) DESTQ(q) ACTION(DISCARD)",
                "DESTQ(q) DESTEX(/^e(1|2)/) REASON(maxlen) APPID(a?) USERID(u) TYPE(t) \
                 CONTENTTYPE(text/plain) MSGID(m) REPLYTO(r) RKEY(k.*) PERSIST(NO) \
                 HDR(b=/^(x|y)$/) HDR(a=1) SIZE(<2048) ACTION(DISCARD)",
            ),
            // Values the parser needs quoted; a literal that would read as a regex.
            (
                "DESTQ('a b') APPID('it''s (x)') MSGID('/m/') HDR('h=/x') ACTION(IGNORE)",
                "DESTQ('a b') APPID('it''s (x)') MSGID('/m/') HDR('h=/x') ACTION(IGNORE)",
            ),
            (
                "DESTQM(QM1) DESTQ(a) ACTION(IGNORE)",
                "DESTQ(a) DESTQM(QM1) ACTION(IGNORE)",
            ),
            // Defaults left out; what is not the default written.
            (
                "ACTION(RETRY) RETRY(1) DELAY(0) BACKOFF(1) PUTAUT(DEF)",
                "ACTION(RETRY) RETRY(1)",
            ),
            (
                "ACTION(RETRY) RETRY(*) DELAY(500ms, 1m 30s) BACKOFF(1.5) MAXDELAY(1h) PUTAUT(ctx)",
                "ACTION(RETRY) RETRY(*) DELAY(500ms,1m 30s) BACKOFF(1.5) MAXDELAY(1h) PUTAUT(CTX)",
            ),
            (
                "ACTION(RETRY) DELAY(0,0)",
                "ACTION(RETRY) RETRY(1) DELAY(0s,0s)",
            ),
            (
                "ACTION(FWD) FWDQ(&destq.parked) HEADER(NO) PUTAUT(CTX)",
                "ACTION(FWD) FWDQ(&DESTQ.parked) HEADER(NO) PUTAUT(CTX)",
            ),
            (
                "ACTION(FWD) FWDEX(e) FWDRKEY(&RKEY-&REPLYQ&&DESTEX-&REASON) HEADER(YES)",
                "ACTION(FWD) FWDEX(e) FWDRKEY(&RKEY-&REPLYTO&&DESTEX-&REASON)",
            ),
            ("ACTION(FWD) FWDQ('a & (c)')", "ACTION(FWD) FWDQ('a & (c)')"),
            (
                "ACTION(PURGE) ARCHIVE(/var/lib/dlqd/purged.jsonl)",
                "ACTION(DISCARD) ARCHIVE(/var/lib/dlqd/purged.jsonl)",
            ),
            // Control data: on a line of its own, defaults left out.
            (
                "INPUTQ(o.dlq) RETRYINT(60) WAIT(YES)\nACTION(IGNORE)",
                "INPUTQ(o.dlq)\nACTION(IGNORE)",
            ),
            (
                "RETRYINT(90) WAIT(1m)\nDESTQ(a) ACTION(IGNORE)\nACTION(DISCARD)",
                "RETRYINT(1m 30s) WAIT(1m)\nDESTQ(a) ACTION(IGNORE)\nACTION(DISCARD)",
            ),
            ("WAIT(no) INPUTQ('d q')", "INPUTQ('d q') WAIT(NO)"),
            (
                "RATE(20/min) INPUTQ(q)\nACTION(IGNORE)",
                "INPUTQ(q) RATE(20/min)\nACTION(IGNORE)",
            ),
        ] {
            round_trip(source, want);
        }
    }

    #[test]
    fn the_example_files_read_the_same_written_back() {
        for source in [
            include_str!("../../rules/spec-example.rules"),
            include_str!("../../rules/runmqdlq-style.rules"),
            include_str!("../../rules/retry-then-park.rules"),
            include_str!("../../rules/purge.rules"),
            include_str!("../../rules/redelivery-schedule.rules"),
        ] {
            let first = table(source);
            let text = first.to_string();
            assert_eq!(meaning(&table(&text)), meaning(&first), "{text}");
        }
    }
}
