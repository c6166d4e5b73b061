//! What every backend does around the process it starts: feed its stdin
//! and drain its stdout on their own threads, and kill it at the timeout.

use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// A child's stdin fed from a buffer and its stdout read to the end, each
/// on its own thread, so neither pipe can block the other.
pub(crate) struct Piped {
    feeder: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<Vec<u8>>>,
}

impl Piped {
    /// Starts both threads for the pipes `child` has (spawned with piped
    /// stdin and stdout when `input` is given).
    pub(crate) fn start(child: &mut Child, input: Option<Vec<u8>>) -> Piped {
        let feeder = match (input, child.stdin.take()) {
            (Some(mut bytes), Some(mut stdin)) => Some(std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&bytes);
                // It may hold key material for the stage (its data keys).
                zeroize::Zeroize::zeroize(&mut bytes);
            })),
            _ => None,
        };
        let reader = child.stdout.take().map(|mut stdout| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
                out
            })
        });
        Piped { feeder, reader }
    }

    /// Waits for both threads; what the child wrote on stdout.
    pub(crate) fn finish(self) -> Vec<u8> {
        if let Some(f) = self.feeder {
            let _ = f.join();
        }
        self.reader
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Runs `kill` if `timeout` passes before [`Watchdog::disarm`].
pub(crate) struct Watchdog {
    done: Sender<()>,
    thread: JoinHandle<bool>,
}

impl Watchdog {
    pub(crate) fn start(timeout: Duration, kill: impl FnOnce() + Send + 'static) -> Watchdog {
        let (done, watching): (Sender<()>, Receiver<()>) = channel();
        let thread = std::thread::spawn(move || {
            if watching.recv_timeout(timeout) != Err(RecvTimeoutError::Timeout) {
                return false;
            }
            kill();
            true
        });
        Watchdog { done, thread }
    }

    /// Stops watching; whether the timeout had passed (and `kill` ran).
    pub(crate) fn disarm(self) -> bool {
        let _ = self.done.send(());
        self.thread.join().unwrap_or(false)
    }
}
