//! File locks (the OS's advisory locks through std): two `nasflow run`s on
//! one store must not run the same stage twice or interleave a commit.

use anyhow::{Context, Result};
use std::fs::{File, TryLockError};
use std::path::Path;

pub struct Lock {
    file: File,
}

fn open(path: &Path) -> Result<File> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    File::options().create(true).truncate(false).write(true).open(path).with_context(|| format!("cannot open lock {}", path.display()))
}

impl Lock {
    /// Block until the lock at `path` is ours.
    pub fn acquire(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Lock { file })
    }

    /// Take the lock if it is free.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// A lock that holds across machines sharing one file system (the store on
/// NFS under Slurm), where `flock` may be a no-op or local to one client.
/// It takes the OS lock where that works, and, beside it, an owner file
/// (`<path>.owner`) created with O_EXCL that names its host, pid and process
/// start time and whose mtime a background thread refreshes (the heartbeat).
/// A waiter breaks the owner file when its owner is a dead process on this
/// host, or when the heartbeat has not moved for `stale` seconds as measured
/// on the waiter's own clock (so clock skew between nodes does not matter).
pub struct SharedLock {
    _os: Lock,
    owner: std::path::PathBuf,
    token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

/// How often the owner refreshes its heartbeat, and after how long without
/// one a waiter treats the lock as abandoned (a node that died or hung).
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
pub const STALE: std::time::Duration = std::time::Duration::from_secs(45);

#[derive(serde::Serialize, serde::Deserialize)]
struct Owner {
    host: String,
    pid: u32,
    /// /proc/<pid>/stat start time: tells a reused pid from the owner.
    start: Option<u64>,
    token: String,
}

fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; start time is field 22.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn this_host() -> String {
    hostname::get().map(|h| h.to_string_lossy().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// True when the owner is a process on this host that no longer exists.
fn owner_dead_here(o: &Owner) -> bool {
    o.host == this_host() && proc_start(o.pid) != o.start
}

impl SharedLock {
    /// Block until both the OS lock and the owner file at `path` are ours.
    pub fn acquire(path: &Path) -> Result<SharedLock> {
        Self::acquire_with(path, STALE)
    }

    pub fn acquire_with(path: &Path, stale: std::time::Duration) -> Result<SharedLock> {
        use std::time::Instant;
        let os = Lock::acquire(path)?;
        let owner_path = path.with_extension("lock.owner");
        let token = format!("{}-{}-{}", this_host(), std::process::id(), super::atomic::unique());
        let me = Owner { host: this_host(), pid: std::process::id(), start: proc_start(std::process::id()), token: token.clone() };
        let body = serde_json::to_vec(&me)?;
        // (mtime seen, when we first saw it) of the current owner file.
        let mut seen: Option<(std::time::SystemTime, Instant)> = None;
        loop {
            match File::options().write(true).create_new(true).open(&owner_path) {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(&body).with_context(|| format!("cannot write {}", owner_path.display()))?;
                    f.sync_all().ok();
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("cannot create lock owner file {}", owner_path.display())),
            }
            let text = std::fs::read(&owner_path).unwrap_or_default();
            let mtime = std::fs::metadata(&owner_path).and_then(|m| m.modified()).ok();
            let dead = serde_json::from_slice::<Owner>(&text).map(|o| owner_dead_here(&o)).unwrap_or(false);
            let silent = match (mtime, seen) {
                (Some(m), Some((prev, since))) if m == prev => since.elapsed() >= stale,
                (Some(m), _) => {
                    seen = Some((m, Instant::now()));
                    false
                }
                (None, _) => false, // gone between our create and read: retry at once
            };
            if dead || silent {
                break_stale(&owner_path, &text);
                seen = None;
                continue;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beat = {
            let (stop, p) = (stop.clone(), owner_path.clone());
            std::thread::spawn(move || heartbeat(&p, &stop))
        };
        Ok(SharedLock { _os: os, owner: owner_path, token, stop, beat: Some(beat) })
    }
}

/// Remove an abandoned owner file without racing another waiter that broke
/// it first and already holds a fresh one: move it aside, and if what we
/// moved is not what we judged stale, put it back (link never overwrites).
fn break_stale(owner: &Path, judged: &[u8]) {
    let aside = owner.with_extension(format!("stale-{}-{}", std::process::id(), super::atomic::unique()));
    if std::fs::rename(owner, &aside).is_err() {
        return;
    }
    if std::fs::read(&aside).unwrap_or_default() != judged {
        let _ = std::fs::hard_link(&aside, owner);
    }
    let _ = std::fs::remove_file(&aside);
}

fn heartbeat(owner: &Path, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let tick = std::time::Duration::from_millis(100);
    let mut waited = std::time::Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        waited += tick;
        if waited >= HEARTBEAT {
            waited = std::time::Duration::ZERO;
            if let Ok(f) = File::options().write(true).open(owner) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
        }
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.beat.take() {
            let _ = h.join();
        }
        // Remove the owner file only while it is still ours.
        let ours = std::fs::read(&self.owner).ok().and_then(|b| serde_json::from_slice::<Owner>(&b).ok()).is_some_and(|o| o.token == self.token);
        if ours {
            let _ = std::fs::remove_file(&self.owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owner_on_this_host_is_broken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        // An owner file left by a process that no longer exists.
        let ghost = Owner { host: this_host(), pid: u32::MAX - 1, start: Some(1), token: "ghost".into() };
        std::fs::write(path.with_extension("lock.owner"), serde_json::to_vec(&ghost).unwrap()).unwrap();
        let t = std::time::Instant::now();
        let l = SharedLock::acquire_with(&path, std::time::Duration::from_secs(60)).unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        let o: Owner = serde_json::from_slice(&std::fs::read(path.with_extension("lock.owner")).unwrap()).unwrap();
        assert_eq!(o.pid, std::process::id());
        drop(l);
        assert!(!path.with_extension("lock.owner").exists(), "the owner file is removed on release");
    }

    #[test]
    fn a_silent_owner_on_another_host_is_broken_after_the_stale_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.lock");
        let other = Owner { host: "some-other-node".into(), pid: 1, start: None, token: "other".into() };
        std::fs::write(path.with_extension("lock.owner"), serde_json::to_vec(&other).unwrap()).unwrap();
        let t = std::time::Instant::now();
        let _l = SharedLock::acquire_with(&path, std::time::Duration::from_millis(600)).unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(600), "waited for the heartbeat to go stale");
    }

    #[test]
    fn a_live_owner_elsewhere_is_respected_while_its_heartbeat_moves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.lock");
        let owner = path.with_extension("lock.owner");
        let other = Owner { host: "some-other-node".into(), pid: 1, start: None, token: "other".into() };
        std::fs::write(&owner, serde_json::to_vec(&other).unwrap()).unwrap();
        let o2 = owner.clone();
        // The remote owner beats for 1.5 s, then releases.
        let h = std::thread::spawn(move || {
            for _ in 0..6 {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let f = File::options().write(true).open(&o2).unwrap();
                f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(1)).unwrap();
            }
            std::fs::remove_file(&o2).unwrap();
        });
        let t = std::time::Instant::now();
        let _l = SharedLock::acquire_with(&path, std::time::Duration::from_millis(700)).unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(1400), "took the lock while its owner was alive ({:?})", t.elapsed());
        h.join().unwrap();
    }
}
