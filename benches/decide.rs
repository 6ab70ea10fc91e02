//! Decision cost per message at 1, 100, 1 000 and 10 000 rules (SPEC §7: ≤ 1 µs at
//! 1 000 rules, growing sublinearly), indexed decider against the linear reference walk.
//!
//! Tables are generated rules files (parsed by the real parser): mostly DESTQ literals
//! and globs with REASON, some regexes, PERSIST, APPID globs and HDR tests. The messages
//! match one of the last rules, or no rule at all, so a linear walk sees every rule.
//!
//!     cargo bench --bench decide            (criterion, then the summary table)
//!     cargo bench --bench decide -- summary (only the summary table)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use dlqd::dead_letter::DeadLetter;
use dlqd::decide::Decider;
use dlqd::message::{FieldTable, Message, Properties, Value};

mod support;
use support::thread_cpu;

const REASONS: [&str; 3] = ["rejected", "expired", "maxlen"];

/// A rules file of `n` rules, the kind an operator of many services writes.
fn rules_source(n: usize) -> String {
    let mut s = String::from("INPUTQ(all.dlq)\n");
    for i in 0..n {
        let reason = REASONS[i % 3];
        let rule = match i % 10 {
            0..=4 => format!(
                "DESTQ(svc{i}.orders) REASON({reason}) ACTION(RETRY) RETRY(5) DELAY(1s) BACKOFF(2)"
            ),
            5 => format!("DESTQ(svc{i}.orders) ACTION(FWD) FWDQ(&DESTQ.parked)"),
            6 => format!("DESTQ(team{i}.*) REASON({reason}) ACTION(FWD) FWDQ(parked.{i})"),
            7 => format!(
                "DESTQ(/^app{i}\\.(eu|us)\\.[a-z]+$/) ACTION(FWD) FWDEX(errors) FWDRKEY(&DESTQ)"
            ),
            8 => format!("APPID(shop{i}-*) PERSIST(YES) HDR(tenant=acme{i}) ACTION(DISCARD)"),
            _ => format!("DESTQ(svc{i}.*) REASON(/^{reason}$/) ACTION(IGNORE)"),
        };
        s.push_str(&rule);
        s.push('\n');
    }
    s
}

fn decider(n: usize) -> Decider {
    let checked = dlqd::rules::check_source("bench.rules", &rules_source(n));
    let table = checked.table.expect("generated rules are valid");
    assert_eq!(table.rules.len(), n);
    Decider::new(table)
}

fn message(queue: &str, reason: &str, app: &str) -> Message {
    let mut entry = FieldTable::new();
    entry.insert("count".into(), Value::I64(1));
    entry.insert("exchange".into(), Value::string("shop"));
    entry.insert("queue".into(), Value::string(queue));
    entry.insert("reason".into(), Value::string(reason));
    entry.insert(
        "routing-keys".into(),
        Value::Array(vec![Value::string("order.created")]),
    );
    entry.insert("time".into(), Value::Timestamp(1_700_000_000));
    let mut h = FieldTable::new();
    h.insert("x-death".into(), Value::Array(vec![Value::Table(entry)]));
    h.insert("x-dlqd-retries".into(), Value::I64(2));
    h.insert("tenant".into(), Value::string("acme"));
    Message {
        exchange: "dlx".into(),
        routing_key: "order.created".into(),
        properties: Properties {
            delivery_mode: Some(2),
            app_id: Some(app.into()),
            message_id: Some("42".into()),
            headers: Some(h),
            ..Properties::default()
        },
        body: vec![b'x'; 512],
    }
}

/// Messages that match one of the last rules (or, for `none`, no rule).
fn messages(n: usize) -> Vec<(&'static str, Message)> {
    let late = n.saturating_sub(5);
    let reason = REASONS[late % 3];
    vec![
        ("late", message(&format!("svc{late}.orders"), reason, "web")),
        ("none", message("unknown.queue", "rejected", "web")),
    ]
}

/// Rounds per figure (`DLQD_BENCH_ROUNDS`, default 5); the summary shows their median.
fn rounds() -> usize {
    std::env::var("DLQD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (wall ns, CPU ns) per decision, each the median of `rounds()` rounds of ≥ 200 ms
/// of CPU.
fn per_decision(d: &Decider, m: &Message, linear: bool) -> (f64, f64) {
    let dl = DeadLetter::new(m);
    let decide = |n: u64| {
        for _ in 0..n {
            let dec = if linear {
                d.decide_linear(black_box(&dl))
            } else {
                d.decide(black_box(&dl))
            };
            black_box(dec);
        }
    };
    // Warm up, and find a round's length.
    let mut iters = 16u64;
    loop {
        let cpu0 = thread_cpu();
        decide(iters);
        if thread_cpu().saturating_sub(cpu0) > Duration::from_millis(200) {
            break;
        }
        iters *= 2;
    }
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..rounds() {
        let (start, cpu0) = (Instant::now(), thread_cpu());
        decide(iters);
        let (took, cpu) = (start.elapsed(), thread_cpu().saturating_sub(cpu0));
        walls.push(took.as_nanos() as f64 / iters as f64);
        cpus.push(cpu.as_nanos() as f64 / iters as f64);
    }
    (median(walls), median(cpus))
}

fn main() {
    let sizes = [1usize, 100, 1_000, 10_000];
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut summary = Vec::new();
    for &n in &sizes {
        let d = decider(n);
        let mut group = c.benchmark_group(format!("decide/{n}-rules"));
        for (name, m) in messages(n) {
            let dl = DeadLetter::new(&m);
            // The index and the reference walk agree on what they are timed on.
            assert_eq!(d.decide(&dl), d.decide_linear(&dl));
            group.bench_with_input(BenchmarkId::new("indexed", name), &dl, |b, dl| {
                b.iter(|| d.decide(black_box(dl)))
            });
            summary.push((
                n,
                name,
                d.decide(&dl).line,
                per_decision(&d, &m, false),
                per_decision(&d, &m, true),
            ));
        }
        group.finish();
    }
    c.final_summary();
    println!(
        "\nns/decision, median of {} rounds (CPU time of this thread; wall-clock in brackets)",
        rounds()
    );
    println!("rules  message   rule        indexed                linear");
    for (n, name, line, fast, slow) in &summary {
        let rule = line.map_or("-".to_string(), |l| l.to_string());
        println!(
            "{n:>5}  {name:<7}  {rule:>5}  {:>8.0} [{:>8.0}]  {:>10.0} [{:>10.0}]",
            fast.1, fast.0, slow.1, slow.0
        );
    }
    // SPEC §7: sublinear growth, read as the cost at 10 000 rules over that at 1 000.
    let cpu = |n: usize, which: &str, indexed: bool| {
        summary
            .iter()
            .find(|s| s.0 == n && s.1 == which)
            .map(|s| if indexed { s.3.1 } else { s.4.1 })
    };
    for which in ["late", "none"] {
        if let (Some(a), Some(b), Some(la), Some(lb)) = (
            cpu(1_000, which, true),
            cpu(10_000, which, true),
            cpu(1_000, which, false),
            cpu(10_000, which, false),
        ) {
            println!(
                "10k/1k ratio ({which}): indexed {:.2}, linear {:.2}",
                b / a,
                lb / la
            );
        }
    }
}
