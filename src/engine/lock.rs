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
