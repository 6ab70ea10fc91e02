//! Dry-run over a 1 000 000-message capture (SPEC §7: ≤ 1.5 × the time it takes only to
//! parse it; memory does not grow with the capture).
//!
//! Generates target/dry-run-bench-1m.jsonl once (real dead-letter shapes from
//! fixtures/captures/, message ids and retry counts varied), then times
//!   parse only: read lines + capture::from_line
//!   dry-run:    read + from_line + facts + decide + the text report into a sink
//! and prints both, their ratio and this process's peak RSS (VmHWM).
//!
//!     cargo bench --bench dry_run

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dlqd::capture;
use dlqd::decide::Decider;
use dlqd::dry_run::{DryRun, Format, Options};
use dlqd::message::Value;

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

fn parse_only(path: &Path) -> (f64, usize) {
    let start = Instant::now();
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
    (start.elapsed().as_secs_f64(), n)
}

fn dry_run(path: &Path, decider: &Decider, format: Format) -> (f64, u64) {
    let start = Instant::now();
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
    (start.elapsed().as_secs_f64(), summary.messages)
}

fn main() {
    let path = root().join("target/dry-run-bench-1m.jsonl");
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

    // Warm the page cache so both runs read from memory.
    let _ = parse_only(&path);
    let (parse, n) = parse_only(&path);
    let (text, m1) = dry_run(&path, &decider, Format::Text);
    let (json, m2) = dry_run(&path, &decider, Format::Json);
    assert_eq!(
        (n as u64, m1, m2),
        (MESSAGES as u64, MESSAGES as u64, MESSAGES as u64)
    );

    println!("capture: {MESSAGES} messages, {} MiB", size >> 20);
    println!(
        "parse only:           {parse:.2} s  ({:.0} ns/message)",
        parse * 1e9 / n as f64
    );
    println!(
        "dry-run, text report: {text:.2} s  ({:.0} ns/message)  ratio {:.2}",
        text * 1e9 / n as f64,
        text / parse
    );
    println!(
        "dry-run, JSON report: {json:.2} s  ({:.0} ns/message)  ratio {:.2}",
        json * 1e9 / n as f64,
        json / parse
    );
    println!("peak RSS (VmHWM): {} KiB", vm_hwm_kib());
    let _ = std::io::stdout().lock().flush();
}
