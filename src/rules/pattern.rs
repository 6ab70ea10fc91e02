//! A pattern value: a generic pattern (`*` any run, `?` one character, the rest literal)
//! or, written between slashes, an unanchored regular expression.

use regex::Regex;

/// A compiled pattern from a rules file.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A generic pattern with no `*` or `?`: matches exactly this text.
    Literal(String),
    /// A generic pattern with wildcards, matched whole.
    Glob(String),
    /// `/regex/`, unanchored.
    Regex(Regex),
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Pattern::Literal(a), Pattern::Literal(b)) => a == b,
            (Pattern::Glob(a), Pattern::Glob(b)) => a == b,
            (Pattern::Regex(a), Pattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Pattern {
    /// A generic pattern: `Literal` when it has no wildcard, else `Glob`.
    pub fn generic(text: &str) -> Pattern {
        if text.contains(['*', '?']) {
            Pattern::Glob(text.to_string())
        } else {
            Pattern::Literal(text.to_string())
        }
    }

    /// True when the pattern matches every possible value (`*`, `/.*/`-like are not analysed).
    pub fn matches_everything(&self) -> bool {
        matches!(self, Pattern::Glob(g) if g.chars().all(|c| c == '*'))
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Literal(l) => l == text,
            Pattern::Glob(g) => glob_match(g, text),
            Pattern::Regex(r) => r.is_match(text),
        }
    }

    /// The pattern as an unanchored-safe regex source (globs and literals anchored whole).
    pub fn to_regex_source(&self) -> String {
        match self {
            Pattern::Literal(l) => format!("^{}$", regex::escape(l)),
            Pattern::Glob(g) => {
                let mut s = String::from("^(?s:");
                let mut lit = String::new();
                for c in g.chars() {
                    match c {
                        '*' | '?' => {
                            s.push_str(&regex::escape(&lit));
                            lit.clear();
                            s.push_str(if c == '*' { ".*" } else { "." });
                        }
                        c => lit.push(c),
                    }
                }
                s.push_str(&regex::escape(&lit));
                s.push_str(")$");
                s
            }
            Pattern::Regex(r) => r.as_str().to_string(),
        }
    }

    /// The pattern as written in a rules file (without the keyword).
    pub fn source(&self) -> String {
        match self {
            Pattern::Literal(l) | Pattern::Glob(l) => l.clone(),
            Pattern::Regex(r) => format!("/{}/", r.as_str()),
        }
    }
}

/// Whole-text match of a generic pattern, by characters, without backtracking blow-up.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return glob_match_units(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_match_units(&p, &t, '*', '?')
}

/// The matcher over any unit (bytes for ASCII, chars otherwise), without allocation.
fn glob_match_units<T: PartialEq + Copy>(p: &[T], t: &[T], any: T, one: T) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || (p[pi] != any && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == any {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == any {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders.", true),
            ("orders.*", "orders", false),
            ("?", "a", true),
            ("?", "", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("é?", "éx", true),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
            let re = Regex::new(&Pattern::generic(p).to_regex_source()).unwrap();
            assert_eq!(re.is_match(t), want, "regex of {p} vs {t}");
        }
    }
}
