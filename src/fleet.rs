//! Many DLQs from one `dlqd run`: which rules files there are (several `--rules`, or a
//! rules directory's `*.rules` files, sorted), which DLQ each one serves (its INPUTQ),
//! and, when they are read again (SIGHUP), what changes: the [`plan`] from the DLQs
//! served now and the files just read — which DLQs start, which get a new table, which
//! retire. Pure but for reading the files ([`rules_files`], [`read_all`]); the
//! `run` command carries the plan out (src/commands/run/fleet.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::rules::{self, Diagnostic, Table};

/// The extension of the files a rules directory contributes (`orders.rules`).
pub const EXTENSION: &str = "rules";

/// Why the set of rules files cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read rules directory {path}: {error}")]
    Dir { path: String, error: std::io::Error },
    #[error("rules directory {0} holds no *.{EXTENSION} file")]
    EmptyDir(String),
    /// One or more files cannot be served (each reason on its line).
    #[error("{}", .0.join("\n"))]
    Problems(Vec<String>),
}

/// The rules files named by `--rules` arguments: a file as it is, a directory as its
/// `*.rules` files (not its subdirectories), sorted by name; in the order given, each
/// file once.
pub fn rules_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, FleetError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let shown = arg.display().to_string();
            let entries = std::fs::read_dir(arg).map_err(|error| FleetError::Dir {
                path: shown.clone(),
                error,
            })?;
            let mut files = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|error| FleetError::Dir {
                    path: shown.clone(),
                    error,
                })?;
                let path = entry.path();
                if path.extension().is_some_and(|e| e == EXTENSION) && path.is_file() {
                    files.push(path);
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(FleetError::EmptyDir(shown));
            }
            out.extend(files);
        } else {
            out.push(arg.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    Ok(out)
}

/// Whether these `--rules` arguments ask for several DLQs (a directory, or more than one
/// file), as opposed to the one-file run.
pub fn is_fleet(args: &[PathBuf]) -> bool {
    args.len() > 1 || args.iter().any(|p| p.is_dir())
}

/// One rules file as read: its table (with the text it came from, to tell a change) or
/// why it cannot be used (every diagnostic rendered).
#[derive(Debug)]
pub struct Read {
    pub path: PathBuf,
    pub outcome: Result<ReadTable, String>,
}

/// A valid rules file.
#[derive(Debug)]
pub struct ReadTable {
    pub text: String,
    pub table: Table,
    pub warnings: Vec<Diagnostic>,
}

/// Read and check every file.
pub fn read_all(paths: &[PathBuf]) -> Vec<Read> {
    paths.iter().map(|p| read_one(p)).collect()
}

fn read_one(path: &Path) -> Read {
    let shown = path.display().to_string();
    let outcome = rules::read_source(path)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            let checked = rules::check_source(&shown, &text);
            match checked.table {
                Some(table) => Ok(ReadTable {
                    text,
                    table,
                    warnings: checked.diagnostics,
                }),
                None => Err(rules::LoadError::Invalid {
                    errors: checked.errors(),
                    rendered: rules::diagnostic::render_all(&checked.diagnostics, &text),
                    path: shown.clone(),
                }
                .to_string()),
            }
        });
    Read {
        path: path.to_path_buf(),
        outcome,
    }
}

/// What a served DLQ's table came from: its file and that file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub path: PathBuf,
    pub text: String,
}

/// The DLQs served, by name.
pub type Members = BTreeMap<String, Member>;

/// What to do after the files were read.
#[derive(Debug, Default)]
pub struct Plan {
    /// The DLQs served afterwards.
    pub members: Members,
    /// New DLQs, with their tables.
    pub start: Vec<(String, Table)>,
    /// DLQs served before whose file changed, with the new table.
    pub reload: Vec<(String, Table)>,
    /// DLQs no file names any more.
    pub retire: Vec<String>,
    /// Files that could not be used, one line each (an invalid file, no INPUTQ, a DLQ
    /// named twice); a DLQ served before from such a file keeps its old table.
    pub problems: Vec<String>,
}

/// From the DLQs served now (`old`; empty at the start) and the files just read, what
/// changes. A file that cannot be used (invalid, no INPUTQ, or naming a DLQ an earlier
/// file names) is a problem; the DLQ it served before, if any, keeps its table and goes
/// on. A file whose INPUTQ changed retires the old DLQ and starts the new one.
pub fn plan(old: &Members, read: Vec<Read>) -> Plan {
    let mut p = Plan::default();
    // The DLQ each file served before.
    let before: BTreeMap<&Path, &str> = old
        .iter()
        .map(|(q, m)| (m.path.as_path(), q.as_str()))
        .collect();
    let keep_old = |p: &mut Plan, path: &Path| {
        if let Some(q) = before.get(path)
            && let Some(m) = old.get(*q)
            && !p.members.contains_key(*q)
        {
            p.members.insert((*q).to_owned(), m.clone());
        }
    };
    for r in read {
        let shown = r.path.display().to_string();
        let t = match r.outcome {
            Ok(t) => t,
            Err(e) => {
                p.problems.push(e);
                keep_old(&mut p, &r.path);
                continue;
            }
        };
        let Some(queue) = t.table.control.input_queue.clone() else {
            p.problems.push(format!(
                "{shown}: no INPUTQ(...): with several rules files each one names its DLQ in its first entry"
            ));
            keep_old(&mut p, &r.path);
            continue;
        };
        if let Some(other) = p.members.get(&queue) {
            p.problems.push(format!(
                "{shown}: INPUTQ({queue}) is already served by {}",
                other.path.display()
            ));
            keep_old(&mut p, &r.path);
            continue;
        }
        let member = Member {
            path: r.path,
            text: t.text,
        };
        match old.get(&queue) {
            None => p.start.push((queue.clone(), t.table)),
            Some(m) if *m != member => p.reload.push((queue.clone(), t.table)),
            Some(_) => {}
        }
        p.members.insert(queue, member);
    }
    p.retire = old
        .keys()
        .filter(|q| !p.members.contains_key(*q))
        .cloned()
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str, text: &str) -> Read {
        let checked = rules::check_source(path, text);
        Read {
            path: PathBuf::from(path),
            outcome: match checked.table {
                Some(table) => Ok(ReadTable {
                    text: text.to_owned(),
                    table,
                    warnings: checked.diagnostics,
                }),
                None => Err(format!("{path} has errors")),
            },
        }
    }

    fn names(v: &[(String, Table)]) -> Vec<&str> {
        v.iter().map(|(q, _)| q.as_str()).collect()
    }

    const A: &str = "INPUTQ(a.dlq)\nACTION(IGNORE)\n";
    const B: &str = "INPUTQ(b.dlq)\nACTION(IGNORE)\n";
    const C: &str = "INPUTQ(c.dlq)\nACTION(IGNORE)\n";

    #[test]
    fn at_the_start_every_file_starts_its_dlq() {
        let p = plan(
            &Members::new(),
            vec![read("a.rules", A), read("b.rules", B)],
        );
        assert_eq!(names(&p.start), ["a.dlq", "b.dlq"]);
        assert!(p.reload.is_empty() && p.retire.is_empty() && p.problems.is_empty());
        assert_eq!(p.members["b.dlq"].path, PathBuf::from("b.rules"));
    }

    #[test]
    fn a_file_without_inputq_or_naming_a_served_dlq_is_a_problem_naming_it() {
        let p = plan(
            &Members::new(),
            vec![
                read("a.rules", A),
                read("x.rules", "ACTION(IGNORE)\n"),
                read("again.rules", "INPUTQ(a.dlq)\nACTION(DISCARD)\n"),
            ],
        );
        assert_eq!(names(&p.start), ["a.dlq"]);
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(
            p.problems[0].starts_with("x.rules: no INPUTQ"),
            "{:?}",
            p.problems
        );
        assert_eq!(
            p.problems[1],
            "again.rules: INPUTQ(a.dlq) is already served by a.rules"
        );
    }

    #[test]
    fn a_reload_starts_new_reloads_changed_retires_removed_and_leaves_the_rest() {
        let first = plan(
            &Members::new(),
            vec![read("a.rules", A), read("b.rules", B)],
        );
        let changed_b = "INPUTQ(b.dlq)\nACTION(DISCARD)\n";
        let p = plan(
            &first.members,
            vec![read("b.rules", changed_b), read("c.rules", C)],
        );
        assert_eq!(names(&p.start), ["c.dlq"]);
        assert_eq!(names(&p.reload), ["b.dlq"]);
        assert_eq!(p.retire, ["a.dlq"]);
        assert!(p.problems.is_empty());
        assert_eq!(p.members.keys().collect::<Vec<_>>(), ["b.dlq", "c.dlq"]);
        // The same files again: nothing to do.
        let again = plan(
            &p.members,
            vec![read("b.rules", changed_b), read("c.rules", C)],
        );
        assert!(again.start.is_empty() && again.reload.is_empty() && again.retire.is_empty());
    }

    #[test]
    fn an_invalid_file_keeps_its_dlq_on_the_old_table_and_touches_no_other() {
        let first = plan(
            &Members::new(),
            vec![read("a.rules", A), read("b.rules", B)],
        );
        let p = plan(
            &first.members,
            vec![
                read("a.rules", "INPUTQ(a.dlq)\nACTION(FWD)\n"),
                read("b.rules", "INPUTQ(b.dlq)\nACTION(DISCARD)\n"),
            ],
        );
        assert_eq!(p.problems, ["a.rules has errors"]);
        assert!(p.start.is_empty() && p.retire.is_empty());
        assert_eq!(names(&p.reload), ["b.dlq"]);
        assert_eq!(p.members["a.dlq"], first.members["a.dlq"], "old table kept");
        // Without INPUTQ now: the same, the old DLQ goes on.
        let p = plan(
            &first.members,
            vec![read("a.rules", "ACTION(IGNORE)\n"), read("b.rules", B)],
        );
        assert_eq!(p.problems.len(), 1);
        assert!(p.retire.is_empty(), "{:?}", p.retire);
        assert_eq!(p.members["a.dlq"], first.members["a.dlq"]);
    }

    #[test]
    fn a_changed_inputq_retires_the_old_dlq_and_starts_the_new_one() {
        let first = plan(&Members::new(), vec![read("a.rules", A)]);
        let p = plan(
            &first.members,
            vec![read("a.rules", "INPUTQ(z.dlq)\nACTION(IGNORE)\n")],
        );
        assert_eq!(names(&p.start), ["z.dlq"]);
        assert_eq!(p.retire, ["a.dlq"]);
    }

    #[test]
    fn a_directory_gives_its_rules_files_sorted_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["b.rules", "a.rules", "notes.txt", "c.rules~"] {
            std::fs::write(dir.path().join(f), A).expect("write");
        }
        std::fs::create_dir(dir.path().join("sub.rules")).expect("mkdir");
        let extra = dir.path().join("a.rules");
        let got = rules_files(&[dir.path().to_path_buf(), extra.clone()]).expect("listed");
        assert_eq!(
            got,
            [dir.path().join("a.rules"), dir.path().join("b.rules")],
            "sorted, *.rules only, each once"
        );
        assert!(is_fleet(&[dir.path().to_path_buf()]));
        assert!(!is_fleet(std::slice::from_ref(&extra)));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            rules_files(&[empty.path().to_path_buf()]),
            Err(FleetError::EmptyDir(_))
        ));
    }
}
