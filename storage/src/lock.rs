//! One process owns a data directory: a second `wiretrail up` or an `import --data` into a
//! directory that a running server owns must fail clearly instead of corrupting it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};

use crate::error::IoContext;
use crate::paths::DataDir;
use crate::StorageError;

/// Held for as long as the process uses the directory; released on drop (and by the kernel
/// when the process dies, so a `kill -9` never leaves a stale lock).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(dir: &DataDir) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir.root()).at(dir.root())?;
        let path = dir.lock_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StorageError::InUse {
                    dir: dir.root().to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" ({holder})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).at(&path),
        }
        file.set_len(0).at(&path)?;
        file.rewind().at(&path)?;
        write!(file, "pid {}", std::process::id()).at(&path)?;
        Ok(DataDirLock { _file: file })
    }
}
