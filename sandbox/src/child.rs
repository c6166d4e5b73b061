//! What every backend does around the process it starts: feed its stdin
//! and drain its stdout on their own threads, and kill it at the timeout.

use std::process::Child;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// A child's stdin fed from its input as it comes and its stdout read to
/// the end, each on its own thread, so neither pipe can block the other.
pub(crate) struct Piped {
    feeder: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<(Vec<u8>, Option<Duration>)>>,
}

/// Reads `from` to the end; what it read, and when (after `started`) the
/// first byte came.
pub(crate) fn read_all(
    mut from: impl std::io::Read,
    started: std::time::Instant,
) -> (Vec<u8>, Option<Duration>) {
    let mut out = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(|| started.elapsed());
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (out, first)
}

/// Copies `input` to `to` until the input ends, fails, or `to` is closed
/// (the stage ended), then drops `to` (the stage's end of file). The
/// buffer is zeroized after: what crosses holds a stage's data keys.
pub(crate) fn feed(mut input: crate::StageInput, mut to: impl std::io::Write) {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 64 << 10]);
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

impl Piped {
    /// Starts both threads for the pipes `child` has (spawned with piped
    /// stdin and stdout when `input` is given).
    pub(crate) fn start(
        child: &mut Child,
        input: Option<crate::StageInput>,
        started: std::time::Instant,
    ) -> Piped {
        let feeder = match (input, child.stdin.take()) {
            (Some(input), Some(stdin)) => Some(std::thread::spawn(move || feed(input, stdin))),
            _ => None,
        };
        let reader = child
            .stdout
            .take()
            .map(|stdout| std::thread::spawn(move || read_all(stdout, started)));
        Piped { feeder, reader }
    }

    /// Waits for both threads; what the child wrote on stdout, and when
    /// its first byte came.
    pub(crate) fn finish(self) -> (Vec<u8>, Option<Duration>) {
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
