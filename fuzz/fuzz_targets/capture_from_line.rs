//! Fuzz target: the capture decoder (`capture::from_line`) on arbitrary text. It must
//! never panic; a line it accepts must survive `to_line` → `from_line` unchanged
//! (the second `to_line` gives the same line).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = dlqd::capture::from_line(text, 1) {
        let line = dlqd::capture::to_line(&message);
        let again = dlqd::capture::from_line(&line, 1)
            .unwrap_or_else(|e| panic!("to_line wrote a line from_line refuses: {e}\n{line}"));
        // Compared as lines: a NaN double is not equal to itself.
        assert_eq!(to_line_again(&again), line, "capture round trip changed the message");
    }
});

fn to_line_again(m: &dlqd::message::Message) -> String {
    dlqd::capture::to_line(m)
}
