//! The dlqd binary: parse arguments, set up logs, run the command, map errors to exit codes.

fn main() {
    println!("dlqd");
}
