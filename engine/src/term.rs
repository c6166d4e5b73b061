//! What a job shows on a terminal: its notices and warnings on stderr,
//! and the rows read while its stages run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{Event, Observer};

/// Prints a job's notices and warnings on stderr, and shows the rows read
/// while its stages run (on a terminal).
pub struct TermPrinter {
    progress: Option<Arc<AtomicU64>>,
    spinner: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl std::fmt::Debug for TermPrinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermPrinter")
            .field("spinning", &self.spinner.is_some())
            .finish_non_exhaustive()
    }
}

impl TermPrinter {
    /// Shows `progress` (rows read) as a spinner once the stages start,
    /// if given (on a terminal).
    pub fn new(progress: Option<Arc<AtomicU64>>) -> TermPrinter {
        TermPrinter {
            progress,
            spinner: None,
        }
    }

    fn stop_spinner(&mut self) {
        if let Some((done, thread)) = self.spinner.take() {
            done.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

impl Observer for TermPrinter {
    fn event(&mut self, event: Event) {
        match event {
            // The stages start just before the dataflow reads the input.
            Event::StageStarted { .. } => {
                if let Some(rows) = self.progress.take() {
                    self.spinner = Some(show_progress(rows));
                }
                return;
            }
            Event::Notice(text) => {
                self.stop_spinner();
                eprintln!("symbi: {text}");
            }
            Event::Warning(text) => {
                self.stop_spinner();
                eprintln!("symbi: warning: {text}");
            }
            _ => {}
        }
        self.stop_spinner();
    }
}

impl Drop for TermPrinter {
    fn drop(&mut self) {
        self.stop_spinner();
    }
}

/// A spinner with the rows read so far, on stderr, while a job runs on a
/// terminal (in a pipe, nothing is shown).
fn show_progress(rows: Arc<AtomicU64>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let thread = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new_spinner().with_message("rows read");
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} {msg} ({per_sec}, {elapsed})")
                .expect("the template is valid"),
        );
        while !stop.load(Ordering::Relaxed) {
            bar.set_position(rows.load(Ordering::Relaxed));
            bar.tick();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    (done, thread)
}
