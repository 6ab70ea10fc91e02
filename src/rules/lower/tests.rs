//! Lowering's tests: each rules text against the table it lowers to, or its errors.

use crate::rules::check_source;
use crate::rules::diagnostic::Severity;
use crate::rules::field::Field;
use crate::rules::pattern::Pattern;
use crate::rules::table::*;
use std::time::Duration;

fn pat(p: &Pattern) -> String {
    match p {
        Pattern::Literal(s) => format!("'{s}'"),
        Pattern::Glob(s) => format!("g'{s}'"),
        Pattern::Regex(r) => format!("/{}/", r.as_str()),
    }
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn tmpl(t: &Template) -> String {
    t.parts
        .iter()
        .map(|p| match p {
            TemplatePart::Literal(s) => s.clone(),
            TemplatePart::Var(v) => format!("&{v:?}"),
        })
        .collect()
}

fn putaut(p: PutAuthority) -> String {
    match p {
        PutAuthority::Def => String::new(),
        PutAuthority::Ctx => " putaut=CTX".into(),
    }
}

fn describe_rule(r: &Rule) -> String {
    let p = &r.patterns;
    let mut out = vec![format!("L{}", r.line)];
    for &field in Field::text() {
        if let Some(f) = p.text(field) {
            let name = field.keyword().to_ascii_lowercase();
            out.push(format!("{name}={}", pat(f)));
        }
    }
    if let Some(b) = p.persist {
        out.push(format!("persist={b}"));
    }
    for (n, h) in &p.headers {
        out.push(format!("hdr:{n}={}", pat(h)));
    }
    match p.size {
        Some(SizeBound::Greater(n)) => out.push(format!("size>{n}")),
        Some(SizeBound::Less(n)) => out.push(format!("size<{n}")),
        None => {}
    }
    if let Some(n) = &p.never {
        out.push(format!("never={}({})", n.keyword, n.value));
    }
    out.push("=>".into());
    out.push(match &r.action {
        Action::Retry(rt) => format!(
            "retry({}) delay=[{}] x{} max={}{}",
            rt.limit.map_or("*".to_string(), |n| n.to_string()),
            rt.delay
                .steps
                .iter()
                .map(|d| dur(*d))
                .collect::<Vec<_>>()
                .join(","),
            rt.delay.backoff,
            dur(rt.delay.max),
            putaut(rt.put_authority)
        ),
        Action::Forward(f) => {
            let t = match &f.target {
                ForwardTarget::Queue(q) => format!("fwdq({})", tmpl(q)),
                ForwardTarget::Exchange {
                    exchange,
                    routing_key,
                } => format!(
                    "fwdex({}) rkey({})",
                    tmpl(exchange),
                    routing_key.as_ref().map_or("-".into(), tmpl)
                ),
            };
            format!(
                "{t}{}{}",
                if f.keep_headers { "" } else { " noheader" },
                putaut(f.put_authority)
            )
        }
        Action::Discard { archive } => match archive {
            Some(a) => format!("discard archive={}", a.display()),
            None => "discard".into(),
        },
        Action::Leave => "leave".into(),
    });
    out.join(" ")
}

/// The table (control data when not default, then one rule per `; `), or every
/// error as `E l:c message`; warnings are left to the lint tests.
fn describe(source: &str) -> String {
    let c = check_source("t", source);
    match &c.table {
        Some(t) => {
            let mut parts = Vec::new();
            if t.control != Control::default() {
                let mut ctl = format!(
                    "ctl in={} int={} wait={:?}",
                    t.control.input_queue.as_deref().unwrap_or("-"),
                    dur(t.control.retry_interval),
                    t.control.wait
                );
                if let Some(rate) = t.control.rate {
                    ctl.push_str(&format!(" rate={rate}"));
                }
                parts.push(ctl);
            }
            parts.extend(t.rules.iter().map(describe_rule));
            parts.join("; ")
        }
        None => c
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("E {}:{} {}", d.line, d.column, d.message))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn check(input: &str, expected: &str) {
    assert_eq!(describe(input), expected, "input: {input:?}");
}

#[test]
fn lowers() {
    let cases: &[(&str, &str)] = &[
        // Patterns.
        ("DESTQ(orders) ACTION(IGNORE)", "L1 destq='orders' => leave"),
        (
            "DESTQ(orders.*) ACTION(LEAVE)",
            "L1 destq=g'orders.*' => leave",
        ),
        (
            "DESTQ(/^a(b|c)$/) ACTION(IGNORE)",
            "L1 destq=/^a(b|c)$/ => leave",
        ),
        (r"RKEY(/a\/b/) ACTION(IGNORE)", r"L1 rkey=/a\/b/ => leave"),
        (
            "DESTEX(ex) RKEY(k.?) ACTION(IGNORE)",
            "L1 destex='ex' rkey=g'k.?' => leave",
        ),
        (
            "APPID(a) USERID(u) TYPE(t) CONTENTTYPE(c) MSGID(m) REPLYTO(r) ACTION(IGNORE)",
            "L1 appid='a' userid='u' type='t' contenttype='c' msgid='m' replyto='r' => leave",
        ),
        (
            "HDR(x-a=1) HDR( x-b = /^2$/ ) ACTION(IGNORE)",
            "L1 hdr:x-a='1' hdr:x-b=/^2$/ => leave",
        ),
        ("HDR('x-a=(1)') ACTION(IGNORE)", "L1 hdr:x-a='(1)' => leave"),
        ("SIZE(>1KiB) ACTION(IGNORE)", "L1 size>1024 => leave"),
        ("SIZE(< 2 mib) ACTION(IGNORE)", "L1 size<2097152 => leave"),
        ("SIZE(>100) ACTION(IGNORE)", "L1 size>100 => leave"),
        ("PERSIST(yes) ACTION(IGNORE)", "L1 persist=true => leave"),
        // runmqdlq aliases.
        (
            "APPLNAME(a) MSGTYPE(t) REPLYQ(r) FORMAT(text/plain) ACTION(IGNORE)",
            "L1 appid='a' type='t' contenttype='text/plain' replyto='r' => leave",
        ),
        (
            "PERSIST(MQPER_PERSISTENT) ACTION(IGNORE)",
            "L1 persist=true => leave",
        ),
        (
            "persist(mqper_not_persistent) action(ignore)",
            "L1 persist=false => leave",
        ),
        (
            "REASON(MQRC_Q_FULL) ACTION(IGNORE)",
            "L1 reason='maxlen' => leave",
        ),
        (
            "REASON(MQFB_EXPIRATION) ACTION(IGNORE)",
            "L1 reason='expired' => leave",
        ),
        // An MQ-only pattern keyword: `*` is ignored, anything else never matches.
        (
            "DESTQM(QM1) DESTQ(a) ACTION(IGNORE)",
            "L1 destq='a' never=DESTQM(QM1) => leave",
        ),
        ("DESTQM(*) DESTQ(a) ACTION(IGNORE)", "L1 destq='a' => leave"),
        (
            "REPLYQM('?*') FEEDBACK(MQFB_COA) ACTION(IGNORE)",
            "L1 never=REPLYQM(?*) => leave",
        ),
        ("APPLTYPE(**) APPLIDAT(*) ACTION(IGNORE)", "L1 => leave"),
        // Control data.
        (
            "INPUTQ(o.dlq) RETRYINT(30) WAIT(NO)\nACTION(IGNORE)",
            "ctl in=o.dlq int=30s wait=No; L2 => leave",
        ),
        (
            "* c\nINPUTQ(o.dlq) WAIT(1m 30s)\nACTION(IGNORE)",
            "ctl in=o.dlq int=1m wait=For(90s); L3 => leave",
        ),
        (
            "WAIT(yes) RETRYINT(500ms)\nACTION(IGNORE)",
            "ctl in=- int=500ms wait=Yes; L2 => leave",
        ),
        (
            "INPUTQ(o.dlq) RATE(200/s)\nACTION(IGNORE)",
            "ctl in=o.dlq int=1m wait=Yes rate=200/s; L2 => leave",
        ),
        (
            "RATE( 30 / min )\nACTION(IGNORE)",
            "ctl in=- int=1m wait=Yes rate=30/min; L2 => leave",
        ),
        ("INPUTQM(QM1)\nACTION(IGNORE)", "L2 => leave"),
        // Actions and their keywords.
        ("ACTION(RETRY)", "L1 => retry(1) delay=[0s] x1 max=0s"),
        (
            "ACTION(RETRY) RETRY(5) DELAY(1s) BACKOFF(2)",
            "L1 => retry(5) delay=[1s] x2 max=10s",
        ),
        (
            "ACTION(RETRY) RETRY(*) DELAY(2) MAXDELAY(1m)",
            "L1 => retry(*) delay=[2s] x1 max=1m",
        ),
        (
            "ACTION(RETRY) RETRY(6) DELAY(1s,2s,3s,5s,8s,24s)",
            "L1 => retry(6) delay=[1s,2s,3s,5s,8s,24s] x1 max=24s",
        ),
        (
            "ACTION(RETRY) DELAY( 500ms , 1m 30s ) BACKOFF(1.5)",
            "L1 => retry(1) delay=[500ms,1m 30s] x1.5 max=1m 30s",
        ),
        (
            "ACTION(FWD) FWDQ(&DESTQ.parked)",
            "L1 => fwdq(&DestQ.parked)",
        ),
        (
            "ACTION(FWD) FWDQ(x&destq&REASON) HEADER(no)",
            "L1 => fwdq(x&DestQ&Reason) noheader",
        ),
        (
            "ACTION(FWD) FWDEX(billing.errors) FWDRKEY(&DESTQ)",
            "L1 => fwdex(billing.errors) rkey(&DestQ)",
        ),
        (
            "ACTION(FWD) FWDEX(e) FWDRKEY(&RKEY-&DESTEX-&REPLYQ-&REPLYTO)",
            "L1 => fwdex(e) rkey(&RKey-&DestEx-&ReplyTo-&ReplyTo)",
        ),
        ("ACTION(FWD) FWDEX(e)", "L1 => fwdex(e) rkey(-)"),
        ("ACTION(FWD) FWDQ('a & (c)')", "L1 => fwdq(a & (c))"),
        ("ACTION(FWD) FWDQ(a&1)", "L1 => fwdq(a&1)"),
        ("ACTION(DISCARD)", "L1 => discard"),
        (
            "ACTION(PURGE) ARCHIVE(/var/lib/dlqd/purged.jsonl)",
            "L1 => discard archive=/var/lib/dlqd/purged.jsonl",
        ),
        (
            "ACTION(FWD) FWDQ(q) FWDQM(QM2) PUTAUT(CTX)",
            "L1 => fwdq(q) putaut=CTX",
        ),
        ("ACTION(FWD) FWDQ(q) PUTAUT(def)", "L1 => fwdq(q)"),
        (
            "ACTION(RETRY) PUTAUT(ctx)",
            "L1 => retry(1) delay=[0s] x1 max=0s putaut=CTX",
        ),
        (
            "DESTQ(a) +\n  ACTION(RETRY) -\n RETRY(3)\nACTION(IGNORE)",
            "L1 destq='a' => retry(3) delay=[0s] x1 max=0s; L4 => leave",
        ),
        // Errors, each with its position.
        ("DESTQQ(a) ACTION(IGNORE)", "E 1:1 unknown keyword DESTQQ"),
        (
            "DESTQ(a) DESTQ(b) ACTION(IGNORE)",
            "E 1:10 duplicate keyword DESTQ",
        ),
        (
            "APPID(a) APPLNAME(b) ACTION(IGNORE)",
            "E 1:10 duplicate keyword APPLNAME (an alias of APPID)",
        ),
        ("DESTQ(a)", "E 1:1 this rule has no ACTION"),
        ("ACTION(FWD)", "E 1:8 ACTION(FWD) without a target"),
        (
            "ACTION(FWD) FWDQ(a) FWDEX(b)",
            "E 1:8 ACTION(FWD) has both FWDQ and FWDEX",
        ),
        (
            "ACTION(FWD) FWDQ(a) FWDRKEY(b)",
            "E 1:21 FWDRKEY goes with FWDEX, not FWDQ",
        ),
        (
            "ACTION(DISCARD) RETRY(3)",
            "E 1:17 RETRY does not belong to ACTION(DISCARD): it is for ACTION(RETRY)",
        ),
        (
            "ACTION(RETRY) ARCHIVE(x)",
            "E 1:15 ARCHIVE does not belong to ACTION(RETRY): it is for ACTION(DISCARD)",
        ),
        (
            "ACTION(IGNORE) HEADER(NO)",
            "E 1:16 HEADER does not belong to ACTION(IGNORE): it is for ACTION(FWD)",
        ),
        (
            "ACTION(DISCARD) PUTAUT(CTX)",
            "E 1:17 PUTAUT does not belong to ACTION(DISCARD): it is for ACTION(FWD) or ACTION(RETRY)",
        ),
        (
            "ACTION(FWD) FWDQ(q) PUTAUT(ALT)",
            "E 1:28 bad value for PUTAUT: `ALT`",
        ),
        ("ACTION(BOUNCE)", "E 1:8 unknown action `BOUNCE`"),
        (
            "ACTION(RETRY) DELAY(5x)",
            "E 1:21 bad duration in DELAY: `5x`: unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
        ),
        (
            "ACTION(RETRY) DELAY(1s,,2s)",
            "E 1:24 empty entry in the DELAY list",
        ),
        (
            "ACTION(RETRY) DELAY(1s, 2x)",
            "E 1:25 bad duration in DELAY: `2x`: unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
        ),
        (
            "ACTION(RETRY) RETRY(five)",
            "E 1:21 bad number in RETRY: `five`",
        ),
        (
            "ACTION(RETRY) RETRY(-1)",
            "E 1:21 bad number in RETRY: `-1`",
        ),
        (
            "ACTION(RETRY) BACKOFF(x)",
            "E 1:23 bad number in BACKOFF: `x`",
        ),
        (
            "ACTION(RETRY) BACKOFF(0.5)",
            "E 1:23 BACKOFF(0.5) must be a number of at least 1",
        ),
        (
            "ACTION(RETRY) MAXDELAY(soon)",
            "E 1:24 bad duration in MAXDELAY: `soon`: not a duration",
        ),
        (
            "SIZE(1KiB) ACTION(IGNORE)",
            "E 1:6 bad value for SIZE: `1KiB`",
        ),
        (
            "SIZE(>1KB) ACTION(IGNORE)",
            "E 1:6 bad number in SIZE: `1KB`",
        ),
        (
            "PERSIST(maybe) ACTION(IGNORE)",
            "E 1:9 bad value for PERSIST: `maybe`",
        ),
        (
            "ACTION(FWD) FWDQ(a) HEADER(perhaps)",
            "E 1:28 bad value for HEADER: `perhaps`",
        ),
        (
            "DESTQ(/a(b/) ACTION(IGNORE)",
            "E 1:9 bad regular expression in DESTQ: unclosed group",
        ),
        (
            "DESTQ( /ab[/ ) ACTION(IGNORE)",
            "E 1:11 bad regular expression in DESTQ: unclosed character class",
        ),
        (
            "HDR(x=/a{2,1}/) ACTION(IGNORE)",
            "E 1:9 bad regular expression in HDR: invalid repetition count range, the start must be <= the end",
        ),
        (
            "DESTQ(+\n/a)+/) ACTION(IGNORE)",
            "E 2:3 bad regular expression in DESTQ: unopened group",
        ),
        (
            "DESTQ(//) ACTION(IGNORE)",
            "E 1:7 empty regular expression in DESTQ",
        ),
        ("HDR(x) ACTION(IGNORE)", "E 1:5 HDR(x) has no `=`"),
        (
            "ACTION(FWD) FWDQ(&DESTQparked)",
            "E 1:18 unknown substitution &DESTQparked in FWDQ",
        ),
        (
            "WAIT(sometimes)\nACTION(IGNORE)",
            "E 1:6 bad value for WAIT: `sometimes`: not a duration",
        ),
        (
            "RATE(fast)\nACTION(IGNORE)",
            "E 1:6 bad value for RATE: `fast`: a rate is N/s or N/min (e.g. 200/s, 30/min), not \"fast\"",
        ),
        (
            "RATE(0/s)\nACTION(IGNORE)",
            "E 1:6 bad value for RATE: `0/s`: the count of a rate is a whole number from 1 to 1000000, not \"0\"",
        ),
        (
            "RETRYINT(x)\nACTION(IGNORE)",
            "E 1:10 bad duration in RETRYINT: `x`: not a duration",
        ),
        (
            "ACTION(IGNORE)\nINPUTQ(a)",
            "E 2:1 control data INPUTQ is allowed only in the first entry of the file",
        ),
        (
            "INPUTQ(a) ACTION(IGNORE)",
            "E 1:11 ACTION cannot be part of control data (INPUTQ, RETRYINT, WAIT, RATE)",
        ),
        (
            "DESTQ() ACTION(IGNORE)",
            "E 1:6 empty value: DESTQ() needs a value",
        ),
        // Regression: a continuation into a comment or blank line cascaded (no ACTION,
        // unknown keywords from the comment's words). One error, at the `+`.
        (
            "DESTQ(a) +\n* note\n  ACTION(IGNORE)",
            "E 1:10 the `+` at the end of line 1 continues this entry onto a comment, line 2",
        ),
        (
            "INPUTQ(q) +\n\n  RETRYINT(5s)\nDESTQ(a) +\n# x\n\n  PERSIST(NO) +\n  ACTION(IGNORE)",
            "E 1:11 the `+` at the end of line 1 continues this entry onto a blank line, line 2; E 4:10 the `+` at the end of line 4 continues this entry onto a comment, line 5",
        ),
        // Every error is reported, not only the first.
        (
            "DESTQQ(a) ACTION(IGNORE)\nACTION(FWD)\nDESTQ(a) RETRY(x) ACTION(RETRY)",
            "E 1:1 unknown keyword DESTQQ; E 2:8 ACTION(FWD) without a target; E 3:16 bad number in RETRY: `x`",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}
