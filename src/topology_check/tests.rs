//! The topology check in memory: a broken snapshot gives each finding at its rules
//! position, a good one none.

use super::snapshot::*;
use super::*;
use crate::rules;

const RULES: &str = "\
INPUTQ(dlq) RETRYINT(5s)
DESTQ(orders) ACTION(RETRY) RETRY(3)
DESTQ(payments) ACTION(FWD) FWDQ(&DESTQ.parked)
DESTQ(billing) ACTION(FWD) FWDEX(errors) FWDRKEY(billing)
DESTQ(missing) ACTION(DISCARD)
DESTQ(alo) ACTION(IGNORE)
ACTION(IGNORE)
";

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn queue(name: &str, kind: &str, args: &[(&str, Value)]) -> Queue {
    Queue {
        name: name.into(),
        kind: kind.into(),
        arguments: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Queue::default()
    }
}

fn bind(source: &str, queue: &str, key: &str) -> Binding {
    Binding {
        source: source.into(),
        destination: Destination::Queue(queue.into()),
        routing_key: key.into(),
    }
}

fn exchange(name: &str, kind: &str) -> Exchange {
    Exchange {
        name: name.into(),
        kind: kind.into(),
        alternate: None,
    }
}

fn good() -> Snapshot {
    let dlx = [("x-dead-letter-exchange", text("dlx"))];
    Snapshot {
        version: "4.3.6".into(),
        vhost: "/".into(),
        user: "dlqd".into(),
        queues: vec![
            queue(
                "dlq",
                "quorum",
                &[
                    ("x-delivery-limit", Value::Int(-1)),
                    ("x-queue-type", text("quorum")),
                ],
            ),
            queue("orders", "classic", &dlx),
            queue("payments", "classic", &dlx),
            queue("payments.parked", "classic", &[]),
            queue("billing", "classic", &dlx),
            queue("missing", "classic", &dlx),
            queue("errors.q", "classic", &[]),
            queue(
                "alo",
                "quorum",
                &[
                    ("x-dead-letter-exchange", text("dlx")),
                    ("x-dead-letter-strategy", text("at-least-once")),
                    ("x-overflow", text("reject-publish")),
                ],
            ),
        ],
        exchanges: vec![exchange("dlx", "fanout"), exchange("errors", "direct")],
        bindings: vec![
            bind("dlx", "dlq", ""),
            bind("errors", "errors.q", "billing"),
        ],
        permissions: Access::Granted(Permissions {
            configure: r"^dlqd\..*$".into(),
            write: r"^(amq\.default|dlqd\..*|errors)$".into(),
            read: r"^(dlq|dlqd\..*)$".into(),
        }),
        user_tags: Some(Vec::new()),
        amqp_failure: None,
    }
}

fn q<'a>(s: &'a mut Snapshot, name: &str) -> &'a mut Queue {
    s.queues.iter_mut().find(|q| q.name == name).expect(name)
}

fn run(rules: &str, s: &Snapshot) -> Report {
    let checked = rules::check_source("t.rules", rules);
    let table = checked.table.expect("valid rules");
    check(&table, &checked.positions, None, s)
}

fn found(r: &Report) -> Vec<String> {
    r.diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{} {} {}",
                d.line,
                d.column,
                d.severity.as_str(),
                d.message
            )
        })
        .collect()
}

#[test]
fn a_good_topology_has_no_findings() {
    let r = run(RULES, &good());
    assert!(r.diagnostics.is_empty(), "{:#?}", found(&r));
    assert_eq!(r.dlq_kind.as_deref(), Some("quorum"));
    assert_eq!(
        r.feeders,
        ["orders", "payments", "billing", "missing", "alo"]
    );
}

fn has(r: &Report, at: &str, severity: &str, words: &str) {
    let all = found(r);
    assert!(
        all.iter()
            .any(|f| f.starts_with(&format!("{at} {severity} ")) && f.contains(words)),
        "no {severity} at {at} with {words:?} in {all:#?}"
    );
}

#[test]
fn a_broken_topology_has_each_finding_where_the_rules_say_it() {
    let mut s = good();
    // orders: no DLX. payments: DLX that routes elsewhere. billing: DLX missing.
    q(&mut s, "orders").arguments.clear();
    q(&mut s, "payments")
        .arguments
        .insert("x-dead-letter-exchange".into(), text("other"));
    q(&mut s, "billing")
        .arguments
        .insert("x-dead-letter-exchange".into(), text("nope"));
    q(&mut s, "alo").arguments.remove("x-overflow");
    q(&mut s, "dlq").arguments.remove("x-delivery-limit");
    s.exchanges.push(exchange("other", "direct"));
    s.queues
        .retain(|q| q.name != "missing" && q.name != "payments.parked");
    s.exchanges.retain(|e| e.name != "errors");
    s.permissions = Access::Granted(Permissions {
        configure: "^$".into(),
        write: "^nothing$".into(),
        read: "^dlqd".into(),
    });
    let r = run(RULES, &s);
    has(
        &r,
        "1:8",
        "warning",
        "quorum queue with a delivery limit of 20",
    );
    has(&r, "1:8", "error", "may not read the DLQ dlq");
    has(
        &r,
        "1:8",
        "error",
        "may not publish to the default exchange",
    );
    has(
        &r,
        "1:8",
        "error",
        "may not configure (declare) dlqd's own queues",
    );
    has(&r, "2:7", "error", "orders has no dead-letter exchange");
    has(
        &r,
        "3:7",
        "error",
        "dead letters of payments do not reach dlq",
    );
    has(
        &r,
        "3:34",
        "error",
        "forward queue payments.parked does not exist",
    );
    has(
        &r,
        "4:7",
        "error",
        "dead-letter exchange nope of the work queue billing does not exist",
    );
    has(
        &r,
        "4:34",
        "error",
        "forward exchange errors does not exist",
    );
    has(
        &r,
        "5:7",
        "error",
        "work queue missing (DESTQ) does not exist",
    );
    has(&r, "6:7", "warning", "overflows with drop-head");
    assert_eq!(r.errors(), 9, "{:#?}", found(&r));
    assert_eq!(r.warnings(), 2, "{:#?}", found(&r));
}

#[test]
fn a_missing_dlq_is_an_error_at_inputq_and_no_inputq_at_the_first_line() {
    let mut s = good();
    s.queues.retain(|q| q.name != "dlq");
    let r = run(RULES, &s);
    has(&r, "1:8", "error", "the DLQ dlq does not exist");
    let r = run("ACTION(IGNORE)\n", &s);
    has(&r, "1:1", "error", "no DLQ to check");
}

#[test]
fn three_ten_has_no_default_delivery_limit_and_headers_exchanges_are_unsure() {
    let mut s = good();
    s.version = "3.10.8".into();
    s.queues[0].arguments.clear();
    assert!(run(RULES, &s).diagnostics.is_empty());
    s.queues[0]
        .arguments
        .insert("x-delivery-limit".into(), Value::Int(-1));
    has(
        &run(RULES, &s),
        "1:8",
        "warning",
        "drops a message at its first return",
    );
    let mut s = good();
    s.exchanges[0].kind = "headers".into();
    let r = run("INPUTQ(dlq)\nDESTQ(orders) ACTION(IGNORE)\n", &s);
    has(
        &r,
        "2:7",
        "warning",
        "cannot tell whether dead letters of orders reach dlq",
    );
}

#[test]
fn a_routing_key_is_the_queue_name_or_its_binding_keys_or_the_dead_letter_routing_key() {
    let mut s = good();
    s.exchanges[0].kind = "direct".into();
    s.bindings[0].routing_key = "orders.created".into();
    let rules = "INPUTQ(dlq)\nDESTQ(orders) ACTION(IGNORE)\n";
    // Only the queue's own name as a key: no route.
    has(
        &run(rules, &s),
        "2:7",
        "error",
        "routes the key 'orders' to no queue",
    );
    // Published through an exchange with orders.created too: some reach it.
    s.exchanges.push(exchange("shop", "topic"));
    s.bindings.push(bind("shop", "orders", "orders.created"));
    has(
        &run(rules, &s),
        "2:7",
        "warning",
        "some dead letters of orders may not reach dlq",
    );
    // A dead-letter-routing-key decides alone.
    s.queues[1]
        .policy
        .insert("dead-letter-routing-key".into(), text("orders.created"));
    assert!(run(rules, &s).diagnostics.is_empty());
}

#[test]
fn permissions_that_cannot_be_read_or_do_not_exist() {
    let mut s = good();
    s.permissions = Access::Unreadable("HTTP 401".into());
    has(
        &run(RULES, &s),
        "1:1",
        "warning",
        "cannot read the permissions of the user dlqd: HTTP 401",
    );
    s.permissions = Access::None;
    has(
        &run(RULES, &s),
        "1:8",
        "error",
        "has no permissions on the vhost /",
    );
}

#[test]
fn putaut_ctx_needs_the_impersonator_tag() {
    let rules = "INPUTQ(dlq)\nDESTQ(orders) ACTION(RETRY) PUTAUT(CTX)\n";
    let mut s = good();
    s.user_tags = Some(vec!["monitoring".into()]);
    has(
        &run(rules, &s),
        "2:36",
        "warning",
        "the user dlqd has no impersonator tag",
    );
    s.user_tags = Some(vec!["impersonator".into()]);
    assert!(run(rules, &s).diagnostics.is_empty());
    s.user_tags = None;
    assert!(
        run(rules, &s).diagnostics.is_empty(),
        "tags unknown: nothing said"
    );
}

#[test]
fn a_destq_pattern_no_feeding_queue_matches() {
    let r = run(
        "INPUTQ(dlq)\nDESTQ(shipping.*) ACTION(IGNORE)\nDESTQ(ord*) ACTION(IGNORE)\n",
        &good(),
    );
    has(
        &r,
        "2:7",
        "warning",
        "no queue that dead-letters to dlq matches DESTQ(shipping.*)",
    );
    assert_eq!(r.diagnostics.len(), 1, "{:#?}", found(&r));
}

#[test]
fn a_dlq_that_limits_what_it_keeps_loses_dead_letters() {
    let rules = "INPUTQ(dlq)\nDESTQ(orders) ACTION(IGNORE)\n";
    let mut s = good();
    q(&mut s, "dlq")
        .arguments
        .insert("x-max-length".into(), Value::Int(1000));
    let r = run(rules, &s);
    has(
        &r,
        "1:8",
        "warning",
        "the DLQ dlq has a maximum length of 1000 messages (argument x-max-length): when it is full, the oldest dead letters are dropped silently (overflow drop-head)",
    );
    assert_eq!(r.diagnostics.len(), 1, "{:#?}", found(&r));
    // From a policy, with reject-publish; the lower of argument and policy applies.
    let d = q(&mut s, "dlq");
    d.arguments.remove("x-max-length");
    d.policy_name = Some("limits".into());
    d.policy.insert("max-length-bytes".into(), Value::Int(4096));
    d.policy.insert("overflow".into(), text("reject-publish"));
    d.policy.insert("message-ttl".into(), Value::Int(60000));
    d.arguments
        .insert("x-message-ttl".into(), Value::Int(90000));
    d.policy.insert("expires".into(), Value::Int(3600000));
    let r = run(rules, &s);
    has(
        &r,
        "1:8",
        "warning",
        "maximum length of 4096 bytes (policy key max-length-bytes): when it is full, dead-lettering to it fails (overflow reject-publish): with at-most-once dead-lettering (the default dead-letter-strategy) those dead letters are dropped",
    );
    has(
        &r,
        "1:8",
        "warning",
        "the DLQ dlq has a message TTL of 60000 ms (policy key message-ttl): dead letters expire before anyone may look at them, and expired ones are dropped",
    );
    has(
        &r,
        "1:8",
        "warning",
        "the DLQ dlq expires after 3600000 ms unused (policy key expires)",
    );
    assert_eq!(r.diagnostics.len(), 3, "{:#?}", found(&r));
    assert!(
        r.diagnostics.iter().all(|d| d
            .help
            .as_deref()
            .is_some_and(|h| h.contains("from the policy limits"))),
        "{:#?}",
        r.diagnostics
    );
    // A TTL on a DLQ that dead-letters onward says where they go.
    q(&mut s, "dlq")
        .arguments
        .insert("x-dead-letter-exchange".into(), text("dlx2"));
    has(
        &run(rules, &s),
        "1:8",
        "warning",
        "expired ones are dead-lettered onward to its dead-letter exchange dlx2",
    );
}

#[test]
fn an_amqp_connection_that_fails_is_an_error() {
    let mut s = good();
    for (code, words) in [
        (Some(403), "the broker refused the login"),
        (Some(530), "the vhost / does not exist"),
        (None, "check the URL's host and AMQP port"),
    ] {
        s.amqp_failure = Some(AmqpFailure {
            url: "amqp://dlqd:***@h:5999/%2f".into(),
            reason: "nope".into(),
            code,
        });
        let r = run(RULES, &s);
        has(
            &r,
            "1:1",
            "error",
            "dlqd cannot open an AMQP connection to amqp://dlqd:***@h:5999/%2f: nope",
        );
        assert_eq!(r.errors(), 1, "{:#?}", found(&r));
        let help = r.diagnostics[0].help.clone().unwrap_or_default();
        assert!(help.contains(words), "{help}");
    }
}

#[test]
fn a_work_queue_fed_through_a_topic_pattern_cannot_be_told() {
    let mut s = good();
    s.exchanges[0].kind = "direct".into();
    s.bindings[0].routing_key = "orders.eu.created".into();
    s.exchanges.push(exchange("shop", "topic"));
    s.bindings.push(bind("shop", "orders", "orders.*.created"));
    let rules = "INPUTQ(dlq)\nDESTQ(orders) ACTION(IGNORE)\n";
    let r = run(rules, &s);
    has(
        &r,
        "2:7",
        "warning",
        "cannot tell whether dead letters of orders reach dlq: with no dead-letter-routing-key they keep the key they were published with, which the pattern 'orders.*.created' of shop leaves open",
    );
    assert_eq!(r.errors(), 0, "{:#?}", found(&r));
    // Headers (and fanout) bindings leave the key open too.
    s.exchanges.last_mut().expect("shop").kind = "headers".into();
    let r = run(rules, &s);
    has(
        &r,
        "2:7",
        "warning",
        "a binding to the headers exchange of shop",
    );
    assert_eq!(r.errors(), 0, "{:#?}", found(&r));
}

#[test]
fn the_binding_advice_names_the_key_once() {
    let mut s = good();
    s.exchanges[0].kind = "direct".into();
    s.bindings[0].routing_key = "x".into();
    let r = run("INPUTQ(dlq)\nDESTQ(orders) ACTION(IGNORE)\n", &s);
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.line == 2)
        .expect("at DESTQ");
    assert!(d.is_error(), "{d:?}");
    let help = d.help.clone().unwrap_or_default();
    assert!(
        help.starts_with(
            "bind dlq to dlx: rabbitmqadmin declare binding source=dlx destination=dlq routing_key='orders', or"
        ),
        "{help}"
    );
}

#[test]
fn a_dlq_nothing_dead_letters_to_is_a_warning() {
    let mut s = good();
    s.bindings.retain(|b| b.source != "dlx");
    // A queue whose keys cannot be known, dead-lettering elsewhere, does not count.
    s.exchanges.push(exchange("fan", "fanout"));
    s.exchanges.push(exchange("elsewhere", "fanout"));
    s.queues.push(queue(
        "unrelated",
        "classic",
        &[("x-dead-letter-exchange", text("elsewhere"))],
    ));
    s.bindings.push(bind("fan", "unrelated", ""));
    s.bindings.push(bind("elsewhere", "errors.q", ""));
    let r = run("INPUTQ(dlq)\nACTION(IGNORE)\n", &s);
    has(
        &r,
        "1:8",
        "warning",
        "no queue dead-letters to dlq: dead letters from 0 queues",
    );
    assert_eq!(r.diagnostics.len(), 1, "{:#?}", found(&r));
}

#[test]
fn the_suggested_grant_keeps_the_current_permissions() {
    let mut s = good();
    s.permissions = Access::Granted(Permissions {
        configure: r"^dlqd\..*$".into(),
        write: r"^(amq\.default|dlqd\..*)$".into(),
        read: r"^(other-app\.q)$".into(),
    });
    let r = run("INPUTQ(dlq)\nACTION(IGNORE)\n", &s);
    has(&r, "1:8", "error", "may not read the DLQ dlq");
    let help = r.diagnostics[0].help.clone().unwrap_or_default();
    assert!(
        help.contains(
            r"rabbitmqctl set_permissions -p / dlqd '^dlqd\..*$' '^(amq\.default|dlqd\..*)$' '(^(other-app\.q)$)|^(dlq|dlqd\..*)$'"
        ),
        "{help}"
    );
    assert!(help.contains("replaces the user's permissions"), "{help}");
    assert!(!help.contains(r"\-"), "{help}");
    assert!(r.short_of_permissions);
}
