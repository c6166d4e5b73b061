//! What every backend does around the process it starts: feed its stdin
//! and drain its stdout on their own threads, and kill it at the timeout.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The clock a sandbox's timeout counts on. It runs from the sandbox's
/// start, while the stage takes (or fails to take) its input, and once
/// the input has ended; it stops while the feeder waits for the job's
/// next frame, so a stage fed while the job's dataflow runs is not timed
/// for the job's own work (a stage that stops reading is: the feeder then
/// waits on it).
///
/// It also ends the sandbox early when the command writes more than
/// `output_limit` bytes back ([`read_all`]): the watchdog kills it then.
pub(crate) struct StageClock {
    started: Instant,
    /// Milliseconds after `started` since which it runs; [`STOPPED`].
    since: AtomicU64,
    output_limit: u64,
    overflowed: AtomicBool,
    /// Where the command's output goes as it comes, instead of being kept
    /// ([`crate::OutputTap`]); dropped once the output ends.
    tap: std::sync::Mutex<Option<crate::OutputTap>>,
    /// A live stage's answer the job waits for: timed from when it was
    /// asked, whether or not the feeder waits.
    due: Option<Arc<crate::AnswerDue>>,
}

const STOPPED: u64 = u64::MAX;

impl StageClock {
    /// A clock running since `started`, for a command that may write
    /// `output_limit` bytes back, or whose output goes to `tap` as it
    /// comes (the tap then bounds it).
    pub(crate) fn start(
        started: Instant,
        output_limit: u64,
        live: Option<crate::LiveIo>,
    ) -> Arc<StageClock> {
        let (tap, due) = live.map_or((None, None), |l| (Some(l.tap), Some(l.due)));
        Arc::new(StageClock {
            started,
            since: AtomicU64::new(0),
            output_limit,
            overflowed: AtomicBool::new(false),
            tap: std::sync::Mutex::new(tap),
            due,
        })
    }

    /// Whether the command wrote more than its output limit (and was
    /// killed for it).
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::SeqCst)
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn stop(&self) {
        self.since.store(STOPPED, Ordering::SeqCst);
    }

    fn run(&self) {
        let _ =
            self.since
                .compare_exchange(STOPPED, self.now(), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// How long until it has run `timeout` without a stop, or an answer
    /// due has waited `timeout` (`None`: it is stopped, and no answer is
    /// due).
    fn left(&self, timeout: Duration) -> Option<Duration> {
        let running = match self.since.load(Ordering::SeqCst) {
            STOPPED => None,
            since => {
                let ran = Duration::from_millis(self.now().saturating_sub(since));
                Some(timeout.saturating_sub(ran))
            }
        };
        let answering = self.due.as_ref().and_then(|d| d.left(timeout));
        match (running, answering) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A child's stdin fed from its input as it comes and its stdout read to
/// the end, each on its own thread, so neither pipe can block the other.
pub(crate) struct Piped {
    feeder: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<(Vec<u8>, Option<Duration>)>>,
}

/// Reads `from` to the end, or to the clock's output limit: what it read,
/// and when (after the clock's start) the first byte came. Past the limit
/// it stops reading and marks the clock overflowed, which the watchdog
/// answers by killing the sandbox: a hostile command cannot fill the
/// host's memory with its answer. With a tap, every read goes to the tap
/// and nothing is kept; the tap refusing it counts as overflowing.
pub(crate) fn read_all(
    mut from: impl std::io::Read,
    clock: &StageClock,
) -> (Vec<u8>, Option<Duration>) {
    let mut out = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(|| clock.started.elapsed());
                if let Some(tap) = clock.tap.lock().expect("no panic holding it").as_mut() {
                    if !tap(&buf[..n]) {
                        clock.overflowed.store(true, Ordering::SeqCst);
                        break;
                    }
                    continue;
                }
                if (out.len() + n) as u64 > clock.output_limit {
                    clock.overflowed.store(true, Ordering::SeqCst);
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // The output has ended: whoever waits on the tap for an answer learns
    // now that none will come.
    drop(clock.tap.lock().expect("no panic holding it").take());
    (out, first)
}

/// Copies `input` to `to` until the input ends, fails, or `to` is closed
/// (the stage ended), then drops `to` (the stage's end of file). The
/// buffer is zeroized after: what crosses holds a stage's data keys.
pub(crate) fn feed(mut input: crate::StageInput, mut to: impl std::io::Write, clock: &StageClock) {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 64 << 10]);
    loop {
        // Waiting for the job: the stage's clock stops.
        clock.stop();
        let read = input.read(&mut buf);
        clock.run();
        match read {
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
        clock: &Arc<StageClock>,
    ) -> Piped {
        let feeder = match (input, child.stdin.take()) {
            (Some(input), Some(stdin)) => {
                let clock = Arc::clone(clock);
                Some(std::thread::spawn(move || feed(input, stdin, &clock)))
            }
            _ => None,
        };
        let reader = child.stdout.take().map(|stdout| {
            let clock = Arc::clone(clock);
            std::thread::spawn(move || read_all(stdout, &clock))
        });
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

/// Runs `kill` once `clock` has run for `timeout` without a stop, unless
/// [`Watchdog::disarm`] comes first.
pub(crate) struct Watchdog {
    done: Sender<()>,
    thread: JoinHandle<bool>,
}

impl Watchdog {
    pub(crate) fn start(
        timeout: Duration,
        clock: Arc<StageClock>,
        kill: impl FnOnce() + Send + 'static,
    ) -> Watchdog {
        let (done, watching): (Sender<()>, Receiver<()>) = channel();
        let thread = std::thread::spawn(move || {
            loop {
                // While the clock is stopped, it is looked at again soon;
                // and often enough to see an overflowed output.
                let wait = clock
                    .left(timeout)
                    .unwrap_or(Duration::from_millis(50))
                    .min(Duration::from_millis(100));
                if watching.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
                    return false;
                }
                if clock.overflowed() || clock.left(timeout) == Some(Duration::ZERO) {
                    kill();
                    return true;
                }
            }
        });
        Watchdog { done, thread }
    }

    /// Stops watching; whether the timeout had passed (and `kill` ran).
    pub(crate) fn disarm(self) -> bool {
        let _ = self.done.send(());
        self.thread.join().unwrap_or(false)
    }
}
