//! `dlqd completions SHELL` and `dlqd man`: generated from the clap definitions, they
//! name every subcommand; the bash script really completes (sourced into bash), the man
//! pages are roff that man(1) renders (when man-db is installed), and `--out-dir`
//! writes one page per subcommand.

use std::process::{Command, Output, Stdio};

/// Every subcommand of dlqd (tests fail here first when one is added: add it to the
/// man pages list in src/cli.rs too).
const SUBCOMMANDS: [&str; 8] = [
    "check",
    "dry-run",
    "run",
    "capture",
    "inspect",
    "publish",
    "completions",
    "man",
];

fn dlqd(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dlqd");
    assert!(
        o.status.success(),
        "dlqd {args:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// What `dlqd ARGS` prints: data on stdout, nothing on stderr.
fn stdout(args: &[&str]) -> String {
    let o = dlqd(args);
    assert!(
        o.stderr.is_empty(),
        "dlqd {args:?} wrote to stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

#[test]
fn completions_name_every_subcommand_and_option() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        for opt in ["metrics-addr", "stage-queues", "to-origin", "deny-warnings"] {
            assert!(script.contains(opt), "{shell}: no --{opt}");
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dlqd"))
        .args(["completions", "tcsh"])
        .output()
        .expect("run dlqd");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// `COMP_WORDS` → what bash offers, with dlqd's completion script sourced.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = stdout(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dlqd.bash");
    std::fs::write(&file, script).expect("write");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}' || exit 9; COMP_WORDS=({}); COMP_CWORD={cword}; \
         _dlqd dlqd '{}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words[cword],
    );
    let o = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "bash: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_bash_script_completes_subcommands_options_and_values() {
    assert_eq!(bash_complete(&["dlqd", "ru"]), ["run"]);
    assert_eq!(
        bash_complete(&["dlqd", "run", "--metr"]),
        ["--metrics-addr"]
    );
    let shells = bash_complete(&["dlqd", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|c| c == s), "{shells:?}");
    }
    assert_eq!(
        bash_complete(&["dlqd", "run", "--stage-queues", ""]),
        ["classic", "quorum"]
    );
}

/// The page's `.TH` line; clap_mangen puts two string definitions before it.
fn title_line(page: &str) -> &str {
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .expect("a line");
    assert!(first.starts_with(".TH "), "not a man page: {first}");
    first
}

/// man(1)'s rendering of a page file, when man-db is installed (never required).
fn rendered(path: &std::path::Path) -> Option<String> {
    let o = Command::new("man")
        .arg("-l")
        .arg(path)
        .env("MANWIDTH", "100")
        .env_remove("MAN_KEEP_FORMATTING")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .ok()?;
    assert!(
        o.status.success(),
        "man -l {}: {}\n{}",
        path.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    // Bold and underline as overstrikes (`N\bN`) when nroff thinks it writes to a terminal.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&o.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    Some(text)
}

#[test]
fn man_pages_are_roff_and_name_every_subcommand() {
    let version = env!("CARGO_PKG_VERSION");
    let page = stdout(&["man"]);
    let th = title_line(&page);
    assert!(
        th.starts_with(".TH dlqd 1 ") && th.contains(version),
        "{th}"
    );
    for sub in SUBCOMMANDS {
        // roff escapes every `-`.
        let reference = format!("dlqd-{sub}(1)").replace('-', "\\-");
        assert!(page.contains(&reference), "no {reference} in:\n{page}");
    }
    let run = stdout(&["man", "run"]);
    assert!(title_line(&run).starts_with(".TH dlqd-run 1 "), "{run}");
    assert!(run.contains("metrics\\-addr"), "{run}");
    assert!(run.contains("DLQD_URL"), "the environment variable: {run}");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man1");
    dlqd(&["man", "--out-dir", out.to_str().expect("utf-8")]);
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = SUBCOMMANDS.iter().map(|s| format!("dlqd-{s}.1")).collect();
    want.push("dlqd.1".to_owned());
    want.sort();
    assert_eq!(files, want);
    for f in &files {
        let text = std::fs::read_to_string(out.join(f)).expect("page");
        let name = f.trim_end_matches(".1");
        assert!(
            title_line(&text).starts_with(&format!(".TH {name} 1 ")),
            "{f}"
        );
        if let Some(shown) = rendered(&out.join(f)) {
            assert!(shown.contains("NAME"), "{f}:\n{shown}");
            assert!(shown.contains(name), "{f}:\n{shown}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(out.join("dlqd-run.1")).expect("page"),
        run,
        "--out-dir writes what `dlqd man run` prints"
    );
    if let Some(shown) = rendered(&out.join("dlqd.1")) {
        assert!(shown.contains("SUBCOMMANDS"), "{shown}");
        assert!(shown.contains("dlqd-publish(1)"), "{shown}");
    }
}
