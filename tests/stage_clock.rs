//! A stage's timeout counts the stage's own time, not the job's: the clock
//! stops while the stage waits for the next bytes of its input (a stage
//! fed while the job's dataflow runs), and runs while the stage holds its
//! input up or works after it. Before the clock, the timeout counted from
//! the sandbox's start, so a stage fed by a dataflow longer than its
//! timeout was killed however little it did.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use symbiont_sandbox::{Limits, Outcome, Tier};

/// An input that gives `first`, then waits `pause` (the job's dataflow
/// making the next batch), then gives `second` and ends.
struct Paced {
    parts: Vec<Vec<u8>>,
    pause: Duration,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.parts.is_empty() {
            return Ok(0);
        }
        let part = &mut self.parts[0];
        let n = buf.len().min(part.len());
        buf[..n].copy_from_slice(&part[..n]);
        part.drain(..n);
        if part.is_empty() {
            self.parts.remove(0);
            if !self.parts.is_empty() {
                std::thread::sleep(self.pause);
            }
        }
        Ok(n)
    }
}

/// A worker script (`#!/bin/sh` and `body`) in a scratch directory.
fn worker(name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("symbi-clock-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn run(
    worker: &std::path::Path,
    input: impl Read + Send + 'static,
    timeout: Duration,
) -> (Outcome, Vec<u8>) {
    let limits = Limits {
        timeout,
        ..Limits::default()
    };
    let (report, out) = symbiont_sandbox::run_stage(
        Tier::Native,
        std::path::Path::new(env!("CARGO_BIN_EXE_symbi-sandbox-init")),
        worker,
        &[],
        &limits,
        input,
    )
    .unwrap();
    (report.outcome, out)
}

#[test]
fn a_stage_waiting_for_the_job_is_not_timed() {
    let w = worker("waits", "cat");
    let input = Paced {
        parts: vec![b"first ".to_vec(), b"second".to_vec()],
        pause: Duration::from_millis(2500),
    };
    let (outcome, out) = run(&w, input, Duration::from_secs(1));
    assert_eq!(outcome, Outcome::Exited(0));
    assert_eq!(out, b"first second");
}

#[test]
fn a_stage_that_holds_its_input_up_is_killed_at_its_timeout() {
    // It never reads: once the pipe is full, the feeder waits on it.
    let w = worker("holds", "sleep 30");
    let input = std::io::Cursor::new(vec![b'x'; 4 << 20]);
    let started = std::time::Instant::now();
    let (outcome, _) = run(&w, input, Duration::from_secs(1));
    assert_eq!(outcome, Outcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_stage_that_works_on_after_its_input_is_killed_at_its_timeout() {
    let w = worker("works", "cat >/dev/null; sleep 30");
    let input = std::io::Cursor::new(b"all of it".to_vec());
    let (outcome, _) = run(&w, input, Duration::from_secs(1));
    assert_eq!(outcome, Outcome::TimedOut);
}

#[test]
fn a_stage_that_writes_without_end_is_killed_at_its_output_limit() {
    // A hostile worker that answers forever, ignoring a closed pipe.
    // Before the limit the job read it into memory until the timeout (at
    // the pipe's speed, gigabytes a second); now it is cut at the memory
    // limit and killed, and the report says why.
    let w = worker("floods", "trap '' PIPE; while :; do cat /dev/zero; done");
    let limits = Limits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let (report, out) = symbiont_sandbox::run_stage(
        Tier::Native,
        std::path::Path::new(env!("CARGO_BIN_EXE_symbi-sandbox-init")),
        &w,
        &[],
        &limits,
        std::io::Cursor::new(Vec::new()),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::OutputLimit);
    assert!(out.len() as u64 <= limits.memory_bytes);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
