//! `dlqd man [COMMAND]`: the man pages generated from the clap definitions
//! (`crate::cli`) — dlqd(1) or dlqd-COMMAND(1) as roff to stdout, or every page into a
//! directory with `--out-dir`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::{Cli, MAN_PAGES, ManArgs};

pub fn run(args: ManArgs) -> anyhow::Result<ExitCode> {
    match &args.out_dir {
        Some(dir) => write_all(dir)?,
        None => super::write_stdout(&render(args.command.as_deref())?)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The roff text of dlqd(1), or of dlqd-`command`(1).
pub fn render(command: Option<&str>) -> anyhow::Result<Vec<u8>> {
    // Built, so subcommands carry their full names (dlqd-run) and the global options.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let cmd = match command {
        None => cmd,
        Some(name) => cmd
            .find_subcommand(name)
            .cloned()
            .with_context(|| format!("no subcommand {name}"))?,
    };
    let mut page = Vec::with_capacity(16 * 1024);
    clap_mangen::Man::new(cmd)
        .source(concat!("dlqd ", env!("CARGO_PKG_VERSION")))
        .manual("dlqd manual")
        .render(&mut page)?;
    Ok(page)
}

/// dlqd.1 and dlqd-COMMAND.1 for every subcommand, into `dir` (created if missing).
fn write_all(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pages = std::iter::once((None, "dlqd.1".to_owned()))
        .chain(MAN_PAGES.iter().map(|c| (Some(*c), format!("dlqd-{c}.1"))));
    for (command, file) in pages {
        let path = dir.join(file);
        std::fs::write(&path, render(command)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(dir = %dir.display(), pages = MAN_PAGES.len() + 1, "man pages written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.TH` line of a page (clap_mangen puts two string definitions before it).
    fn title(page: &[u8]) -> String {
        let text = String::from_utf8(page.to_vec()).expect("utf-8");
        text.lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_else(|| panic!("no .TH line:\n{text}"))
            .to_owned()
    }

    #[test]
    fn every_subcommand_has_a_page_and_the_list_is_complete() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        assert_eq!(names, MAN_PAGES);
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            title(&render(None).expect("render")),
            format!(".TH dlqd 1  \"dlqd {version}\" \"dlqd manual\"")
        );
        for name in MAN_PAGES {
            let t = title(&render(Some(name)).expect("render"));
            assert!(t.starts_with(&format!(".TH dlqd-{name} 1 ")), "{t}");
            assert!(t.contains(version), "{t}");
        }
    }
}
