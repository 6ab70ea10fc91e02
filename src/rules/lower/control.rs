//! Lowering the control entry (`INPUTQ(q) RETRYINT(30s) WAIT(NO)`): only in the first
//! entry, nothing but control keywords; each value read as [`ControlKw`] defines.

use super::{Lowered, Seen, Sink, check_duplicate, mq, resolve};
use crate::rules::control::ControlKw;
use crate::rules::diagnostic::Diagnostic;
use crate::rules::keywords::{Class, Kw};
use crate::rules::syntax::Entry;
use crate::rules::table::Control;

pub(super) fn lower_control(entry: &Entry, first: bool, out: &mut Lowered, sink: &mut Sink) {
    let mut seen = Seen::default();
    let mut control = Control::default();
    for item in &entry.items {
        let Some(kw) = resolve(item, sink) else {
            continue;
        };
        if !check_duplicate(kw, item, &mut seen, sink) {
            continue;
        }
        let ckw = match kw {
            Kw::Control(_) if !first => {
                sink.push(
                    Diagnostic::error(
                        item.keyword_span,
                        format!(
                            "control data {} is allowed only in the first entry of the file",
                            kw.name()
                        ),
                    )
                    .with_help(format!(
                        "move {} to the first line that is not a comment",
                        ControlKw::list(Some("and"))
                    )),
                );
                continue;
            }
            Kw::Control(c) => c,
            _ if kw.class() == Class::MqOnly => {
                sink.push(mq::mq_only(kw, item));
                continue;
            }
            _ => {
                sink.push(
                    Diagnostic::error(
                        item.keyword_span,
                        format!(
                            "{} cannot be part of control data ({})",
                            kw.name(),
                            ControlKw::list(None)
                        ),
                    )
                    .with_help(
                        "write control data on a line of its own, and each rule on its own line",
                    ),
                );
                continue;
            }
        };
        let Some(value) = &item.value else { continue };
        (ckw.info().read)(value, &mut control, sink);
        if ckw == ControlKw::InputQ && control.input_queue.is_some() {
            out.input_queue = Some(value.span);
        }
    }
    if first {
        out.table.control = control;
    }
}
