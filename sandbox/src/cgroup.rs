//! Memory and pids limits through cgroups: v1 (`memory` and `pids`
//! hierarchies, this machine) or v2 (one unified hierarchy) where mounted.

use std::path::{Path, PathBuf};

use crate::SandboxError;

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup(s) of one sandbox.
#[derive(Debug)]
pub(crate) struct Cgroup {
    /// v1: the memory and pids groups; v2: the one group, twice.
    memory: PathBuf,
    pids: PathBuf,
    v2: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Cgroup {
        path: path.to_owned(),
        source,
    }
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    std::fs::write(path, value).map_err(io(path))
}

/// Whether this host has cgroup v2 with the memory and pids controllers.
fn v2_available() -> bool {
    std::fs::read_to_string(Path::new(ROOT).join("cgroup.controllers"))
        .is_ok_and(|c| c.contains("memory") && c.contains("pids"))
}

/// Whether this host has the v1 memory and pids hierarchies.
fn v1_available() -> bool {
    Path::new(ROOT)
        .join("memory/memory.limit_in_bytes")
        .exists()
        && Path::new(ROOT).join("pids").is_dir()
}

/// What the host offers, for `doctor`.
pub(crate) fn describe() -> Result<&'static str, String> {
    let (found, dirs): (&'static str, &[&str]) = if v2_available() {
        ("cgroup v2 (memory, pids)", &[""])
    } else if v1_available() {
        ("cgroup v1 (memory, pids hierarchies)", &["memory", "pids"])
    } else {
        return Err(
            "no cgroup memory and pids controllers are mounted under /sys/fs/cgroup".into(),
        );
    };
    for d in dirs {
        let dir = Path::new(ROOT).join(d);
        if nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(format!(
                "{found}: {} is not writable by this user (sandboxes need root to make cgroups)",
                dir.display()
            ));
        }
    }
    Ok(found)
}

/// Removes the empty groups that sandboxes of processes no longer running
/// left behind: a job killed (SIGKILL) while a sandbox ran cannot remove
/// its group. A group is named `symbiont-PID-N` by the job that made it;
/// one whose PID is gone, made a minute ago or more, and that holds no
/// process is removed (`rmdir` fails on a group with processes in it,
/// which is left alone).
fn sweep_stale_groups() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for parent in ["", "memory", "pids"] {
            let Ok(entries) = std::fs::read_dir(Path::new(ROOT).join(parent)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("symbiont-"))
                    .and_then(|n| n.split_once('-'))
                    .and_then(|(pid, _)| pid.parse::<u32>().ok())
                else {
                    continue;
                };
                // Made a minute ago or more: a group another PID namespace's
                // job just made (its PID not ours to see) has its process
                // in it by then, and cannot be removed.
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() >= 60));
                if old && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
    });
}

impl Cgroup {
    /// Creates the sandbox's group(s) named `name` with these limits.
    pub(crate) fn create(name: &str, memory_bytes: u64, pids: u64) -> Result<Cgroup, SandboxError> {
        sweep_stale_groups();
        let group = if v2_available() {
            let g = Path::new(ROOT).join(format!("symbiont-{name}"));
            std::fs::create_dir_all(&g).map_err(io(&g))?;
            Cgroup {
                memory: g.clone(),
                pids: g,
                v2: true,
            }
        } else if v1_available() {
            let memory = Path::new(ROOT).join(format!("memory/symbiont-{name}"));
            let pids = Path::new(ROOT).join(format!("pids/symbiont-{name}"));
            std::fs::create_dir_all(&memory).map_err(io(&memory))?;
            std::fs::create_dir_all(&pids).map_err(io(&pids))?;
            Cgroup {
                memory,
                pids,
                v2: false,
            }
        } else {
            return Err(SandboxError::Unsupported {
                tier: 1,
                missing: describe().unwrap_err(),
            });
        };
        if group.v2 {
            write(&group.memory.join("memory.max"), &memory_bytes.to_string())?;
            write(&group.memory.join("memory.swap.max"), "0")?;
        } else {
            write(
                &group.memory.join("memory.limit_in_bytes"),
                &memory_bytes.to_string(),
            )?;
            // Without swap accounting this file is absent: then swap is
            // not limited separately (the host's swap, if any, applies).
            let memsw = group.memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &memory_bytes.to_string())?;
            }
        }
        write(&group.pids.join("pids.max"), &pids.to_string())?;
        Ok(group)
    }

    /// Starts, on its own thread, a migration of this process into the
    /// memory group it is already in — a no-op that takes the kernel's
    /// cgroup migration lock. The first writer of that lock waits for an
    /// RCU grace period (8-29 ms of the tier-1 start here, in
    /// [`Cgroup::add`]); started before the sandbox's root, cgroup and init
    /// are set up, the wait overlaps with them and the `add` that follows
    /// is cheap (join + add 6-10 ms against 8-29, measured with a timer
    /// around them). Errors only lose the overlap.
    pub(crate) fn warm_up() -> std::thread::JoinHandle<()> {
        std::thread::spawn(|| {
            let Ok(mine) = std::fs::read_to_string("/proc/self/cgroup") else {
                return;
            };
            let own = mine.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                match controllers {
                    "memory" => Some(
                        Path::new(ROOT)
                            .join("memory")
                            .join(path.trim_start_matches('/')),
                    ),
                    "" if v2_available() => {
                        Some(Path::new(ROOT).join(path.trim_start_matches('/')))
                    }
                    _ => None,
                }
            });
            if let Some(group) = own {
                let _ = std::fs::write(group.join("cgroup.procs"), std::process::id().to_string());
            }
        })
    }

    /// Moves process `pid` into the group(s).
    pub(crate) fn add(&self, pid: i32) -> Result<(), SandboxError> {
        write(&self.memory.join("cgroup.procs"), &pid.to_string())?;
        if !self.v2 {
            write(&self.pids.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the group.
    pub(crate) fn procs(&self) -> Vec<i32> {
        read_procs(&self.procs_file())
    }

    /// The file listing them.
    pub(crate) fn procs_file(&self) -> PathBuf {
        self.pids.join("cgroup.procs")
    }

    /// Whether the memory limit killed a process.
    pub(crate) fn oom_killed(&self) -> bool {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        counter(&self.memory.join(file), key) > 0
    }

    /// Whether a fork was refused by the pids limit.
    pub(crate) fn pids_limited(&self) -> bool {
        counter(&self.pids.join("pids.events"), "max") > 0
    }
}

/// The process ids in a `cgroup.procs` file.
pub(crate) fn read_procs(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn counter(file: &Path, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Killed processes may take a moment to leave the group; a group
        // with processes in it cannot be removed (EBUSY). Wait up to 200 ms.
        let dirs: &[&PathBuf] = if self.v2 {
            &[&self.memory]
        } else {
            &[&self.memory, &self.pids]
        };
        for dir in dirs {
            for _ in 0..100 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(16) => {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    _ => break,
                }
            }
        }
    }
}
