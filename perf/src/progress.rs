//! The progress bar of long runs, on stderr (stdout keeps the table):
//! redrawn in place on a terminal, a plain line every tenth of the way
//! otherwise (a CI log), so a run that goes quiet can be told from one
//! that hangs.
//!
//! ```text
//! forward [##########··········]  4/9  44%  0:41 elapsed, ~0:52 left  linux-nft-set rules=1000
//! ```
#![forbid(unsafe_code)]

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

const WIDTH: usize = 20;

/// A bar over `total` steps of one scenario.
#[derive(Debug)]
pub(crate) struct Progress {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    terminal: bool,
    /// The last tenth printed, off a terminal.
    last_tenth: u64,
}

impl Progress {
    /// A bar at 0 of `total`, drawn at once.
    pub(crate) fn new(label: &str, total: u64) -> Self {
        let p = Self {
            label: label.to_owned(),
            total: total.max(1),
            done: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            last_tenth: 0,
        };
        p.draw("starting", true);
        p
    }

    /// Says what is being measured now, without advancing.
    pub(crate) fn doing(&self, what: &str) {
        if self.terminal {
            self.draw(what, false);
        }
    }

    /// Wipes the bar off a terminal's line, before stdout writes there.
    pub(crate) fn clear(&self) {
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }

    /// Prints a table row on stdout above the bar.
    pub(crate) fn print(&self, row: &str) {
        self.clear();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{row}");
        let _ = out.flush();
    }

    /// One more step done; `what` is the step that just finished.
    pub(crate) fn step(&mut self, what: &str) {
        self.done = (self.done + 1).min(self.total);
        let tenth = self.done * 10 / self.total;
        let show = self.terminal || tenth > self.last_tenth || self.done == self.total;
        self.last_tenth = tenth;
        if show {
            self.draw(what, self.done == self.total);
        }
    }

    /// `done` steps done in all (a count that moves by more than one).
    pub(crate) fn set(&mut self, done: u64, what: &str) {
        if done == 0 {
            self.doing(what);
            return;
        }
        self.done = (done - 1).min(self.total);
        self.step(what);
    }

    /// The line as it is drawn (without the terminal's control codes).
    fn line(&self, what: &str) -> String {
        let filled = (self.done as usize * WIDTH) / self.total as usize;
        let bar: String = "#".repeat(filled) + &"·".repeat(WIDTH - filled);
        let elapsed = self.started.elapsed();
        let left = if self.done == 0 {
            String::new()
        } else {
            let per = elapsed.as_secs_f64() / self.done as f64;
            let rest = Duration::from_secs_f64(per * (self.total - self.done) as f64);
            format!(", ~{} left", clock(rest))
        };
        format!(
            "{} [{bar}] {:>3}/{} {:>3}%  {} elapsed{left}  {what}",
            self.label,
            self.done,
            self.total,
            self.done * 100 / self.total,
            clock(elapsed),
        )
    }

    fn draw(&self, what: &str, last: bool) {
        let line = self.line(what);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let end = if last { "\n" } else { "" };
            let _ = write!(err, "\r{line}\x1b[K{end}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

/// `m:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_steps() {
        let mut p = Progress {
            label: "forward".to_owned(),
            total: 4,
            done: 0,
            started: Instant::now(),
            terminal: false,
            last_tenth: 0,
        };
        assert!(
            p.line("x")
                .starts_with("forward [····················]   0/4   0%")
        );
        p.step("a");
        p.step("b");
        let half = p.line("b");
        assert!(
            half.starts_with("forward [##########··········]   2/4  50%"),
            "{half}"
        );
        assert!(half.contains("left"), "{half}");
        assert!(half.ends_with("  b"), "{half}");
        p.step("c");
        p.step("d");
        p.step("beyond");
        assert!(p.line("d").contains("4/4 100%"));
    }
}
