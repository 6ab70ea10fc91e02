//! Decision tests on in-memory messages: every rule of the SPEC §3 example table, the
//! §4 walk, delay schedules, substitutions; and the index against the linear walk.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::message::{FieldTable, Message, Properties, RETRIES_HEADER, Value};
use crate::rules::{
    DelaySchedule, Field, Forward, Pattern, Patterns, Retry, SizeBound, Table, Template,
    TemplatePart,
};

pub(crate) fn re(s: &str) -> Pattern {
    Pattern::Regex(regex::Regex::new(s).expect("test regex").into())
}

/// The text patterns of a rule, by field.
pub(crate) fn text<const N: usize>(
    fields: [(Field, Option<Pattern>); N],
) -> [Option<Pattern>; crate::rules::field::TEXT] {
    let mut p = Patterns::default();
    for (f, pattern) in fields {
        p.set_text(f, pattern);
    }
    p.text
}

pub(crate) fn g(s: &str) -> Option<Pattern> {
    Some(Pattern::generic(s))
}

pub(crate) fn tpl(parts: &[&str]) -> Template {
    Template {
        parts: parts
            .iter()
            .map(|p| match *p {
                "&DESTQ" => TemplatePart::Var(Var::DestQ),
                "&DESTEX" => TemplatePart::Var(Var::DestEx),
                "&RKEY" => TemplatePart::Var(Var::RKey),
                "&REASON" => TemplatePart::Var(Var::Reason),
                "&REPLYTO" => TemplatePart::Var(Var::ReplyTo),
                lit => TemplatePart::Literal(lit.to_string()),
            })
            .collect(),
    }
}

pub(crate) fn secs(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|&s| Duration::from_secs(s)).collect()
}

/// The SPEC §3 example table, as the parser would lower it (same line numbers).
pub(crate) fn spec_table() -> Table {
    let rule = |line, patterns, action| Rule {
        line,
        patterns,
        action,
    };
    Table {
        control: crate::rules::Control {
            input_queue: Some("orders.dlq".into()),
            ..Default::default()
        },
        rules: vec![
            rule(
                5,
                Patterns {
                    text: text([(Field::Reason, g("maxlen")), (Field::DestQ, g("orders.*"))]),
                    ..Default::default()
                },
                Action::Retry(Retry {
                    limit: Some(5),
                    delay: DelaySchedule {
                        steps: secs(&[1]),
                        backoff: 2.0,
                        max: Duration::from_secs(10),
                    },
                    put_authority: Default::default(),
                }),
            ),
            rule(
                6,
                Patterns {
                    text: text([(Field::Reason, g("maxlen")), (Field::DestQ, g("orders.*"))]),
                    ..Default::default()
                },
                Action::Forward(Forward {
                    target: ForwardTarget::Queue(tpl(&["&DESTQ", ".parked"])),
                    keep_headers: true,
                    put_authority: Default::default(),
                }),
            ),
            rule(
                9,
                Patterns {
                    text: text([(Field::Reason, g("rejected"))]),
                    persist: Some(true),
                    ..Default::default()
                },
                Action::Retry(Retry {
                    limit: Some(6),
                    delay: DelaySchedule {
                        steps: secs(&[1, 2, 3, 5, 8, 24]),
                        backoff: 1.0,
                        max: Duration::from_secs(24),
                    },
                    put_authority: Default::default(),
                }),
            ),
            rule(
                10,
                Patterns {
                    text: text([(Field::Reason, g("expired"))]),
                    ..Default::default()
                },
                Action::Discard { archive: None },
            ),
            rule(
                11,
                Patterns {
                    persist: Some(false),
                    ..Default::default()
                },
                Action::Discard { archive: None },
            ),
            rule(
                12,
                Patterns {
                    text: text([(Field::DestQ, Some(re(r"^billing\.(eu|us)$")))]),
                    ..Default::default()
                },
                Action::Forward(Forward {
                    target: ForwardTarget::Exchange {
                        exchange: Template::literal("billing.errors"),
                        routing_key: Some(tpl(&["&DESTQ"])),
                    },
                    keep_headers: true,
                    put_authority: Default::default(),
                }),
            ),
            rule(13, Patterns::default(), Action::Leave),
        ],
    }
}

/// A dead letter as RabbitMQ 3.10 writes it: one x-death entry plus x-first-death-*.
pub(crate) fn dead(queue: &str, reason: &str, persistent: bool, retries: Option<i64>) -> Message {
    let mut entry = FieldTable::new();
    entry.insert("count".into(), Value::I64(1));
    entry.insert("exchange".into(), Value::string("shop"));
    entry.insert("queue".into(), Value::string(queue));
    entry.insert("reason".into(), Value::string(reason));
    entry.insert(
        "routing-keys".into(),
        Value::Array(vec![Value::string(format!("{queue}.key"))]),
    );
    entry.insert("time".into(), Value::Timestamp(1_700_000_000));
    let mut h = FieldTable::new();
    h.insert("x-death".into(), Value::Array(vec![Value::Table(entry)]));
    h.insert("x-first-death-exchange".into(), Value::string("shop"));
    h.insert("x-first-death-queue".into(), Value::string(queue));
    h.insert("x-first-death-reason".into(), Value::string(reason));
    if let Some(n) = retries {
        h.insert(RETRIES_HEADER.into(), Value::I64(n));
    }
    Message {
        exchange: "dlx".into(),
        routing_key: format!("{queue}.key"),
        properties: Properties {
            delivery_mode: Some(if persistent { 2 } else { 1 }),
            message_id: Some("m1".into()),
            reply_to: Some("replies".into()),
            headers: Some(h),
            ..Properties::default()
        },
        body: b"{}".to_vec(),
    }
}

fn both(d: &Decider, m: &Message) -> Decision {
    let dl = DeadLetter::new(m);
    let fast = d.decide(&dl);
    assert_eq!(fast, d.decide_linear(&dl), "index and linear walk disagree");
    fast
}

fn retry(queue: &str, delay: u64, attempt: u32) -> Outcome {
    Outcome::Retry {
        queue: queue.into(),
        delay: Duration::from_secs(delay),
        attempt,
        keep_user_id: false,
    }
}

/// `spec_table` is what the parser makes of rules/spec-example.rules (lines aside).
#[test]
fn the_spec_table_is_the_parsed_example() {
    let checked = crate::rules::check_source(
        "spec-example.rules",
        include_str!("../../rules/spec-example.rules"),
    );
    let parsed = checked.table.expect("the example parses");
    let want = spec_table();
    assert_eq!(parsed.control, want.control);
    let parts = |t: &Table| -> Vec<(Patterns, Action)> {
        t.rules
            .iter()
            .map(|r| (r.patterns.clone(), r.action.clone()))
            .collect()
    };
    assert_eq!(parts(&parsed), parts(&want));
}

#[test]
fn maxlen_retries_five_times_with_backoff_then_parks() {
    let d = Decider::new(spec_table());
    let want_delays = [1, 2, 4, 8, 10];
    for (n, delay) in want_delays.iter().enumerate() {
        let m = dead("orders.eu", "maxlen", true, Some(n as i64));
        let dec = both(&d, &m);
        assert_eq!(dec.line, Some(5), "retry {n}");
        assert_eq!(dec.outcome, retry("orders.eu", *delay, n as u32 + 1));
    }
    let m = dead("orders.eu", "maxlen", true, Some(5));
    let dec = both(&d, &m);
    assert_eq!(dec.line, Some(6));
    assert_eq!(
        dec.outcome,
        Outcome::Forward {
            exchange: String::new(),
            routing_key: "orders.eu.parked".into(),
            keep_headers: true,
            keep_user_id: false
        }
    );
    assert_eq!(dec.outcome.target().as_deref(), Some("orders.eu.parked"));
    let dl = DeadLetter::new(&m);
    assert_eq!(
        d.explain(&dl),
        vec![(0, "RETRY(5) used up: 5 retries".to_string())]
    );
}

#[test]
fn rejected_persistent_follows_the_list_schedule_then_is_left() {
    let d = Decider::new(spec_table());
    for (n, delay) in [1, 2, 3, 5, 8, 24].iter().enumerate() {
        let m = dead("payments", "rejected", true, Some(n as i64));
        let dec = both(&d, &m);
        assert_eq!(dec.line, Some(9));
        assert_eq!(dec.outcome, retry("payments", *delay, n as u32 + 1));
    }
    // Used up: nothing else matches a persistent rejected message of payments.
    let m = dead("payments", "rejected", true, Some(6));
    let dec = both(&d, &m);
    assert_eq!((dec.line, &dec.outcome), (Some(13), &Outcome::Leave));
    let why: Vec<String> = d
        .explain(&DeadLetter::new(&m))
        .into_iter()
        .map(|w| w.1)
        .collect();
    assert_eq!(
        why,
        [
            "DESTQ 'payments' does not match 'orders.*'",
            "DESTQ 'payments' does not match 'orders.*'",
            "RETRY(6) used up: 6 retries",
            "REASON 'rejected' does not match 'expired'",
            "PERSIST(NO) but the message is persistent",
            "DESTQ 'payments' does not match '/^billing\\.(eu|us)$/'",
        ]
    );
}

#[test]
fn expired_is_discarded_and_transient_is_discarded() {
    let d = Decider::new(spec_table());
    let dec = both(&d, &dead("orders.eu", "expired", true, None));
    assert_eq!(
        (dec.line, dec.outcome),
        (Some(10), Outcome::Discard { archive: None })
    );
    let dec = both(&d, &dead("orders.eu", "rejected", false, None));
    assert_eq!(
        (dec.line, dec.outcome),
        (Some(11), Outcome::Discard { archive: None })
    );
}

#[test]
fn billing_forwards_to_exchange_with_substituted_key() {
    let d = Decider::new(spec_table());
    let dec = both(&d, &dead("billing.eu", "rejected", true, Some(6)));
    assert_eq!(dec.line, Some(12));
    assert_eq!(
        dec.outcome,
        Outcome::Forward {
            exchange: "billing.errors".into(),
            routing_key: "billing.eu".into(),
            keep_headers: true,
            keep_user_id: false
        }
    );
    assert_eq!(
        dec.outcome.target().as_deref(),
        Some("billing.errors/billing.eu")
    );
    // billing.asia is not matched by the regex: the catch-all leaves it.
    let dec = both(&d, &dead("billing.asia", "rejected", true, Some(6)));
    assert_eq!(dec.line, Some(13));
}

#[test]
fn no_rule_leaves_the_message() {
    let mut t = spec_table();
    t.rules.pop();
    let d = Decider::new(t);
    let dec = both(&d, &dead("payments", "rejected", true, Some(9)));
    assert_eq!(
        dec,
        Decision {
            rule: None,
            line: None,
            outcome: Outcome::Leave
        }
    );
    let m = dead("payments", "rejected", true, Some(9));
    let dl = DeadLetter::new(&m);
    assert_eq!(d.explain(&dl).len(), 6);
    assert_eq!(
        d.why(&dl, &dec),
        "no rule applies: the message stays on the DLQ"
    );
    let empty = Decider::new(Table::default());
    assert_eq!(both(&empty, &dead("q", "x", true, None)).rule, None);
}

#[test]
fn unlimited_retry_never_gives_up() {
    let t = Table {
        rules: vec![Rule {
            line: 1,
            patterns: Patterns::default(),
            action: Action::Retry(Retry {
                limit: None,
                delay: DelaySchedule {
                    steps: secs(&[1]),
                    backoff: 2.0,
                    max: Duration::from_secs(60),
                },
                put_authority: Default::default(),
            }),
        }],
        ..Default::default()
    };
    let d = Decider::new(t);
    let dec = both(&d, &dead("q", "rejected", true, Some(1_000_000)));
    assert_eq!(dec.outcome, retry("q", 60, 1_000_001));
    let dec = both(&d, &dead("q", "rejected", true, Some(i64::MAX)));
    assert_eq!(dec.outcome, retry("q", 60, u32::MAX));
    let m = dead("q", "rejected", true, Some(3));
    let dl = DeadLetter::new(&m);
    assert_eq!(
        d.why(&dl, &d.decide(&dl)),
        "catch-all rule; attempt 4, no limit"
    );
}

#[test]
fn why_names_what_matched() {
    let d = Decider::new(spec_table());
    let dl_msg = dead("orders.eu", "maxlen", true, Some(2));
    let dl = DeadLetter::new(&dl_msg);
    assert_eq!(
        d.why(&dl, &d.decide(&dl)),
        "DESTQ 'orders.eu' matches 'orders.*', REASON 'maxlen' matches 'maxlen'; attempt 3 of 5"
    );
}

#[test]
fn substitutions_and_default_routing_key() {
    let fwd = |target| Rule {
        line: 1,
        patterns: Patterns::default(),
        action: Action::Forward(Forward {
            target,
            keep_headers: false,
            put_authority: Default::default(),
        }),
    };
    let m = dead("orders", "rejected", true, None);
    let dl = DeadLetter::new(&m);
    let one = |target| {
        Decider::new(Table {
            rules: vec![fwd(target)],
            ..Default::default()
        })
        .decide(&dl)
        .outcome
    };
    assert_eq!(
        one(ForwardTarget::Exchange {
            exchange: tpl(&["err.", "&DESTEX"]),
            routing_key: None
        }),
        Outcome::Forward {
            exchange: "err.shop".into(),
            routing_key: "orders.key".into(),
            keep_headers: false,
            keep_user_id: false
        }
    );
    assert_eq!(
        one(ForwardTarget::Queue(tpl(&[
            "&REASON", "/", "&RKEY", "/", "&REPLYTO", "/", "&DESTQ"
        ]))),
        Outcome::Forward {
            exchange: String::new(),
            routing_key: "rejected/orders.key/replies/orders".into(),
            keep_headers: false,
            keep_user_id: false
        }
    );
    // No x-death routing keys: FWDEX without FWDRKEY uses "".
    let bare = Message::default();
    let dl = DeadLetter::new(&bare);
    let d = Decider::new(Table {
        rules: vec![fwd(ForwardTarget::Exchange {
            exchange: Template::literal("e"),
            routing_key: None,
        })],
        ..Default::default()
    });
    assert_eq!(d.decide(&dl).outcome.target().as_deref(), Some("e/"));
}

#[test]
fn headers_size_rkey_and_properties() {
    let rule = |line, patterns| Rule {
        line,
        patterns,
        action: Action::Leave,
    };
    let t = Table {
        rules: vec![
            rule(
                1,
                Patterns {
                    headers: vec![("tenant".into(), Pattern::generic("acme-*"))],
                    ..Default::default()
                },
            ),
            rule(
                2,
                Patterns {
                    size: Some(SizeBound::Greater(1024)),
                    ..Default::default()
                },
            ),
            rule(
                3,
                Patterns {
                    text: text([
                        (Field::RKey, Some(re("^orders\\.(eu|us)\\.key$"))),
                        (Field::MsgId, g("m?")),
                    ]),
                    ..Default::default()
                },
            ),
            rule(
                4,
                Patterns {
                    text: text([(Field::AppId, g("")), (Field::ReplyTo, g("replies"))]),
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let d = Decider::new(t);
    let mut m = dead("orders.eu", "rejected", true, None);
    assert_eq!(both(&d, &m).line, Some(3));
    m.properties.message_id = Some("m12".into());
    assert_eq!(both(&d, &m).line, Some(4));
    m.properties.app_id = Some("shop".into());
    assert_eq!(both(&d, &m).line, None);
    m.body = vec![b'x'; 2000];
    assert_eq!(both(&d, &m).line, Some(2));
    if let Some(h) = m.properties.headers.as_mut() {
        h.insert("tenant".into(), Value::string("acme-eu"));
    }
    assert_eq!(both(&d, &m).line, Some(1));
    if let Some(h) = m.properties.headers.as_mut() {
        h.insert("tenant".into(), Value::I32(7));
    }
    let dl = DeadLetter::new(&m);
    assert_eq!(
        d.explain(&dl)[0].1,
        "HDR(tenant) '7' does not match 'acme-*'"
    );
}

#[test]
fn unicode_word_boundary_regex_falls_back_correctly() {
    let t = Table {
        rules: vec![Rule {
            line: 1,
            patterns: Patterns {
                text: text([(Field::DestQ, Some(re(r"\bcafé\b")))]),
                ..Default::default()
            },
            action: Action::Leave,
        }],
        ..Default::default()
    };
    let d = Decider::new(t);
    assert_eq!(
        both(&d, &dead("le café noir", "x", true, None)).line,
        Some(1)
    );
    assert_eq!(both(&d, &dead("lecafé", "x", true, None)).line, None);
}

/// `DESTQM(QM1)`, as lowering records it.
fn never_destqm() -> crate::rules::NeverMatches {
    crate::rules::NeverMatches {
        keyword: "DESTQM",
        value: "QM1".into(),
        missing: "AMQP messages carry no queue manager name",
    }
}

/// Regression (IBM's sample table widened to a catch-all): a rule with an MQ-only
/// pattern keyword other than `*` never matches, through the index and the walk, and
/// --explain says why.
#[test]
fn an_mq_only_pattern_keyword_makes_its_rule_never_match() {
    let t = Table {
        rules: vec![
            Rule {
                line: 1,
                patterns: Patterns {
                    never: Some(never_destqm()),
                    ..Default::default()
                },
                action: Action::Forward(Forward {
                    target: ForwardTarget::Queue(tpl(&["&DESTQ"])),
                    keep_headers: false,
                    put_authority: Default::default(),
                }),
            },
            Rule {
                line: 2,
                patterns: Patterns {
                    never: Some(never_destqm()),
                    text: text([(Field::DestQ, g("orders"))]),
                    ..Default::default()
                },
                action: Action::Leave,
            },
            Rule {
                line: 3,
                patterns: Patterns::default(),
                action: Action::Discard { archive: None },
            },
        ],
        ..Default::default()
    };
    let d = Decider::new(t);
    let m = dead("orders", "rejected", true, None);
    assert_eq!(both(&d, &m).line, Some(3));
    let dl = DeadLetter::new(&m);
    assert_eq!(
        d.explain(&dl)[0].1,
        "DESTQM(QM1): AMQP messages carry no queue manager name, so this rule never matches"
    );
}

/// Regression: `HDR(x-death=*)` never matched, because an array has no text. A bare
/// `*` means "present", whatever the header's type; other patterns still need text.
#[test]
fn hdr_star_matches_a_present_header_of_any_type() {
    let rule = |line, name: &str, pattern: &str| Rule {
        line,
        patterns: Patterns {
            headers: vec![(name.to_string(), Pattern::generic(pattern))],
            ..Default::default()
        },
        action: Action::Leave,
    };
    let d = Decider::new(Table {
        rules: vec![rule(1, "x-death", "?*"), rule(2, "x-death", "*")],
        ..Default::default()
    });
    let m = dead("orders", "rejected", true, None);
    assert_eq!(both(&d, &m).line, Some(2));
    let dl = DeadLetter::new(&m);
    assert!(d.explain(&dl)[0].1.contains("array or table"));
    assert_eq!(
        d.why(&dl, &d.decide(&dl)),
        "HDR(x-death) present (an array) matches '*'"
    );
    let mut t = dead("orders", "rejected", true, None);
    if let Some(h) = t.properties.headers.as_mut() {
        h.insert("x-death".into(), Value::Table(FieldTable::new()));
    }
    assert_eq!(both(&d, &t).line, Some(2));
    // Absent still never matches.
    let bare = Message::default();
    assert_eq!(both(&d, &bare).line, None);
}

/// Regression: a retry of a message without a death history has no queue to go back
/// to; the outcome says so, for dry-run and the handler.
#[test]
fn a_retry_without_an_original_queue_is_unroutable() {
    let d = Decider::new(Table {
        rules: vec![Rule {
            line: 1,
            patterns: Patterns::default(),
            action: Action::Retry(Retry {
                limit: Some(3),
                delay: DelaySchedule::default(),
                put_authority: crate::rules::PutAuthority::Ctx,
            }),
        }],
        ..Default::default()
    });
    let bare = Message::default();
    let o = both(&d, &bare).outcome;
    assert_eq!(o.unroutable(), Some("no original queue"));
    assert!(matches!(
        o,
        Outcome::Retry {
            keep_user_id: true,
            ..
        }
    ));
    let o = both(&d, &dead("orders", "rejected", true, None)).outcome;
    assert_eq!(o.unroutable(), None);
    let fwd = |target| Outcome::Forward {
        exchange: String::new(),
        routing_key: target,
        keep_headers: true,
        keep_user_id: false,
    };
    assert_eq!(fwd(String::new()).unroutable(), Some("empty target"));
    assert_eq!(fwd("q".into()).unroutable(), None);
    assert_eq!(Outcome::Leave.unroutable(), None);
}

// --- The index equals the linear walk on random tables and messages. ---

const NAMES: &[&str] = &["orders", "orders.eu", "billing.us", "", "é.x", "a.b.c"];

fn arb_pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        prop::sample::select(NAMES).prop_map(Pattern::generic),
        prop::sample::select(&["orders.*", "*", "?rders*", "*.*", "b*s", "é*"][..])
            .prop_map(Pattern::generic),
        prop::sample::select(&["^orders", "eu|us", "^$", r"\.", "(?i)ORDERS", r"\bb"][..])
            .prop_map(re),
    ]
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        (
            prop::option::weighted(0.5, arb_pattern()),
            prop::option::weighted(0.2, arb_pattern()),
            prop::option::weighted(0.2, arb_pattern()),
            prop::option::weighted(0.5, arb_pattern()),
            prop::option::of(any::<bool>()),
            prop::option::weighted(0.2, arb_pattern()),
        ),
        prop::option::weighted(0.1, arb_pattern()),
        prop::option::weighted(0.1, (any::<bool>(), 0u64..8)),
        prop::option::weighted(0.4, prop::option::of(0u32..4)),
        prop::option::weighted(0.1, Just(never_destqm())),
    )
        .prop_map(
            |((destq, destex, rkey, reason, persist, appid), hdr, size, retry, never)| Rule {
                line: 0,
                patterns: Patterns {
                    text: text([
                        (Field::DestQ, destq),
                        (Field::DestEx, destex),
                        (Field::RKey, rkey),
                        (Field::Reason, reason),
                        (Field::AppId, appid),
                    ]),
                    persist,
                    headers: hdr.map(|p| vec![("h".to_string(), p)]).unwrap_or_default(),
                    size: size.map(|(gt, n)| {
                        if gt {
                            SizeBound::Greater(n)
                        } else {
                            SizeBound::Less(n)
                        }
                    }),
                    never,
                },
                action: match retry {
                    Some(limit) => Action::Retry(Retry {
                        limit,
                        delay: DelaySchedule::default(),
                        put_authority: Default::default(),
                    }),
                    None => Action::Leave,
                },
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        prop::sample::select(NAMES),
        prop::sample::select(NAMES),
        prop::sample::select(NAMES),
        any::<bool>(),
        0i64..6,
        prop::option::of(prop::sample::select(NAMES)),
        prop::collection::vec(prop::sample::select(NAMES), 0..3),
        0usize..8,
        0u8..4,
    )
        .prop_map(
            |(q, reason, app, persistent, retries, hdr, keys, size, shape)| {
                let mut m = dead(q, reason, persistent, Some(retries));
                m.properties.app_id = Some(app.to_string());
                m.body = vec![b'x'; size];
                if let Some(h) = m.properties.headers.as_mut() {
                    if let Some(v) = hdr {
                        // Mostly text; sometimes an array, a table or a number.
                        let value = match shape {
                            0 => Value::Array(vec![Value::string(v)]),
                            1 => Value::Table(FieldTable::new()),
                            2 => Value::I32(7),
                            _ => Value::string(v),
                        };
                        h.insert("h".into(), value);
                    }
                    if let Some(Value::Array(d)) = h.get_mut("x-death")
                        && let Some(Value::Table(e)) = d.first_mut()
                    {
                        e.insert(
                            "routing-keys".into(),
                            Value::Array(keys.iter().map(|k| Value::string(*k)).collect()),
                        );
                    }
                }
                m
            },
        )
}

/// The indexed decision equals the linear walk's, and `explain` lists exactly the rules
/// before the first match, for every message.
fn index_agrees(
    mut rules: Vec<crate::rules::Rule>,
    msgs: &[Message],
) -> Result<(), proptest::test_runner::TestCaseError> {
    for (i, r) in rules.iter_mut().enumerate() {
        r.line = i as u32 + 1;
    }
    let d = Decider::new(Table {
        rules,
        ..Default::default()
    });
    for m in msgs {
        let dl = DeadLetter::new(m);
        prop_assert_eq!(d.decide(&dl), d.decide_linear(&dl));
        let explained = d.explain(&dl);
        let first = d.decide_linear(&dl).rule.unwrap_or(d.table().rules.len());
        prop_assert_eq!(explained.len(), first);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn index_equals_linear_walk(
        rules in prop::collection::vec(arb_rule(), 0..100),
        msgs in prop::collection::vec(arb_message(), 1..20),
    ) {
        index_agrees(rules, &msgs)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Tables that span several bitset words, where patterns are shared by many rules
    /// (dense candidate sets) and rules are driven by different fields.
    #[test]
    fn index_equals_linear_walk_on_large_tables(
        rules in prop::collection::vec(arb_rule(), 64..400),
        msgs in prop::collection::vec(arb_message(), 1..24),
    ) {
        index_agrees(rules, &msgs)?;
    }
}

/// The same decider, used again and again: nothing of one decision is left behind in
/// the per-thread scratch to change the next.
#[test]
fn decisions_do_not_leak_into_each_other() {
    let d = Decider::new(spec_table());
    let msgs = [
        dead("orders.eu", "maxlen", true, Some(1)),
        dead("billing.eu", "rejected", false, None),
        dead("x", "expired", true, Some(9)),
        dead("orders.us", "rejected", true, Some(2)),
    ];
    for _ in 0..3 {
        for m in &msgs {
            let dl = DeadLetter::new(m);
            assert_eq!(d.decide(&dl), d.decide_linear(&dl));
        }
    }
}
