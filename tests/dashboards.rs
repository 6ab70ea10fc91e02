//! The shipped dashboard and alerts (`dist/grafana/*.json`, `dist/prometheus/*.yml`)
//! against what dlqd really exports: every `dlqd_*` name they use is scraped from a
//! `dlqd run --metrics-addr` handling real dead letters (rejected by a consumer), and
//! every family that run exports is on the dashboard. Also: the JSON is a Grafana
//! dashboard (schemaVersion, variables, panels with targets), its queries are PromQL
//! (`promtool check rules` on them as recording rules), and the alerts pass
//! `promtool check rules` and their unit tests (`promtool test rules`).
//! Needs RabbitMQ (`DLQD_TEST_URL`) and promtool (`apt-get install -y prometheus`).

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Broker, Way, props, start_dlqd, unique};
use serde_json::Value;
use support::http::{free_addr, scrape};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Files in `dist/DIR` ending in `ext`, sorted; at least one.
fn dist_files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = repo().join("dist").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(ext)))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *{ext} in {}", dir.display());
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The alert rule files (not their unit tests).
fn alert_files() -> Vec<PathBuf> {
    dist_files("prometheus", ".yml")
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".test.yml"))
        .collect()
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    dist_files("grafana", ".json")
        .into_iter()
        .map(|p| {
            let v = serde_json::from_str(&read(&p))
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p, v)
        })
        .collect()
}

/// Run promtool; fail (never skip) when it is not installed.
fn promtool(args: &[&str], dir: &Path) -> Output {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH; it checks dist/prometheus: install it with \
             `apt-get install -y prometheus` (Debian: the binary /usr/bin/promtool)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    }
}

fn assert_success(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every identifier `dlqd_...` in a PromQL text (crude, and enough: dlqd's metric names
/// are the only PromQL identifiers that start so).
fn dlqd_names(promql: &str, into: &mut BTreeSet<String>) {
    let bytes = promql.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(at) = promql[i..].find("dlqd_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            into.insert(promql[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
}

/// The PromQL of an alert file: its text without comments (`#` to the end of a line;
/// the shipped files have no `#` inside a value).
fn alert_promql(path: &Path) -> String {
    read(path)
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every panel of a dashboard, rows' collapsed panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels is an array") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title, refId, expr) of every query of a dashboard, and the variables' queries.
fn dashboard_queries(dash: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or("?").to_owned(),
                t["refId"].as_str().unwrap_or("?").to_owned(),
                t["expr"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    out
}

/// The metric selectors of the variables' `label_values(...)` queries.
fn variable_queries(dash: &Value) -> Vec<(String, String)> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_default();
            (v["name"].as_str().unwrap_or("?").to_owned(), q.to_owned())
        })
        .collect()
}

/// Grafana's variables in a query replaced by what makes it plain PromQL.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "6h")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$queue", ".*")
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = repo().join("dist/prometheus");
    for f in alert_files() {
        let o = promtool(&["check", "rules", f.to_str().expect("utf-8")], &dir);
        assert_success("promtool check rules", &o);
    }
    for t in dist_files("prometheus", ".test.yml") {
        let o = promtool(&["test", "rules", t.to_str().expect("utf-8")], &dir);
        assert_success("promtool test rules", &o);
    }
    // The required alerts are there.
    let text = alert_files().iter().map(|f| read(f)).collect::<String>();
    for alert in [
        "DlqdDown",
        "DlqdDisconnected",
        "DlqdActionsFailing",
        "DlqdDlqDepthGrowing",
        "DlqdDeadLettersWaitingTooLong",
    ] {
        assert!(
            text.contains(&format!("- alert: {alert}\n")),
            "no alert {alert}"
        );
        let tests = dist_files("prometheus", ".test.yml")
            .iter()
            .map(|f| read(f))
            .collect::<String>();
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "alert {alert} has no unit test"
        );
    }
}

#[test]
fn the_grafana_dashboard_is_a_dashboard() {
    const BUILTIN: [&str; 4] = ["__rate_interval", "__interval", "__range", "__all"];
    for (path, dash) in dashboards() {
        let name = path.display();
        assert!(
            dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{name}: schemaVersion"
        );
        for key in ["title", "uid"] {
            assert!(
                dash[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {key}"
            );
        }
        let vars: BTreeSet<&str> = dash["templating"]["list"]
            .as_array()
            .expect("templating.list")
            .iter()
            .map(|v| v["name"].as_str().expect("variable name"))
            .collect();
        for v in ["datasource", "job", "instance", "queue"] {
            assert!(vars.contains(v), "{name}: no variable {v}");
        }
        let (_, queue_var) = variable_queries(&dash)
            .into_iter()
            .find(|(n, _)| n == "queue")
            .expect("queue variable");
        assert!(
            queue_var.starts_with("label_values(dlqd_") && queue_var.ends_with(", queue)"),
            "{name}: the queue variable lists a dlqd metric's queue label: {queue_var}"
        );

        let mut ids = BTreeSet::new();
        let mut queries = 0;
        for p in panels(&dash) {
            let title = p["title"].as_str().unwrap_or("?");
            let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: id"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64(), g["w"].as_u64());
            assert!(
                x.zip(w).is_some_and(|(x, w)| x + w <= 24) && g["h"].as_u64().is_some(),
                "{name}: {title}: gridPos {g}"
            );
            if p["type"] == "row" {
                continue;
            }
            assert!(p["type"].is_string(), "{title}: type");
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{title}: datasource"
            );
            let targets = p["targets"]
                .as_array()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| panic!("{name}: {title}: no targets"));
            let mut refs = BTreeSet::new();
            for t in targets {
                let r = t["refId"].as_str().expect("refId");
                assert!(refs.insert(r), "{title}: refId {r} twice");
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(!expr.is_empty(), "{title}/{r}: no expr");
                queries += 1;
                // Every variable a query uses is defined (or Grafana's own).
                for (i, _) in expr.match_indices('$') {
                    let var: String = expr[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        vars.contains(var.as_str()) || BUILTIN.contains(&var.as_str()),
                        "{title}/{r}: unknown variable ${var} in {expr}"
                    );
                }
                // Per-DLQ queries filter on the queue variable, so they work with the
                // queue label (and without it: `=~".*"` matches a missing label).
                if expr.contains("dlqd_") {
                    assert!(expr.contains(r#"queue=~"$queue""#), "{title}/{r}: {expr}");
                }
            }
        }
        assert!(queries >= 10, "{name}: {queries} queries");
    }
}

#[test]
fn the_dashboard_queries_are_promql() {
    // As recording rules, promtool parses every query.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (path, dash) in dashboards() {
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
        let stem: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut all = dashboard_queries(&dash);
        all.extend(
            variable_queries(&dash)
                .into_iter()
                .map(|(n, q)| (format!("var {n}"), "V".to_owned(), q)),
        );
        for (i, (title, r, expr)) in all.iter().enumerate() {
            let expr = match expr.strip_prefix("label_values(") {
                // label_values(SELECTOR, label): the selector is the PromQL.
                Some(rest) => rest
                    .rsplit_once(',')
                    .map(|(sel, _)| sel.to_owned())
                    .expect("label_values(selector, label)"),
                None => expr.clone(),
            };
            let expr = substitute(&expr);
            assert!(!expr.contains('$'), "{title}/{r}: {expr}");
            rules.push_str(&format!(
                "      - record: dashboard:{stem}:q{i}\n        expr: {}\n",
                serde_json::to_string(&expr).expect("a JSON string is a YAML string")
            ));
        }
    }
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &rules).expect("write");
    let o = promtool(&["check", "rules", "dashboard-queries.yml"], dir.path());
    assert_success(&format!("promtool check rules on\n{rules}"), &o);
}

// ---- against a real run ----

/// The families of an OpenMetrics text (`# TYPE name type`), and the sample names
/// each may have (OpenMetrics adds `_total` to counters; histograms have `_bucket`,
/// `_count`, `_sum`; `_created` is optional).
fn families(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" | "gaugehistogram" => &["_bucket", "_count", "_sum", "_created"],
                "summary" => &["", "_count", "_sum", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            (
                name.to_owned(),
                suffixes.iter().map(|s| format!("{name}{s}")).collect(),
            )
        })
        .collect()
}

/// The names of the sample lines of an OpenMetrics text.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The sum of the samples of `name` whose labels contain every `k="v"` of `with`.
fn total(text: &str, name: &str, with: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_use_is_exported_by_a_real_run() {
    // What the shipped files use.
    let mut used_by_alerts = BTreeSet::new();
    for f in alert_files() {
        dlqd_names(&alert_promql(&f), &mut used_by_alerts);
    }
    let mut used_by_dashboard = BTreeSet::new();
    for (_, dash) in dashboards() {
        for (_, _, expr) in dashboard_queries(&dash) {
            dlqd_names(&expr, &mut used_by_dashboard);
        }
        for (_, q) in variable_queries(&dash) {
            dlqd_names(&q, &mut used_by_dashboard);
        }
    }
    assert!(used_by_alerts.len() >= 4, "{used_by_alerts:?}");
    assert!(used_by_dashboard.len() >= 6, "{used_by_dashboard:?}");

    // A real run: rejected dead letters, forwarded, retried, failing and left.
    let mut b = Broker::connect().await;
    let dlq = unique("dash-dlq");
    let work = format!("{dlq}.work");
    let target = unique("dash-target");
    let missing = unique("dash-no-such-exchange");
    b.work_queue(&work, &dlq, Way::Reject).await;
    b.queue(&target, &[]).await;
    let plan = [("fwd", 4u32), ("retry", 3), ("fail", 2), ("leave", 3)];
    let mut messages = Vec::new();
    for (act, n) in plan {
        for i in 0..n {
            let id = format!("{act}-{i}");
            messages.push((format!("body {id}").into_bytes(), props(&id, act)));
        }
    }
    let sent = messages.len() as u32;
    b.dead_letter(&work, &dlq, Way::Reject, &messages).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = common::rules_file(
        dir.path(),
        &format!(
            "INPUTQ({dlq})\n\
             HDR(act=fwd) ACTION(FWD) FWDQ({target})\n\
             HDR(act=retry) ACTION(RETRY) RETRY(1)\n\
             HDR(act=fail) ACTION(FWD) FWDEX({missing}) FWDRKEY(x)\n\
             ACTION(IGNORE)\n"
        ),
    );
    // A second DLQ that does not exist: served beside the first, it exports the
    // unavailability metrics (dlqd_dlq_up 0, dlqd_dlq_unavailable_total).
    let absent = unique("dash-absent-dlq");
    let absent_rules = dir.path().join("absent.rules");
    std::fs::write(&absent_rules, format!("INPUTQ({absent})\nACTION(IGNORE)\n"))
        .expect("write absent.rules");
    let addr = free_addr();
    let mut d = start_dlqd(
        dir.path(),
        &[
            "--rules",
            rules.to_str().expect("utf-8 path"),
            "--rules",
            absent_rules.to_str().expect("utf-8 path"),
            "--metrics-addr",
            &addr.to_string(),
        ],
    );

    // Scrape until every message is accounted for in the metrics.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        if let Some(t) = scrape(addr).await {
            let done = total(&t, "dlqd_messages_total", &[r#"action="forward""#]) == 4.0
                && total(&t, "dlqd_messages_total", &[r#"action="retry""#]) == 3.0
                && total(&t, "dlqd_action_failures_total", &[]) == 2.0
                && total(&t, "dlqd_messages_total", &[r#"action="leave""#]) >= 5.0
                && total(&t, "dlqd_processing_seconds_count", &[]) >= f64::from(sent)
                && total(&t, "dlqd_dlq_unavailable_total", &[]) >= 1.0;
            if done {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "the metrics never counted every message; last scrape:\n{t}\nstderr:\n{}",
                d.stderr_tail(40)
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "no /metrics at {addr}; stderr:\n{}",
                d.stderr_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The gauges are there from the start.
    assert!(text.contains("\ndlqd_dlq_depth{"), "{text}");
    let served = format!(r#"queue="{dlq}""#);
    let absent_label = format!(r#"queue="{absent}""#);
    assert_eq!(total(&text, "dlqd_connected", &[&served]), 1.0, "{text}");
    assert_eq!(total(&text, "dlqd_dlq_up", &[&served]), 1.0, "{text}");
    assert_eq!(total(&text, "dlqd_dlq_up", &[&absent_label]), 0.0, "{text}");
    assert_eq!(
        total(&text, "dlqd_retries_total", &[r#"attempt="1""#]),
        3.0,
        "{text}"
    );

    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status:?}; stderr:\n{}", d.stderr());

    // Nothing lost: forwarded 4, retried 3 (back on the work queue), 5 left.
    let left = dlqd::stage::left_queue(&dlq);
    assert_eq!(b.count(&target).await, 4);
    assert_eq!(b.count(&work).await, 3);
    b.wait_total(&[&dlq, &left], 5, Duration::from_secs(10))
        .await;
    assert_eq!(4 + 3 + 5, sent);

    // Every name the files use is a sample name of a family dlqd exports, and that run
    // exported a sample of it.
    let fams = families(&text);
    let samples = sample_names(&text);
    let allowed: BTreeSet<&String> = fams.values().flatten().collect();
    for (what, used) in [
        ("dist/prometheus", &used_by_alerts),
        ("dist/grafana", &used_by_dashboard),
    ] {
        for name in used {
            assert!(
                allowed.contains(name),
                "{what} uses {name}, which is no sample name of a family dlqd exports \
                 ({allowed:?}); the scrape:\n{text}"
            );
            assert!(
                samples.contains(name),
                "{what} uses {name}: the real run exported no sample of it:\n{text}"
            );
        }
    }
    // And the dashboard shows every family dlqd exports.
    for (family, names) in &fams {
        assert!(
            names.iter().any(|n| used_by_dashboard.contains(n)),
            "dist/grafana has no panel for {family} (samples {names:?})"
        );
    }
    b.cleanup().await;
}
