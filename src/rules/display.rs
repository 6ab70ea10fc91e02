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

/// A value as a rules file needs it written: quoted (`'it''s'`) when it is empty, has
/// `(`, `)`, `'`, a blank or a comma, or starts with `/` (which would start a regex).
pub fn value(v: &str) -> Cow<'_, str> {
    if v.is_empty() || v.starts_with('/') || v.contains(['(', ')', '\'', ' ', '\t', ',']) {
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
/// quoted when needed.
fn pattern(p: &Pattern) -> Cow<'_, str> {
    match p {
        Pattern::Regex(r) => format!("/{}/", r.as_str()).into(),
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
