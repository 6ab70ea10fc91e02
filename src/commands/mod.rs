//! One file per subcommand: turn validated arguments into work and an exit code.

pub mod capture;
pub mod check;
pub mod completions;
pub mod dry_run;
pub mod inspect;
pub mod man;
pub mod publish;
pub mod run;

/// Generated text to stdout; a reader that went away (`dlqd man | head`) is no error.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Say what was checked after a browse (capture, inspect): the queue's depth again, and
/// how the messages were put back. Never claims more than the check showed.
fn report_put_back(queue: &str, b: &crate::broker::browse::Browsed) {
    use crate::broker::browse::Method;
    if b.fetched == 0 {
        return;
    }
    let how = match b.method {
        Method::Return => "handed back in order",
        Method::Move => "moved round the queue in order (delivery counts start again)",
    };
    if b.intact {
        tracing::info!(
            queue = %queue,
            depth = b.depth_after,
            depth_at_start = b.depth_at_start,
            method = ?b.method,
            "checked: the queue holds {} message(s) again ({} at the start); they were {how}",
            b.depth_after,
            b.depth_at_start
        );
    } else {
        tracing::warn!(
            queue = %queue,
            depth = b.depth_after,
            depth_at_start = b.depth_at_start,
            method = ?b.method,
            "the queue holds {} message(s), {} at the start: another consumer took some \
             meanwhile (the browsed ones were {how})",
            b.depth_after,
            b.depth_at_start
        );
    }
}
