//! Where a message published to an exchange with a routing key goes, from a
//! [`Snapshot`]'s exchanges and bindings: the default exchange (the queue named by the
//! key), `direct` (equal keys), `fanout` (every binding), `topic` (`*` one word, `#`
//! any number of words), exchange-to-exchange bindings and alternate exchanges
//! followed. A `headers` exchange or a plugin's type cannot be judged without the
//! message: it is reported as unsure.

use std::collections::BTreeSet;

use super::snapshot::{Destination, Snapshot};

/// The queues a publish reaches, and the exchanges on its way whose routing could not
/// be judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routed {
    pub queues: BTreeSet<String>,
    /// `exchange (type)` for each exchange that could not be judged.
    pub unsure: Vec<String>,
}

/// Where a publish to `exchange` with `key` goes. A missing exchange reaches nothing.
pub fn route(snapshot: &Snapshot, exchange: &str, key: &str) -> Routed {
    let mut out = Routed::default();
    let mut seen = BTreeSet::new();
    walk(snapshot, exchange, key, &mut seen, &mut out);
    out
}

fn walk(
    snapshot: &Snapshot,
    exchange: &str,
    key: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Routed,
) {
    if !seen.insert(exchange.to_string()) {
        return;
    }
    let Some(x) = snapshot.exchange(exchange) else {
        return;
    };
    if exchange.is_empty() {
        if snapshot.queue(key).is_some() {
            out.queues.insert(key.to_string());
        }
        return;
    }
    let matches: fn(&str, &str) -> bool = match x.kind.as_str() {
        "direct" => |binding, key| binding == key,
        "fanout" => |_, _| true,
        "topic" => topic_matches,
        other => {
            out.unsure.push(format!("{exchange} ({other})"));
            return;
        }
    };
    let before = out.queues.len();
    let mut any = false;
    for b in snapshot.bindings.iter().filter(|b| b.source == exchange) {
        if !matches(&b.routing_key, key) {
            continue;
        }
        any = true;
        match &b.destination {
            Destination::Queue(q) => {
                out.queues.insert(q.clone());
            }
            Destination::Exchange(e) => walk(snapshot, e, key, seen, out),
        }
    }
    if (!any || out.queues.len() == before)
        && let Some(alt) = &x.alternate
    {
        walk(snapshot, alt, key, seen, out);
    }
}

/// Whether some publish to `exchange` could reach `queue`, whatever its key: a path of
/// bindings (or alternate exchanges) leads there.
pub fn may_reach(snapshot: &Snapshot, exchange: &str, queue: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![exchange.to_string()];
    while let Some(x) = todo.pop() {
        if !seen.insert(x.clone()) {
            continue;
        }
        if x.is_empty() {
            if snapshot.queue(queue).is_some() {
                return true;
            }
            continue;
        }
        let Some(e) = snapshot.exchange(&x) else {
            continue;
        };
        todo.extend(e.alternate);
        for b in snapshot.bindings.iter().filter(|b| b.source == x) {
            match &b.destination {
                Destination::Queue(q) if q == queue => return true,
                Destination::Queue(_) => {}
                Destination::Exchange(e) => todo.push(e.clone()),
            }
        }
    }
    false
}

/// AMQP topic matching: words separated by `.`, `*` one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    };
    let p: Vec<&str> = if pattern.is_empty() { Vec::new() } else { p };
    words_match(&p, &k)
}

fn words_match(p: &[&str], k: &[&str]) -> bool {
    match p.split_first() {
        None => k.is_empty(),
        Some((&"#", rest)) => (0..=k.len()).any(|i| words_match(rest, &k[i..])),
        Some((&w, rest)) => match k.split_first() {
            Some((&kw, krest)) => (w == "*" || w == kw) && words_match(rest, krest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::{Binding, Exchange, Queue};
    use super::*;

    #[test]
    fn topic_words() {
        assert!(topic_matches("a.*.c", "a.b.c"));
        assert!(!topic_matches("a.*.c", "a.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("#", "x.y"));
        assert!(topic_matches("#.c", "a.b.c"));
        assert!(!topic_matches("#.c", "a.b"));
        assert!(topic_matches("orders", "orders"));
        assert!(!topic_matches("orders", "orders.eu"));
        assert!(topic_matches("*.eu.#", "orders.eu"));
    }

    fn snapshot() -> Snapshot {
        let ex = |name: &str, kind: &str, alt: Option<&str>| Exchange {
            name: name.into(),
            kind: kind.into(),
            alternate: alt.map(String::from),
        };
        let bind = |s: &str, d: Destination, k: &str| Binding {
            source: s.into(),
            destination: d,
            routing_key: k.into(),
        };
        let queue = |n: &str| Queue {
            name: n.into(),
            kind: "classic".into(),
            ..Queue::default()
        };
        Snapshot {
            queues: vec![queue("dlq"), queue("other")],
            exchanges: vec![
                ex("dlx", "direct", Some("ae")),
                ex("ae", "fanout", None),
                ex("t", "topic", None),
                ex("h", "headers", None),
                ex("e2e", "fanout", None),
            ],
            bindings: vec![
                bind("dlx", Destination::Queue("dlq".into()), "orders"),
                bind("ae", Destination::Queue("other".into()), ""),
                bind("t", Destination::Exchange("e2e".into()), "orders.#"),
                bind("e2e", Destination::Queue("dlq".into()), "x"),
                bind("h", Destination::Queue("dlq".into()), ""),
            ],
            ..Snapshot::default()
        }
    }

    #[test]
    fn routes_through_each_kind_of_exchange() {
        let s = snapshot();
        let qs = |r: Routed| r.queues.into_iter().collect::<Vec<_>>();
        assert_eq!(qs(route(&s, "dlx", "orders")), ["dlq"]);
        assert_eq!(qs(route(&s, "dlx", "payments")), ["other"], "alternate");
        assert_eq!(qs(route(&s, "t", "orders.eu")), ["dlq"], "e2e");
        assert!(route(&s, "t", "payments").queues.is_empty());
        assert_eq!(qs(route(&s, "", "dlq")), ["dlq"]);
        assert!(route(&s, "", "nothere").queues.is_empty());
        assert!(route(&s, "missing", "dlq").queues.is_empty());
        assert!(may_reach(&s, "t", "dlq"));
        assert!(!may_reach(&s, "e2e", "other"));
        assert!(may_reach(&s, "dlx", "other"), "alternate");
        let h = route(&s, "h", "k");
        assert!(h.queues.is_empty());
        assert_eq!(h.unsure, ["h (headers)"]);
    }
}
