//! Dry-run over a 1 000 000-message capture (SPEC §7: ≤ 1.2 × the time it takes only to
//! parse it; memory does not grow with the capture).
//!
//! Generates target/dry-run-bench-1m.jsonl once (real dead-letter shapes from
//! fixtures/captures/, message ids and retry counts varied), then times, in rounds
//! that interleave them,
//!   parse only: read lines + capture::from_line
//!   dry-run:    read + from_line + facts + decide + the text (or JSON) report into a sink
//! and prints the medians (CPU time of this thread, wall-clock in brackets), the median
//! of each round's ratio, and this process's peak RSS (VmHWM).
//!
//!     cargo bench --bench dry_run
//!
//! `DLQD_BENCH_ROUNDS` (default 3) sets the rounds; `DLQD_DRY_RUN_CAPTURE=FILE` times
//! another capture instead (e.g. a few thousand lines of it under callgrind).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dlqd::capture;
use dlqd::decide::Decider;
use dlqd::dry_run::{DryRun, Format, Options};
use dlqd::message::Value;

mod support;
use support::thread_cpu;

const MESSAGES: usize = 1_000_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(path: &Path) {
    let mut samples = Vec::new();
    for name in ["maxlen", "rejected", "expired", "delayed"] {
        let p = root().join(format!("fixtures/captures/{name}.jsonl"));
        for m in capture::Reader::new(BufReader::new(File::open(&p).expect("fixture"))) {
            samples.push(m.expect("fixture line"));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("capture directory");
    }
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::new(File::create(&tmp).expect("create capture"));
    for i in 0..MESSAGES {
        let mut m = samples[i % samples.len()].clone();
        m.properties.message_id = Some(format!("msg-{i}"));
        if let Some(h) = m.properties.headers.as_mut() {
            h.insert("x-dlqd-retries".into(), Value::I64((i % 8) as i64));
        }
        capture::write_line(&mut out, &m).expect("write capture");
    }
    out.flush().expect("flush capture");
    drop(out);
    std::fs::rename(&tmp, path).expect("rename capture");
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// (wall s, CPU s) of `f`, and what it returned.
fn timed<T>(f: impl FnOnce() -> T) -> ((f64, f64), T) {
    let (start, cpu0) = (Instant::now(), thread_cpu());
    let out = f();
    let cpu = thread_cpu().saturating_sub(cpu0);
    ((start.elapsed().as_secs_f64(), cpu.as_secs_f64()), out)
}

fn parse_only(path: &Path) -> u64 {
    let mut n = 0;
    let mut reader = capture::Reader::new(BufReader::with_capacity(
        256 * 1024,
        File::open(path).expect("open"),
    ));
    while let Some(line) = reader.next_line() {
        let (text, no) = line.expect("line");
        let m = capture::from_line(text, no).expect("message");
        std::hint::black_box(&m);
        n += 1;
    }
    n
}

fn dry_run(path: &Path, decider: &Decider, format: Format) -> u64 {
    let sink = BufWriter::with_capacity(64 * 1024, std::io::sink());
    let mut dr = DryRun::new(
        decider,
        sink,
        Options {
            format,
            explain: false,
        },
    );
    dr.feed(
        "bench",
        BufReader::with_capacity(256 * 1024, File::open(path).expect("open")),
    )
    .expect("dry-run");
    let summary = dr.finish().expect("finish");
    summary.messages
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let path = match std::env::var_os("DLQD_DRY_RUN_CAPTURE") {
        Some(p) => PathBuf::from(p),
        None => root().join("target/dry-run-bench-1m.jsonl"),
    };
    if !path.exists() {
        let t = Instant::now();
        generate(&path);
        println!(
            "generated {} in {:.1}s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let source =
        std::fs::read_to_string(root().join("fixtures/rules/spec-example.rules")).expect("rules");
    let table = dlqd::rules::check_source("spec-example.rules", &source)
        .table
        .expect("valid rules");
    let decider = Decider::new(table);
    let rounds: usize = std::env::var("DLQD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);

    // Warm the page cache so every run reads from memory.
    let n = parse_only(&path);
    // Per round: (wall, cpu) of parse, text, JSON.
    let mut runs: Vec<[(f64, f64); 3]> = Vec::new();
    for _ in 0..rounds {
        let (parse, n0) = timed(|| parse_only(&path));
        let (text, n1) = timed(|| dry_run(&path, &decider, Format::Text));
        let (json, n2) = timed(|| dry_run(&path, &decider, Format::Json));
        assert_eq!((n0, n1, n2), (n, n, n));
        runs.push([parse, text, json]);
    }

    let med = |i: usize, cpu: bool| {
        median(
            runs.iter()
                .map(|r| if cpu { r[i].1 } else { r[i].0 })
                .collect(),
        )
    };
    let ratio = |i: usize, cpu: bool| {
        median(
            runs.iter()
                .map(|r| {
                    if cpu {
                        r[i].1 / r[0].1
                    } else {
                        r[i].0 / r[0].0
                    }
                })
                .collect(),
        )
    };
    println!(
        "capture: {n} messages, {} MiB; medians of {rounds} rounds",
        size >> 20
    );
    println!(
        "CPU time of this thread, wall-clock in brackets; ratio = the median of the rounds' ratios"
    );
    let ns = |s: f64| s * 1e9 / n as f64;
    println!(
        "parse only:           {:.2} s [{:.2} s]  ({:.0} ns/message)",
        med(0, true),
        med(0, false),
        ns(med(0, true))
    );
    for (i, name) in [(1, "text"), (2, "JSON")] {
        println!(
            "dry-run, {name} report: {:.2} s [{:.2} s]  ({:.0} ns/message)  ratio {:.2} [{:.2}]",
            med(i, true),
            med(i, false),
            ns(med(i, true)),
            ratio(i, true),
            ratio(i, false)
        );
    }
    println!("peak RSS (VmHWM): {} KiB", vm_hwm_kib());
    let _ = std::io::stdout().lock().flush();
}
