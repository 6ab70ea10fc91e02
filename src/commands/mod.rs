//! One file per subcommand: turn validated arguments into work and an exit code.

pub mod capture;
pub mod check;
pub mod dry_run;
pub mod inspect;
pub mod run;
