//! `dlqd check --broker`: what a rules table assumes about the broker, checked against
//! a [`Snapshot`] of it — the DLQ exists; the work queues DESTQ names dead-letter to an
//! exchange that exists and routes to the DLQ; a quorum DLQ has a dead-letter exchange
//! of its own while a delivery limit applies; no work queue asks for at-least-once
//! dead-lettering that silently is at-most-once; the DLQ keeps what it is given (no
//! length limit, TTL or expiry); forward targets exist; dlqd's user may read, write and
//! configure what it must, and can open an AMQP connection. Pure: each finding is a [`Diagnostic`]
//! at the rules position that caused it (else the file's first line), with a help line.
//!
//! Errors are what stops dlqd or loses dead letters every time (a missing DLQ, queue or
//! exchange, a dead-letter exchange that routes elsewhere, a missing permission);
//! warnings what loses them in some cases or cannot be judged (a quorum DLQ's delivery
//! limit, at-least-once with drop-head, a `headers` exchange, a pattern no queue
//! matches).

pub mod permissions;
pub mod routing;
pub mod snapshot;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use crate::rules::diagnostic::{Diagnostic, Span};
use crate::rules::{
    Action, Field, ForwardTarget, Pattern, Positions, Table, Template, TemplatePart, Var,
};
use crate::stage;
use permissions::{DEFAULT_EXCHANGE, allows};
use routing::route;
use snapshot::{Access, Destination, Queue, Snapshot, Source, Value};

/// The findings, and what the summary line says.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Positions only (the caller fills in the path), sorted by line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// The DLQ checked (`--queue`, else INPUTQ).
    pub dlq: Option<String>,
    /// Its type (`classic`, `quorum`, `stream`) when it exists.
    pub dlq_kind: Option<String>,
    /// The queues whose dead letters reach the DLQ, by name.
    pub feeders: Vec<String>,
    /// What dlqd's user needs on the broker for this table (when a DLQ is named).
    pub needs: Option<permissions::Needs>,
    /// The user lacks a permission this table needs.
    pub short_of_permissions: bool,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Check `table` (written at `positions`) against `snapshot`. `queue` overrides INPUTQ
/// (`--queue`).
pub fn check(
    table: &Table,
    positions: &Positions,
    queue: Option<&str>,
    snapshot: &Snapshot,
) -> Report {
    let mut c = Checker {
        table,
        positions,
        snapshot,
        out: Report::default(),
        dlq_span: Span::new(1, 1, 1),
    };
    let dlq = match queue {
        Some(q) => Some(q.to_string()),
        None => table.control.input_queue.clone(),
    };
    if queue.is_none() || queue == table.control.input_queue.as_deref() {
        c.dlq_span = positions.input_queue.unwrap_or(c.dlq_span);
    }
    c.amqp();
    match &dlq {
        None => c.push(
            Diagnostic::error(
                FIRST_LINE,
                "no DLQ to check against the broker: the rules have no INPUTQ",
            )
            .with_help("add INPUTQ(queue) as the first entry, or give --queue"),
        ),
        Some(dlq) => c.all(dlq),
    }
    c.out.dlq = dlq;
    c.out.diagnostics.sort_by_key(|d| (d.line, d.column));
    c.out
}

const FIRST_LINE: Span = Span {
    line: 1,
    column: 1,
    len: 1,
};

struct Checker<'a> {
    table: &'a Table,
    positions: &'a Positions,
    snapshot: &'a Snapshot,
    out: Report,
    dlq_span: Span,
}

/// A work queue a literal DESTQ names, and where.
struct Named {
    name: String,
    span: Span,
}

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.out.diagnostics.push(d);
    }

    fn span(
        &self,
        rule: usize,
        pick: impl Fn(&crate::rules::lower::RuleSpans) -> Option<Span>,
    ) -> Span {
        self.positions
            .rules
            .get(rule)
            .and_then(pick)
            .unwrap_or(FIRST_LINE)
    }

    fn all(&mut self, dlq: &str) {
        let vhost = &self.snapshot.vhost;
        let exists = match self.snapshot.queue(dlq) {
            Some(q) => {
                self.out.dlq_kind = Some(q.kind.clone());
                self.quorum_dlq(q);
                self.dlq_retention(q);
                true
            }
            None => {
                self.push(
                    Diagnostic::error(
                        self.dlq_span,
                        format!("the DLQ {dlq} does not exist on the broker (vhost {vhost})"),
                    )
                    .with_help(format!(
                        "declare {dlq} (durable; a quorum queue in a cluster) and bind it to the work queues' dead-letter exchange, or correct INPUTQ"
                    )),
                );
                false
            }
        };
        let named = self.named_work_queues();
        let mut seen = BTreeSet::new();
        for n in &named {
            // DESTQ(the DLQ) is about the DLQ's own dead letters: its checks are above.
            if n.name != dlq && seen.insert(n.name.clone()) {
                self.work_queue(n, dlq, exists);
            }
        }
        if exists {
            self.feeders(dlq, &seen);
        }
        self.forwards(dlq);
        self.permissions(dlq);
        self.impersonation();
    }

    /// dlqd must open an AMQP connection with the URL; the management API answering
    /// says nothing about that (another port, maybe other credentials).
    fn amqp(&mut self) {
        let Some(f) = &self.snapshot.amqp_failure else {
            return;
        };
        let vhost = &self.snapshot.vhost;
        let user = &self.snapshot.user;
        let help = match f.code {
            Some(403) => format!(
                "the broker refused the login: check the user {user} and the password in the URL (the management API may have been given other credentials)"
            ),
            Some(530) => format!(
                "the vhost {vhost} does not exist, or the user {user} may not use it: check the URL's vhost (%2f is /) and the user's permissions"
            ),
            _ => "check the URL's host and AMQP port (5672, 5671 for amqps://; the management API's port is another) and that RabbitMQ listens there".to_string(),
        };
        self.push(
            Diagnostic::error(
                FIRST_LINE,
                format!(
                    "dlqd cannot open an AMQP connection to {}: {}",
                    f.url, f.reason
                ),
            )
            .with_help(help),
        );
    }

    /// `PUTAUT(CTX)` keeps another user's `user_id`: the broker refuses that unless
    /// dlqd's user has the `impersonator` tag.
    fn impersonation(&mut self) {
        let Some(tags) = &self.snapshot.user_tags else {
            return;
        };
        if tags.iter().any(|t| t == "impersonator") {
            return;
        }
        let user = &self.snapshot.user;
        for (i, rule) in self.table.rules.iter().enumerate() {
            let ctx = match &rule.action {
                Action::Retry(r) => r.put_authority.keeps_user_id(),
                Action::Forward(f) => f.put_authority.keeps_user_id(),
                _ => false,
            };
            if ctx {
                let span = self.span(i, |s| s.putaut);
                self.out.diagnostics.push(
                    Diagnostic::warning(
                        span,
                        format!("PUTAUT(CTX) keeps the message's user_id, but the user {user} has no impersonator tag: messages another user published fail and stay on the DLQ"),
                    )
                    .with_help(format!("rabbitmqctl set_user_tags {user} impersonator (with its other tags), or PUTAUT(DEF)")),
                );
            }
        }
    }

    /// The literal DESTQ values, in rule order (not dlqd's own queues, not the DLQ).
    fn named_work_queues(&self) -> Vec<Named> {
        let mut out = Vec::new();
        for (i, rule) in self.table.rules.iter().enumerate() {
            if let Some(Pattern::Literal(name)) = rule.patterns.text(Field::DestQ)
                && !stage::is_own_queue(name)
            {
                out.push(Named {
                    name: name.clone(),
                    span: self.span(i, |s| s.destq),
                });
            }
        }
        out
    }

    /// A quorum DLQ whose delivery limit applies and that has no dead-letter exchange
    /// (that exists) drops a message returned too often.
    fn quorum_dlq(&mut self, q: &Queue) {
        if !q.is_quorum() {
            return;
        }
        let major = self.snapshot.major();
        let set = q.setting("delivery-limit").and_then(|(v, _)| v.as_int());
        let why = match set {
            Some(n) if n >= 0 => format!("a delivery limit of {n}"),
            Some(n) if major < 4 => {
                format!(
                    "x-delivery-limit {n}, which on RabbitMQ 3.x drops a message at its first return"
                )
            }
            Some(_) => return, // -1 (or below) on 4.x: unlimited
            None if major >= 4 => "a delivery limit of 20 (the default since RabbitMQ 4.0)".into(),
            None => return,
        };
        let dlx = q.text("dead-letter-exchange");
        let missing = match dlx {
            Some(x) if self.snapshot.exchange(x).is_some() => return,
            Some(x) => format!("its dead-letter exchange {x} does not exist"),
            None => "it has no dead-letter exchange".to_string(),
        };
        self.push(
            Diagnostic::warning(
                self.dlq_span,
                format!(
                    "the DLQ {} is a quorum queue with {why}, and {missing}: a message returned more often than that is dropped",
                    q.name
                ),
            )
            .with_help(
                "give the DLQ a dead-letter exchange of its own (a second-level DLQ; policy key dead-letter-exchange), or on RabbitMQ 4.x set x-delivery-limit -1 (unlimited; policy key delivery-limit)",
            ),
        );
    }

    /// A DLQ that limits how long or how many dead letters it keeps loses them:
    /// `max-length`/`max-length-bytes` (drop-head drops the oldest; reject-publish makes
    /// dead-lettering fail, and at-most-once dead letters are then dropped),
    /// `message-ttl` (they expire before anyone looks, unless the DLQ dead-letters them
    /// onward), `expires` (the DLQ itself is deleted when unused).
    fn dlq_retention(&mut self, q: &Queue) {
        let from = |key: &str, source: Source| match source {
            Source::Argument => format!("argument x-{key}"),
            Source::Policy => format!("policy key {key}"),
        };
        let remove = |key: &str, source: Source| match source {
            Source::Argument => format!(
                "the argument x-{key} (an argument cannot be changed: declare the DLQ anew without it)"
            ),
            Source::Policy => format!("the key {key} from the policy {}", q.policy_name()),
        };
        let overflow = q.text("overflow").unwrap_or("drop-head");
        for (key, unit) in [("max-length", "message"), ("max-length-bytes", "byte")] {
            let Some((v, source)) = q.setting(key) else {
                continue;
            };
            let n = value_text(v);
            let limit = format!(
                "a maximum length of {n} {unit}{}",
                if n == "1" { "" } else { "s" }
            );
            let consequence = if overflow.starts_with("reject-publish") {
                format!(
                    "when it is full, dead-lettering to it fails (overflow {overflow}): with at-most-once dead-lettering (the default dead-letter-strategy) those dead letters are dropped"
                )
            } else {
                format!(
                    "when it is full, the oldest dead letters are dropped silently (overflow {overflow})"
                )
            };
            self.push(
                Diagnostic::warning(
                    self.dlq_span,
                    format!(
                        "the DLQ {} has {limit} ({}): {consequence}",
                        q.name,
                        from(key, source)
                    ),
                )
                .with_help(format!(
                    "remove {} so that no dead letter is lost, and alert on the DLQ's depth instead",
                    remove(key, source)
                )),
            );
        }
        if let Some((v, source)) = q.setting("message-ttl") {
            let onward = match q.text("dead-letter-exchange") {
                Some(x) => {
                    format!("expired ones are dead-lettered onward to its dead-letter exchange {x}")
                }
                None => "expired ones are dropped".to_string(),
            };
            self.push(
                Diagnostic::warning(
                    self.dlq_span,
                    format!(
                        "the DLQ {} has a message TTL of {} ms ({}): dead letters expire before anyone may look at them, and {onward}",
                        q.name,
                        value_text(v),
                        from("message-ttl", source)
                    ),
                )
                .with_help(format!(
                    "remove {} (dlqd's RETRY delays do not need it), or keep it knowingly if the DLQ's own dead-letter exchange is where dead letters are meant to end up",
                    remove("message-ttl", source)
                )),
            );
        }
        if let Some((v, source)) = q.setting("expires") {
            self.push(
                Diagnostic::warning(
                    self.dlq_span,
                    format!(
                        "the DLQ {} expires after {} ms unused ({}): the broker deletes it, with its dead letters, when no consumer has used it that long (while dlqd is stopped, say)",
                        q.name,
                        value_text(v),
                        from("expires", source)
                    ),
                )
                .with_help(format!("remove {}", remove("expires", source))),
            );
        }
    }

    /// The routing keys a work queue's dead letters carry: its dead-letter-routing-key,
    /// else the keys they were published with — its own name (the default exchange)
    /// and the literal keys of its direct and topic bindings. Second, the bindings
    /// whose keys cannot be known (topic patterns with `*` or `#`, `headers` and
    /// `fanout` exchanges, a plugin's type), as `'KEY' (TYPE exchange NAME)`; none with
    /// a dead-letter-routing-key.
    fn dead_letter_keys(&self, q: &Queue) -> (Vec<String>, Vec<String>) {
        if let Some(k) = q.text("dead-letter-routing-key") {
            return (vec![k.to_string()], Vec::new());
        }
        let mut keys = vec![q.name.clone()];
        let mut unknown = Vec::new();
        for b in &self.snapshot.bindings {
            if b.destination != Destination::Queue(q.name.clone()) || b.source.is_empty() {
                continue;
            }
            let kind = self.snapshot.exchange(&b.source).map(|e| e.kind);
            let literal = match kind.as_deref() {
                Some("direct") => true,
                Some("topic") => !b.routing_key.contains(['*', '#']),
                None => continue,
                _ => false,
            };
            if literal {
                if !keys.contains(&b.routing_key) {
                    keys.push(b.routing_key.clone());
                }
            } else {
                let shown = match kind.as_deref() {
                    Some("topic") => format!("the pattern '{}'", b.routing_key),
                    other => format!("a binding to the {} exchange", other.unwrap_or("?")),
                };
                let shown = format!("{shown} of {}", b.source);
                if !unknown.contains(&shown) {
                    unknown.push(shown);
                }
            }
        }
        (keys, unknown)
    }

    fn work_queue(&mut self, n: &Named, dlq: &str, dlq_exists: bool) {
        let vhost = &self.snapshot.vhost;
        let Some(q) = self.snapshot.queue(&n.name) else {
            self.push(
                Diagnostic::error(
                    n.span,
                    format!("the work queue {} (DESTQ) does not exist on the broker (vhost {vhost})", n.name),
                )
                .with_help("correct the name: RETRY puts messages back on this queue, and no dead letter of it can come"),
            );
            return;
        };
        self.at_least_once(q, n.span);
        let Some(dlx) = q.text("dead-letter-exchange") else {
            self.push(
                Diagnostic::error(
                    n.span,
                    format!("the work queue {} has no dead-letter exchange: its dead letters are dropped, none reach {dlq}", q.name),
                )
                .with_help(format!(
                    "give it one by policy (rabbitmqctl set_policy -p {vhost} NAME '^{}$' '{{\"dead-letter-exchange\":\"DLX\"}}' --apply-to queues) or x-dead-letter-exchange, and bind {dlq} to it",
                    permissions::escape(&q.name)
                )),
            );
            return;
        };
        if self.snapshot.exchange(dlx).is_none() {
            self.push(
                Diagnostic::error(
                    n.span,
                    format!("the dead-letter exchange {dlx} of the work queue {} does not exist: the broker drops its dead letters silently", q.name),
                )
                .with_help(format!("declare the exchange {dlx} and bind {dlq} to it")),
            );
            return;
        }
        if !dlq_exists {
            return;
        }
        let (keys, unknown) = self.dead_letter_keys(q);
        let mut bad = Vec::new();
        let mut elsewhere = BTreeSet::new();
        let mut unsure = Vec::new();
        let mut good = 0;
        for k in &keys {
            let r = route(self.snapshot, dlx, k);
            if r.queues.contains(dlq) {
                good += 1;
            } else if !r.unsure.is_empty() {
                unsure.extend(r.unsure);
            } else {
                elsewhere.extend(r.queues);
                bad.push(k.clone());
            }
        }
        let shown_dlx = if dlx.is_empty() {
            "(the default exchange)".to_string()
        } else {
            dlx.to_string()
        };
        let keys_text = |ks: &[String]| {
            ks.iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let to = if elsewhere.is_empty() {
            "no queue".to_string()
        } else {
            elsewhere.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        let help = if dlx.is_empty() {
            format!(
                "set x-dead-letter-routing-key {dlq} (policy key dead-letter-routing-key), or use a dead-letter exchange bound to {dlq}"
            )
        } else {
            let key = match bad.as_slice() {
                [one] => format!("'{one}'"),
                _ => "KEY".to_string(),
            };
            format!(
                "bind {dlq} to {dlx}: rabbitmqadmin declare binding source={dlx} destination={dlq} routing_key={key}{}, or set a dead-letter-routing-key {dlq} is bound with (policy key dead-letter-routing-key)",
                if bad.len() > 1 {
                    " (once for each of those keys)"
                } else {
                    ""
                }
            )
        };
        if good == 0 && unsure.is_empty() && !unknown.is_empty() {
            self.push(
                Diagnostic::warning(
                    n.span,
                    format!(
                        "cannot tell whether dead letters of {} reach {dlq}: with no dead-letter-routing-key they keep the key they were published with, which {} leaves open; {shown_dlx} routes the known key{} {} to {to}",
                        q.name,
                        unknown.join(", "),
                        if bad.len() == 1 { "" } else { "s" },
                        keys_text(&bad)
                    ),
                )
                .with_help(format!(
                    "check that {dlq} is bound to {dlx} with every key the messages of {} are published with (rabbitmqadmin declare binding source={dlx} destination={dlq} routing_key=KEY), or set a dead-letter-routing-key {dlq} is bound with (policy key dead-letter-routing-key), which this check can follow",
                    q.name
                )),
            );
        } else if good == 0 && unsure.is_empty() {
            self.push(
                Diagnostic::error(
                    n.span,
                    format!(
                        "dead letters of {} do not reach {dlq}: its dead-letter exchange {shown_dlx} routes the key{} {} to {to}",
                        q.name,
                        if bad.len() == 1 { "" } else { "s" },
                        keys_text(&bad)
                    ),
                )
                .with_help(help),
            );
        } else if !bad.is_empty() {
            self.push(
                Diagnostic::warning(
                    n.span,
                    format!(
                        "some dead letters of {} may not reach {dlq}: with no dead-letter-routing-key they keep the key they were published with, and {shown_dlx} routes {} to {to}",
                        q.name,
                        keys_text(&bad)
                    ),
                )
                .with_help(help),
            );
        } else if good == 0 {
            self.push(
                Diagnostic::warning(
                    n.span,
                    format!(
                        "cannot tell whether dead letters of {} reach {dlq}: they pass {}, whose routing depends on the message",
                        q.name,
                        unsure.join(", ")
                    ),
                )
                .with_help(format!("check by hand that {dlq} is bound to receive them")),
            );
        }
    }

    /// At-least-once dead-lettering needs a quorum queue with overflow reject-publish;
    /// with drop-head (the default) RabbitMQ silently dead-letters at most once.
    fn at_least_once(&mut self, q: &Queue, span: Span) {
        let Some((v, source)) = q.setting("dead-letter-strategy") else {
            return;
        };
        if v.as_text() != Some("at-least-once") {
            return;
        }
        let from = match source {
            Source::Argument => "argument x-dead-letter-strategy",
            Source::Policy => "policy key dead-letter-strategy",
        };
        if !q.is_quorum() {
            self.push(
                Diagnostic::warning(
                    span,
                    format!("the work queue {} asks for at-least-once dead-lettering ({from}), but it is a {} queue: it dead-letters at most once", q.name, q.kind),
                )
                .with_help("only quorum queues dead-letter at least once (with overflow reject-publish)"),
            );
            return;
        }
        let overflow = q.text("overflow").unwrap_or("drop-head");
        if overflow != "reject-publish" {
            self.push(
                Diagnostic::warning(
                    span,
                    format!(
                        "the work queue {} asks for at-least-once dead-lettering ({from}) but overflows with {overflow}: RabbitMQ silently dead-letters at most once",
                        q.name
                    ),
                )
                .with_help("set overflow to reject-publish (argument x-overflow, or policy key overflow): at-least-once needs it"),
            );
        }
    }

    /// Every queue whose dead letters reach the DLQ; those no literal DESTQ names get
    /// the at-least-once check too. A DESTQ pattern that no such queue matches is
    /// reported.
    fn feeders(&mut self, dlq: &str, named: &BTreeSet<String>) {
        let mut feeders = Vec::new();
        // Queues whose dead letters might reach the DLQ, which cannot be told.
        let mut maybe = 0;
        for q in &self.snapshot.queues {
            if q.name == dlq || stage::is_own_queue(&q.name) {
                continue;
            }
            let Some(dlx) = q.text("dead-letter-exchange") else {
                continue;
            };
            let (keys, unknown) = self.dead_letter_keys(q);
            let routes: Vec<_> = keys.iter().map(|k| route(self.snapshot, dlx, k)).collect();
            if (routes.iter().any(|r| !r.unsure.is_empty()) || !unknown.is_empty())
                && routing::may_reach(self.snapshot, dlx, dlq)
            {
                maybe += 1;
            }
            if routes.iter().any(|r| r.queues.contains(dlq)) {
                feeders.push(q.name.clone());
                if !named.contains(&q.name) {
                    let span = self.dlq_span;
                    self.at_least_once(q, span);
                }
            }
        }
        for (i, rule) in self.table.rules.iter().enumerate() {
            let Some(p) = rule.patterns.text(Field::DestQ) else {
                continue;
            };
            if matches!(p, Pattern::Literal(_)) || p.matches_everything() {
                continue;
            }
            if !feeders.iter().any(|f| p.matches(f)) {
                self.push(
                    Diagnostic::warning(
                        self.span(i, |s| s.destq),
                        format!(
                            "no queue that dead-letters to {dlq} matches DESTQ({})",
                            p.source()
                        ),
                    )
                    .with_help("this rule applies only to dead letters of such queues: check the pattern against the queue names (or ignore this for queues made later)"),
                );
            }
        }
        if feeders.is_empty() && maybe == 0 {
            self.push(
                Diagnostic::warning(
                    self.dlq_span,
                    format!("no queue dead-letters to {dlq}: dead letters from 0 queues"),
                )
                .with_help(format!(
                    "give the work queues a dead-letter exchange that routes to {dlq} (policy key dead-letter-exchange, and a binding), or check that INPUTQ (or --queue) names the right DLQ"
                )),
            );
        }
        self.out.feeders = feeders;
    }

    /// Forward targets (literal, or `&DESTQ` with a literal DESTQ) must exist.
    fn forwards(&mut self, dlq: &str) {
        for (i, rule) in self.table.rules.iter().enumerate() {
            let Action::Forward(f) = &rule.action else {
                continue;
            };
            let destq = match rule.patterns.text(Field::DestQ) {
                Some(Pattern::Literal(l)) => Some(l.as_str()),
                _ => None,
            };
            match &f.target {
                ForwardTarget::Queue(t) => {
                    let Some(name) = expand(t, destq) else {
                        continue;
                    };
                    if name == dlq
                        || stage::is_own_queue(&name)
                        || self.snapshot.queue(&name).is_some()
                    {
                        continue;
                    }
                    self.push(
                        Diagnostic::error(
                            self.span(i, |s| s.fwdq),
                            format!("the forward queue {name} does not exist: forwards to it are returned unroutable and the messages stay on {dlq}"),
                        )
                        .with_help(format!("declare the queue {name}, or correct FWDQ")),
                    );
                }
                ForwardTarget::Exchange {
                    exchange,
                    routing_key,
                } => {
                    let Some(name) = expand(exchange, destq) else {
                        continue;
                    };
                    if self.snapshot.exchange(&name).is_none() {
                        self.push(
                            Diagnostic::error(
                                self.span(i, |s| s.fwdex),
                                format!("the forward exchange {name} does not exist: forwards to it fail and the messages stay on {dlq}"),
                            )
                            .with_help(format!("declare the exchange {name}, or correct FWDEX")),
                        );
                        continue;
                    }
                    let Some(key) = routing_key.as_ref().and_then(|k| expand(k, destq)) else {
                        continue;
                    };
                    let r = route(self.snapshot, &name, &key);
                    if r.queues.is_empty() && r.unsure.is_empty() {
                        self.push(
                            Diagnostic::warning(
                                self.span(i, |s| s.fwdrkey.or(s.fwdex)),
                                format!("forwards to the exchange {name} with the key '{key}' reach no queue: they are returned and the messages stay on {dlq}"),
                            )
                            .with_help(format!("bind a queue to {name} with the key '{key}'")),
                        );
                    }
                }
            }
        }
    }

    /// What dlqd's user needs for this table: configure on its own queues, write on the
    /// default exchange, its own queues and the forward exchanges, read on the DLQ and
    /// its own queues.
    fn needs(&self, dlq: &str, exchanges: &[(String, Span)]) -> permissions::Needs {
        let mut own = stage::delay_queues(dlq);
        own.push(stage::left_queue(dlq));
        let own = permissions::Need {
            regex: r"dlqd\..*".into(),
            names: own,
        };
        let mut write = vec![permissions::Need::literal(DEFAULT_EXCHANGE), own.clone()];
        write.extend(exchanges.iter().map(|(n, _)| permissions::Need::literal(n)));
        permissions::Needs {
            configure: vec![own.clone()],
            write,
            read: vec![permissions::Need::literal(dlq), own],
        }
    }

    /// The literal FWDEX exchanges, and where each is first written.
    fn forward_exchanges(&self) -> Vec<(String, Span)> {
        let mut out: Vec<(String, Span)> = Vec::new();
        for (i, rule) in self.table.rules.iter().enumerate() {
            if let Action::Forward(f) = &rule.action
                && let ForwardTarget::Exchange { exchange, .. } = &f.target
            {
                let destq = match rule.patterns.text(Field::DestQ) {
                    Some(Pattern::Literal(l)) => Some(l.as_str()),
                    _ => None,
                };
                if let Some(name) = expand(exchange, destq)
                    && !out.iter().any(|(n, _)| *n == name)
                {
                    out.push((name, self.span(i, |s| s.fwdex)));
                }
            }
        }
        out
    }

    fn permissions(&mut self, dlq: &str) {
        let user = self.snapshot.user.clone();
        let vhost = self.snapshot.vhost.clone();
        let exchanges = self.forward_exchanges();
        let needs = self.needs(dlq, &exchanges);
        let suggestion = permissions::grant(&vhost, &user, &self.snapshot.permissions, &needs);
        self.out.needs = Some(needs);
        let p = match &self.snapshot.permissions {
            Access::Granted(p) => p.clone(),
            Access::None => {
                self.push(
                    Diagnostic::error(
                        self.dlq_span,
                        format!("the user {user} has no permissions on the vhost {vhost} (or does not exist)"),
                    )
                    .with_help(format!("grant them, e.g. {suggestion}")),
                );
                self.out.short_of_permissions = true;
                return;
            }
            Access::Unknown | Access::Unreadable(_) => {
                let why = match &self.snapshot.permissions {
                    Access::Unreadable(w) => format!(": {w}"),
                    _ => String::new(),
                };
                self.push(
                    Diagnostic::warning(
                        FIRST_LINE,
                        format!("cannot read the permissions of the user {user}{why}"),
                    )
                    .with_help("give --management http://ADMIN:PASSWORD@HOST:15672 with an administrator's credentials to check them"),
                );
                return;
            }
        };
        let mut unjudged = BTreeSet::new();
        let mut ok = |re: &str, name: &str| match allows(re, name) {
            Some(b) => b,
            None => {
                unjudged.insert(re.to_string());
                true
            }
        };
        let mut found = Vec::new();
        if !ok(&p.read, dlq) {
            found.push((
                self.dlq_span,
                format!(
                    "the user {user} may not read the DLQ {dlq} (read permission '{}')",
                    p.read
                ),
            ));
        }
        if !ok(&p.write, DEFAULT_EXCHANGE) {
            found.push((
                self.dlq_span,
                format!(
                    "the user {user} may not publish to the default exchange (write permission '{}' does not match amq.default): retries, delays and left messages go through it",
                    p.write
                ),
            ));
        }
        let mut stage_queues = stage::delay_queues(dlq);
        stage_queues.push(stage::left_queue(dlq));
        for (what, re) in [("configure (declare)", &p.configure), ("read", &p.read)] {
            let denied: Vec<&String> = stage_queues.iter().filter(|q| !ok(re, q)).collect();
            if let Some(first) = denied.first() {
                found.push((
                    self.dlq_span,
                    format!(
                        "the user {user} may not {what} dlqd's own queues of {dlq} ({first}{}; {} permission '{re}')",
                        if denied.len() > 1 { format!(" and {} more", denied.len() - 1) } else { String::new() },
                        what.split(' ').next().unwrap_or(what),
                    ),
                ));
            }
        }
        for (name, span) in &exchanges {
            if self.snapshot.exchange(name).is_some() && !ok(&p.write, name) {
                found.push((
                    *span,
                    format!("the user {user} may not publish to the forward exchange {name} (write permission '{}')", p.write),
                ));
            }
        }
        self.out.short_of_permissions = !found.is_empty();
        for (span, message) in found {
            self.push(
                Diagnostic::error(span, message).with_help(format!("grant it, e.g. {suggestion}")),
            );
        }
        for re in unjudged {
            self.push(
                Diagnostic::warning(
                    FIRST_LINE,
                    format!("cannot judge the permission regex '{re}' of the user {user}: it uses syntax beyond the regex crate's"),
                )
                .with_help("check by hand what it allows"),
            );
        }
    }
}

/// A setting's value as the broker shows it.
fn value_text(v: &Value) -> String {
    match v {
        Value::Text(s) | Value::Other(s) => s.clone(),
        Value::Int(n) => n.to_string(),
    }
}

/// A target's name when it is literal, or only substitutes `&DESTQ` with a literal DESTQ.
fn expand(t: &Template, destq: Option<&str>) -> Option<String> {
    let mut out = String::new();
    for p in &t.parts {
        match p {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Var(Var::DestQ) => out.push_str(destq?),
            TemplatePart::Var(_) => return None,
        }
    }
    Some(out)
}
