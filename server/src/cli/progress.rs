//! Progress of a long command: a bar with rate and ETA on a terminal, a log
//! line every tenth of the way otherwise (a CI log, a pipe).

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

/// Progress towards `total` items of one kind.
pub struct Progress {
    what: &'static str,
    total: u64,
    done: u64,
    next_report: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts counting `what` towards `total`.
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let template = format!("{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})");
            bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { what, total, done: 0, next_report: total / 10, started: Instant::now(), bar }
    }

    /// Counts `count` more items done.
    pub fn add(&mut self, count: u64) {
        self.done += count;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        } else if self.done >= self.next_report && self.done < self.total {
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!("{} of {} {} ({rate:.0}/s)", self.done, self.total, self.what);
            self.next_report += (self.total / 10).max(1);
        }
    }

    /// Items done so far.
    pub fn done(&self) -> u64 {
        self.done
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
