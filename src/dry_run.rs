//! TODO: dry_run
