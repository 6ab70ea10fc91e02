//! Check target (SPEC §7): `dlqd check` of any 10,000-rule file, however many regexes,
//! in ≤ 100 ms in one cold process.
//!
//!     cargo bench --bench check            (cold processes, in-process phases, criterion)
//!     cargo bench --bench check -- cold    (only the cold-process figures)
//!
//! Two tables: `mixed` (literal, glob and 1,000 distinct regex patterns, headers, sizes,
//! continuation lines, comments, every action with its keywords) and `regex2500`
//! (2,500 distinct regexes of varied shapes: anchors, alternations, classes, Unicode
//! classes, repetitions, case-insensitive, word boundaries; in four fields). The cold
//! figure runs the `dlqd` binary built with this bench (`dlqd check FILE`, a fresh
//! process each time) `DLQD_BENCH_ROUNDS` times (default 7) and prints the median wall
//! time, the process's CPU time, and the parse / lower / lint split the process logs at
//! debug level. `DLQD_OLD=/path/to/old/dlqd` times another binary in the same run.
//! The generated files are written next to the binary (`bench-check-*.rules`).

use criterion::Criterion;
use dlqd::rules::check_source;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::thread_cpu;

/// A rules file of `n` rules (plus control data and comments), 1 in 10 with a regex.
fn generate(n: usize) -> String {
    let mut s = String::from(
        "* generated for the check benchmark\nINPUTQ(bench.dlq) RETRYINT(60s) WAIT(YES)\n",
    );
    for i in 0..n {
        if i % 50 == 0 {
            s.push_str(&format!("* section {}\n\n", i / 50));
        }
        let rule = match i % 10 {
            3 => format!(
                "DESTQ(/^billing\\.{i}\\.(eu|us)$/) ACTION(FWD) FWDEX(billing.errors) FWDRKEY(&DESTQ)"
            ),
            5 => format!(
                "HDR(x-tenant=t{i}) HDR(x-region=/^eu-[0-9]+$/) SIZE(>{i}KiB) ACTION(PURGE)"
            ),
            _ => plain_rule(i),
        };
        s.push_str(&rule);
        s.push('\n');
    }
    s.push_str("ACTION(IGNORE)\n");
    s
}

/// A rule without a regex, of one of eight shapes.
fn plain_rule(i: usize) -> String {
    match i % 10 {
        0 => format!(
            "REASON(maxlen) DESTQ(orders.{i}.*) ACTION(RETRY) RETRY(5) DELAY(1s) BACKOFF(2)"
        ),
        1 => format!("REASON(maxlen) DESTQ(orders.{i}.*) ACTION(FWD) FWDQ(&DESTQ.parked)"),
        2 | 3 => format!(
            "REASON(rejected) PERSIST(YES) DESTQ(q{i}) ACTION(RETRY) RETRY(6) DELAY(1s,2s,3s,5s,8s,24s)"
        ),
        4 | 5 => format!(
            "APPLNAME(app{i}) MSGTYPE(t?{i}) ACTION(DISCARD) ARCHIVE(/var/lib/dlqd/a{i}.jsonl)"
        ),
        6 => {
            format!("DESTEX(ex{i}) RKEY(k.{i}.*) +\n    ACTION(FWD) FWDQ('parked({i})') HEADER(NO)")
        }
        7 => format!("REASON(expired) DESTQ(exp{i}) ACTION(DISCARD)"),
        8 => format!("USERID(u{i}), CONTENTTYPE(application/*), MSGID(m{i}*) action(leave)"),
        _ => {
            format!("REPLYTO(r{i}) PERSIST(NO) ACTION(RETRY) RETRY(*) DELAY(500ms) MAXDELAY(1m)")
        }
    }
}

/// The `k`-th of the regexes of the `regex2500` table, all distinct, of ten shapes.
fn regex(k: usize) -> String {
    match k % 10 {
        0 => format!(r"^orders\.{k}\.(eu|us|ap)$"),
        1 => format!(r"[a-z]+-{k}-[0-9]{{2,4}}"),
        2 => format!(r"^(?:tenant|client)_{k}(_test)?$"),
        3 => format!(r"\bq{k}\b"),
        4 => format!(r"(?i)billing\.{k}"),
        5 => format!(r"^\d{{3}}-{k}-\w+$"),
        6 => format!(r"\.dlq{k}$"),
        7 => format!(r"^x-(a|b|c|d){{1,3}}-{k}"),
        8 => format!(r"^(prod|stage|dev)\.svc{k}\.[A-Za-z0-9_]+$"),
        _ => format!(r"^t{k}(\.[a-z]+)*\.v[0-9]+$"),
    }
}

/// A 10,000-rule-like table of `n` rules, one in four with a regex (2,500 distinct at
/// `n` = 10,000) in DESTQ, RKEY, APPLNAME or a header; the rest as in [`generate`].
fn generate_regexes(n: usize) -> String {
    let mut s = String::from(
        "* generated for the check benchmark: many regexes\nINPUTQ(bench.dlq) RETRYINT(60s)\n",
    );
    for i in 0..n {
        if i % 50 == 0 {
            s.push_str(&format!("* section {}\n\n", i / 50));
        }
        let rule = if i % 4 == 0 {
            let k = i / 4;
            let re = regex(k);
            match (k / 10) % 4 {
                0 => format!("DESTQ(/{re}/) ACTION(FWD) FWDQ(parked.{k})"),
                1 => format!("RKEY(/{re}/) REASON(rejected) ACTION(RETRY) RETRY(3) DELAY(1s)"),
                2 => format!("APPLNAME(/{re}/) ACTION(DISCARD)"),
                _ => format!("HDR(x-tenant=/{re}/) DESTQ(q{k}*) ACTION(FWD) FWDQ(&DESTQ.t)"),
            }
        } else {
            plain_rule(i)
        };
        s.push_str(&rule);
        s.push('\n');
    }
    s.push_str("ACTION(IGNORE)\n");
    s
}

/// CPU time (user + system) of this process's waited-for children, in clock ticks of
/// 10 ms (Linux: /proc/self/stat fields 16 and 17).
fn children_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields from 3 on: cutime is field 16, cstime 17.
    Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
}

fn rounds() -> usize {
    std::env::var("DLQD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One cold `dlqd check FILE`: wall ms, CPU ms, and the phases it logged (parse,
/// lower, lint in ms) when it logged them.
fn cold_once(bin: &Path, file: &Path) -> (f64, f64, Option<[f64; 3]>) {
    let cpu0 = children_cpu_ticks();
    let t = Instant::now();
    let out = Command::new(bin)
        .arg("check")
        .arg(file)
        .env("DLQD_LOG", "dlqd::rules=debug")
        .output()
        .expect("run dlqd check");
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let cpu = match (cpu0, children_cpu_ticks()) {
        (Some(a), Some(b)) => (b - a) as f64 * 10.0,
        _ => f64::NAN,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(": valid:"),
        "dlqd check {} did not say valid:\n{stdout}",
        file.display()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| -> Option<f64> {
        let at = stderr.find(&format!("{name}="))? + name.len() + 1;
        let v: String = stderr[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        v.parse().ok()
    };
    let phases = match (field("parse_ms"), field("lower_ms"), field("lint_ms")) {
        (Some(p), Some(l), Some(n)) => Some([p, l, n]),
        _ => None,
    };
    (wall, cpu, phases)
}

/// The median figures of `rounds` cold runs, printed as one line.
fn cold(label: &str, bin: &Path, file: &Path, rounds: usize) {
    let _ = cold_once(bin, file); // the file into the page cache
    let (mut walls, mut cpus, mut phases) = (Vec::new(), Vec::new(), [vec![], vec![], vec![]]);
    for _ in 0..rounds {
        let (w, c, p) = cold_once(bin, file);
        walls.push(w);
        cpus.push(c);
        if let Some(p) = p {
            for (v, x) in phases.iter_mut().zip(p) {
                v.push(x);
            }
        }
    }
    let split = if phases[0].is_empty() {
        "phases not logged".to_string()
    } else {
        let [p, l, n] = phases.map(median);
        format!("parse {p:.1}, lower {l:.1}, lint {n:.1}")
    };
    println!(
        "cold `dlqd check` {label:<22} median of {rounds}: {:>6.1} ms wall, {:>5.0} ms CPU (10 ms ticks); {split} (target ≤ 100 ms)",
        median(walls),
        median(cpus),
    );
}

/// Where the time goes in this process, phase by phase (on-CPU ms of this thread).
fn phases(label: &str, source: &str) {
    let cpu = || thread_cpu().as_secs_f64() * 1e3;
    let c = cpu();
    let parsed = dlqd::rules::syntax::parse(source);
    let c_parse = cpu();
    let lowered = dlqd::rules::lower::lower(&parsed.entries);
    let c_lower = cpu();
    let _ = dlqd::rules::lint::lint(&lowered.table, &lowered.spans, lowered.input_queue);
    let c_lint = cpu();
    println!(
        "in-process {label:<22} on CPU: parse {:.1} ms, lower {:.1} ms, lint {:.1} ms",
        c_parse - c,
        c_lower - c_parse,
        c_lint - c_lower
    );
}

fn main() {
    let only_cold = std::env::args().skip(1).any(|a| a == "cold");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_dlqd"));
    let dir = bin.parent().expect("the binary's directory").to_path_buf();
    let tables = [
        ("mixed (1,000 regexes)", "mixed", generate(10_000)),
        ("regex2500", "regex2500", generate_regexes(10_000)),
    ];
    let mut files = Vec::new();
    for (label, name, source) in &tables {
        let checked = check_source("bench.rules", source);
        let table = checked.table.as_ref().expect("the generated file is valid");
        assert_eq!(table.rules.len(), 10_001);
        let file = dir.join(format!("bench-check-{name}.rules"));
        std::fs::write(&file, source).expect("write the generated table");
        println!(
            "{label}: {} bytes, {} rules, {} warnings: {}",
            source.len(),
            table.rules.len(),
            checked.diagnostics.len(),
            file.display()
        );
        files.push((label, file));
    }
    let rounds = rounds();
    let old = std::env::var_os("DLQD_OLD").map(PathBuf::from);
    for (label, file) in &files {
        cold(label, &bin, file, rounds);
        if let Some(old) = &old {
            cold(&format!("{label} [old]"), old, file, rounds);
        }
    }
    if only_cold {
        return;
    }
    for (label, _, source) in &tables {
        phases(label, source);
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    let mut group = c.benchmark_group("check");
    for (_, name, source) in &tables {
        group.bench_function(format!("check_source_10k_rules/{name}"), |b| {
            b.iter(|| check_source("bench.rules", black_box(source)))
        });
    }
    group.finish();
    c.final_summary();
}
