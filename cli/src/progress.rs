//! Progress bars for long imports, exports and syncs.
//!
//! A bar is drawn on stderr, and only when stderr is a terminal and `--json` was not given:
//! a script, a pipe or a test sees nothing of it, and stdout is never touched. The bar is
//! cleared when the work ends, so the command's own output stands alone.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Out;

/// A progress display: a bar when it is shown, nothing otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

/// Whether progress is shown at all for this command.
fn shown(out: &Out) -> bool {
    !out.json && std::io::stderr().is_terminal()
}

impl Progress {
    /// A bar for `len` rows of `what` ("importing", "exporting").
    pub fn rows(out: &Out, len: usize, what: &str) -> Progress {
        if !shown(out) {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{msg:10}} [{{bar:40}}] {{pos}}/{{len}} {} ({{eta}})",
                crate::tr!("progress-rows")
            ))
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    /// A spinner with a message that the work updates (a sync: how much has moved so far;
    /// no total is known in advance).
    pub fn spinner(out: &Out, what: &str) -> Progress {
        if !shown(out) {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    /// Sets the number of rows done.
    pub fn set(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    /// A handle that updates the message from another thread (None when nothing is shown).
    pub fn handle(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
