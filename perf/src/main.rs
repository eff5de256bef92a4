//! causeway-perf: the perf harness. Scenarios arrive with the perf-harness
//! issue; until then this binary only says so, with a non-zero exit.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("causeway-perf: no scenarios yet (see the perf harness issue)");
    std::process::exit(2);
}
