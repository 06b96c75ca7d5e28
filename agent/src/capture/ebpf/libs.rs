//! Finding libssl files to probe and reading our own capabilities.
use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Where distributions put libssl (Debian/Ubuntu, RHEL/Fedora, Alpine, Arch).
const DEFAULT_PATHS: &[&str] = &[
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib64/libssl.so.3",
    "/usr/lib64/libssl.so.1.1",
    "/lib64/libssl.so.3",
    "/lib/libssl.so.3",
    "/usr/lib/libssl.so.3",
    "/lib/libssl.so.1.1",
    "/usr/lib/libssl.so.1.1",
];

/// (device, inode): uprobes live on inodes, so this is what makes two paths the same target.
pub(super) fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Existing default paths, then every libssl mapped by a running process, reached through
/// `/proc/PID/root` so files inside containers' mount namespaces are found too. Not deduplicated
/// (the caller dedupes by [`file_id`]).
pub(super) fn discover() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = DEFAULT_PATHS
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // Processes exit while we scan, and kernel threads have empty maps: skip silently.
        let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for path in mapped_libssl(&maps) {
            let p = PathBuf::from(format!("/proc/{pid}/root{path}"));
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Distinct executable libssl mappings in one `/proc/PID/maps` text.
fn mapped_libssl(maps: &str) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let mut cols = line.split_whitespace();
        let perms = cols.nth(1).unwrap_or("");
        let Some(path) = cols.nth(3) else { continue };
        if !perms.contains('x') || !path.starts_with('/') || line.ends_with("(deleted)") {
            continue;
        }
        let file = path.rsplit('/').next().unwrap_or("");
        if file.starts_with("libssl") && file.contains(".so") && !found.contains(&path) {
            found.push(path);
        }
    }
    found
}

/// The effective capability mask (CapEff) of this process.
pub(super) fn effective_caps() -> io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_select_executable_libssl() {
        let maps = "7f00-7f10 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3\n\
                    7f10-7f20 r-xp 00010000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3\n\
                    7f20-7f30 r-xp 00000000 08:01 124 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n\
                    7f30-7f40 r-xp 00000000 08:01 125 /opt/app/libssl.so.1.1 (deleted)\n\
                    7f40-7f50 rw-p 00000000 00:00 0 \n";
        assert_eq!(
            mapped_libssl(maps),
            vec!["/usr/lib/x86_64-linux-gnu/libssl.so.3"]
        );
    }
}
