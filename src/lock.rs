//! `REPORT.lock`: two runs on one report refuse to start together, and a
//! lock left by a dead process is noticed and taken over.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Held for the length of a run; removes the lock file when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// A live process holds it.
    Held {
        pid: u32,
        path: PathBuf,
    },
    Io(io::Error, PathBuf),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { pid, path } => write!(
                f,
                "another run (process {pid}) is using this report: {} exists",
                path.display()
            ),
            LockError::Io(e, path) => write!(f, "cannot create the lock {}: {e}", path.display()),
        }
    }
}

/// `REPORT.lock` for a report path.
pub fn path_for(report: &Path) -> PathBuf {
    let mut p = report.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl RunLock {
    /// Takes the lock for `report`. A lock whose process is gone is stale:
    /// it is replaced, with a warning.
    pub fn acquire(report: &Path) -> Result<RunLock, LockError> {
        let path = path_for(report);
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    let _ = f.sync_all();
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match pid {
                        Some(pid) if process_alive(pid) => {
                            return Err(LockError::Held { pid, path });
                        }
                        _ => {
                            tracing::warn!(lock = %path.display(), "removing a stale lock left by a process that is gone");
                            std::fs::remove_file(&path)
                                .map_err(|e| LockError::Io(e, path.clone()))?;
                        }
                    }
                }
                Err(e) => return Err(LockError::Io(e, path)),
            }
        }
        Err(LockError::Io(
            io::Error::other("the lock keeps reappearing"),
            path,
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// Limitation: a lock on a shared network folder from another machine is
// judged by this machine's process table.
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence only; EPERM means it exists as another user.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        let lock = RunLock::acquire(&report).unwrap();
        match RunLock::acquire(&report) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(lock);
        assert!(!path_for(&report).exists());
        assert!(RunLock::acquire(&report).is_ok());
    }

    #[test]
    fn stale_lock_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(path_for(&report), format!("{pid}\n")).unwrap();
        let lock = RunLock::acquire(&report).unwrap();
        let content = std::fs::read_to_string(path_for(&report)).unwrap();
        assert_eq!(content.trim(), std::process::id().to_string());
        drop(lock);
    }
}
