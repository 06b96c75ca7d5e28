//! cgroup id → pod UID, for attributing a process's traffic to its pod whatever address it
//! uses (host-network pods share the node's IP). The eBPF probes report
//! `bpf_get_current_cgroup_id()`: the inode number of the process's cgroup v2 directory. The
//! kubelet names pod cgroups after the pod UID — `…/kubepods-burstable-pod<UID>.slice/…` with
//! the systemd driver (dashes of the UID as underscores), `…/kubepods/burstable/pod<UID>/…`
//! with cgroupfs — so the directory with that inode names the pod.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A cgroup id not found is looked for again after a rescan at most this often.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// Directory levels walked below the root (kubelet's pod cgroups are 2–4 deep).
const MAX_DEPTH: usize = 8;
/// Ids remembered at most (cleared when full).
const MAX_IDS: usize = 65_536;

/// The cgroup v2 mount point of this process (`/proc/self/mountinfo`), else
/// `/sys/fs/cgroup`.
pub fn cgroup2_root() -> PathBuf {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                // "… mount-point … - cgroup2 …": the fifth field is the mount point.
                let (left, right) = l.split_once(" - ")?;
                right
                    .starts_with("cgroup2 ")
                    .then(|| left.split(' ').nth(4).map(PathBuf::from))?
            })
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// The pod UID a cgroup path names, if any (the deepest component that names one).
pub fn pod_uid_in(path: &str) -> Option<String> {
    path.rsplit('/').find_map(|component| {
        component.match_indices("pod").find_map(|(i, _)| {
            let rest = component.get(i + 3..)?;
            let uid: String = rest.chars().take(36).collect();
            let is_uid = uid.len() == 36
                && uid.char_indices().all(|(k, c)| match k {
                    8 | 13 | 18 | 23 => c == '-' || c == '_',
                    _ => c.is_ascii_hexdigit(),
                });
            is_uid.then(|| uid.replace('_', "-"))
        })
    })
}

/// cgroup id → pod UID, from one walk of the cgroup tree per miss (rate-limited).
#[derive(Debug)]
pub struct CgroupPods {
    root: PathBuf,
    by_id: HashMap<u64, Option<String>>,
    last_scan: Option<Instant>,
}

impl CgroupPods {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupPods {
            root: root.into(),
            by_id: HashMap::new(),
            last_scan: None,
        }
    }

    /// The pod UID of cgroup `id`, if its directory names one.
    pub fn pod_uid(&mut self, id: u64) -> Option<String> {
        if let Some(known) = self.by_id.get(&id) {
            return known.clone();
        }
        if self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY) {
            self.scan();
            if let Some(known) = self.by_id.get(&id) {
                return known.clone();
            }
        }
        None
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        if self.by_id.len() >= MAX_IDS {
            self.by_id.clear();
        }
        let mut stack: Vec<(PathBuf, usize)> = vec![(self.root.clone(), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
            self.by_id
                .insert(meta.ino(), pod_uid_in(&rel.to_string_lossy()));
            if depth >= MAX_DEPTH {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_cgroup_paths_name_their_pod() {
        let uid = "0b4c5a1e-6f0d-4c8e-9a51-3d2f1e7c9b10";
        for path in [
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b4c5a1e_6f0d_4c8e_9a51_3d2f1e7c9b10.slice/cri-containerd-3f2a.scope",
            "kubepods/besteffort/pod0b4c5a1e-6f0d-4c8e-9a51-3d2f1e7c9b10/3f2a9c",
            "kubepods.slice/kubepods-pod0b4c5a1e_6f0d_4c8e_9a51_3d2f1e7c9b10.slice",
        ] {
            assert_eq!(pod_uid_in(path).as_deref(), Some(uid), "{path}");
        }
        for path in [
            "",
            "system.slice/sshd.service",
            "kubepods/podnot-a-uid",
            "user.slice/pods",
        ] {
            assert_eq!(pod_uid_in(path), None, "{path}");
        }
    }

    #[test]
    fn a_cgroup_directory_is_found_by_its_inode() {
        let root = std::env::temp_dir().join(format!("wt-cgroup-{}", std::process::id()));
        let uid = "0b4c5a1e-6f0d-4c8e-9a51-3d2f1e7c9b10";
        let pod = root.join(format!("kubepods/burstable/pod{uid}/ctr"));
        std::fs::create_dir_all(&pod).unwrap();
        let id = std::fs::metadata(&pod).unwrap().ino();
        let other = std::fs::metadata(root.join("kubepods")).unwrap().ino();
        let mut c = CgroupPods::new(&root);
        assert_eq!(c.pod_uid(id).as_deref(), Some(uid));
        assert_eq!(c.pod_uid(other), None);
        assert!(cgroup2_root().is_absolute());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
