//! Whether a RabbitMQ permission regex allows a resource: matched unanchored against
//! the resource's name (as RabbitMQ's `re:run` does), `""` allowing nothing (RabbitMQ
//! reads it as `^$`). The default exchange's resource name is `amq.default`.
//!
//! Also the `rabbitmqctl set_permissions` to suggest: it replaces the user's three
//! regexes, so the suggestion keeps what they allow now and adds what is missing.

use super::snapshot::Access;

/// The resource name RabbitMQ checks for the default exchange.
pub const DEFAULT_EXCHANGE: &str = "amq.default";

/// `Some(true)` when `regex` allows `name`, `None` when the regex uses syntax the
/// `regex` crate does not read (a PCRE look-around): then it cannot be judged here.
pub fn allows(regex: &str, name: &str) -> Option<bool> {
    if regex.is_empty() {
        return Some(false);
    }
    regex::Regex::new(regex).ok().map(|re| re.is_match(name))
}

/// One thing dlqd's user needs: a regex alternative, and the names it stands for
/// (already allowed when the current regex allows them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub regex: String,
    pub names: Vec<String>,
}

impl Need {
    /// A single name, escaped.
    pub fn literal(name: &str) -> Need {
        Need {
            regex: escape(name),
            names: vec![name.to_string()],
        }
    }
}

/// What dlqd's user needs, per permission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub configure: Vec<Need>,
    pub write: Vec<Need>,
    pub read: Vec<Need>,
}

impl Needs {
    /// Both sets of needs together (a rules directory's files).
    pub fn merge(&mut self, other: &Needs) {
        for (mine, theirs) in [
            (&mut self.configure, &other.configure),
            (&mut self.write, &other.write),
            (&mut self.read, &other.read),
        ] {
            for n in theirs {
                match mine.iter_mut().find(|m| m.regex == n.regex) {
                    Some(m) => {
                        for name in &n.names {
                            if !m.names.contains(name) {
                                m.names.push(name.clone());
                            }
                        }
                    }
                    None => mine.push(n.clone()),
                }
            }
        }
    }
}

/// `name` as a regex matching only itself: only the metacharacters escaped (no `\-`,
/// which some readers take for an error).
pub fn escape(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `current` widened to allow `needs` too: unchanged when it allows them all,
/// `^(NEEDED)$` when it is empty, else `(CURRENT)|^(NEEDED)$` with only what is missing.
pub fn widen(current: &str, needs: &[Need]) -> String {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|n| {
            !n.names
                .iter()
                .all(|name| allows(current, name) == Some(true))
        })
        .map(|n| n.regex.as_str())
        .collect();
    if missing.is_empty() {
        return current.to_string();
    }
    let needed = format!("^({})$", missing.join("|"));
    if current.is_empty() || current == "^$" {
        needed
    } else {
        format!("({current})|{needed}")
    }
}

/// The `rabbitmqctl set_permissions` that gives `user` on `vhost` what `needs` asks and
/// keeps what `access` allows now.
pub fn grant(vhost: &str, user: &str, access: &Access, needs: &Needs) -> String {
    let (c, w, r) = match access {
        Access::Granted(p) => (p.configure.as_str(), p.write.as_str(), p.read.as_str()),
        _ => ("", "", ""),
    };
    let keeps = if matches!(access, Access::Granted(_)) {
        " (set_permissions replaces the user's permissions: this keeps what they allow now and adds what is missing)"
    } else {
        ""
    };
    format!(
        "rabbitmqctl set_permissions -p {vhost} {user} '{}' '{}' '{}'{keeps}",
        widen(c, &needs.configure),
        widen(w, &needs.write),
        widen(r, &needs.read),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_keeps_the_current_permissions_and_adds_what_is_missing() {
        assert_eq!(escape("a-b.c*"), r"a-b\.c\*");
        let need = |n: &str| Need::literal(n);
        let now = r"^(dlqd\..*|a\.dlq)$";
        let widened = widen(now, &[need("b.dlq"), need("a.dlq")]);
        assert_eq!(widened, r"(^(dlqd\..*|a\.dlq)$)|^(b\.dlq)$");
        for name in ["a.dlq", "b.dlq", "dlqd.left.x"] {
            assert_eq!(allows(&widened, name), Some(true), "{name}");
        }
        assert_eq!(allows(&widened, "bxdlq"), Some(false));
        assert_eq!(widen(".*", &[need("b.dlq")]), ".*", "already allowed");
        assert_eq!(widen("", &[need("b.dlq")]), r"^(b\.dlq)$");
        let mut a = Needs {
            read: vec![need("a.dlq")],
            ..Needs::default()
        };
        a.merge(&Needs {
            read: vec![need("b-1.dlq"), need("a.dlq")],
            ..Needs::default()
        });
        let g = grant("/", "dlqd", &Access::None, &a);
        assert!(
            g.starts_with(r"rabbitmqctl set_permissions -p / dlqd '' '' '^(a\.dlq|b-1\.dlq)$'"),
            "{g}"
        );
    }

    #[test]
    fn unanchored_like_rabbitmq() {
        assert_eq!(allows(".*", "anything"), Some(true));
        assert_eq!(allows("", "x"), Some(false));
        assert_eq!(allows("dlq", "orders.dlq"), Some(true), "unanchored");
        assert_eq!(allows("^dlqd\\..*$", "orders.dlq"), Some(false));
        assert_eq!(
            allows("^(amq\\.default|dlqd\\..*)$", DEFAULT_EXCHANGE),
            Some(true)
        );
        assert_eq!(allows("^(?!x)", "y"), None, "look-ahead");
    }
}
