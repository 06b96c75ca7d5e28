//! `--auth tokens`: the principals file and its live reload.
//!
//! The file (default `<data>/auth/tokens.json`, mode 0600) holds, per principal, its name,
//! role, namespace scope and the **SHA-256 of its token**, never the token: whoever reads the
//! file (a backup, a support bundle) cannot call the API with it. Tokens are 256 random bits
//! from the OS, so a plain hash is enough (no salt or slow hash is needed against guessing).
//!
//! ```json
//! {"version": 1, "principals": [
//!   {"name": "alice", "role": "viewer", "namespaces": ["shop", "payments"],
//!    "token_sha256": "9f86d0…", "created": "2026-05-01T10:00:00Z"}]}
//! ```
//!
//! `wiretrail auth token add|list|revoke` edit it with an atomic replace (temp file + rename),
//! so the server, which re-reads the file at most once per reload interval (default 1 s) and
//! swaps in a new version when its bytes changed, never reads half a file from us; a file it
//! cannot parse (an editor's half-written save) or a removed file is logged once and the last
//! good set stays in force.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Principal, Role, Scope};
use crate::QueryError;

/// Every token starts with this, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "wt_";

/// Where `up --auth tokens` and `auth token …` look by default.
pub fn default_path(data: &Path) -> PathBuf {
    data.join("auth").join("tokens.json")
}

/// A new token: the prefix and 256 bits from the OS's random source, base64url (valid in an
/// HTTP header and as a WebSocket subprotocol).
pub fn generate_token() -> Result<String, QueryError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| QueryError::Auth(format!("the OS random source failed: {e}")))?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The principal whose hash equals `hash`. Every entry is compared, each in constant time, so
/// the time taken says nothing about how close a guess was.
pub(crate) fn find(
    entries: &[([u8; 32], Arc<Principal>)],
    hash: &[u8; 32],
) -> Option<Arc<Principal>> {
    let mut found = None;
    for (h, p) in entries {
        if bool::from(h[..].ct_eq(&hash[..])) {
            found = Some(p.clone());
        }
    }
    found
}

/// Letters, digits, `.`, `_`, `-`, `@` (a person's or a service's name); 1–128 characters.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub principal: Principal,
    pub token_sha256: [u8; 32],
    /// RFC 3339, when the token was made.
    pub created: Option<String>,
}

/// The principals file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalsFile {
    pub principals: Vec<PrincipalRecord>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> QueryError {
    QueryError::Auth(format!("principals file {}: {why}", path.display()))
}

impl PrincipalsFile {
    /// Parses and validates. Messages name the principal and field but never repeat a value
    /// from the file: a token pasted into the wrong field must not reach a log.
    pub fn parse(bytes: &[u8]) -> Result<PrincipalsFile, String> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("not valid JSON (line {}, column {})", e.line(), e.column()))?;
        match v.get("version").map(Value::as_u64) {
            None | Some(Some(1)) => {}
            _ => return Err("unsupported `version` (this build reads version 1)".into()),
        }
        let list = v
            .get("principals")
            .and_then(Value::as_array)
            .ok_or("expected an object with a `principals` array")?;
        let mut names = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        let mut out = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| valid_name(n))
                .ok_or_else(|| {
                    format!(
                        "principal #{}: `name` must be 1–128 letters, digits, . _ - @",
                        i + 1
                    )
                })?;
            let at = |field: &str, why: &str| format!("principal {name}: `{field}` {why}");
            let role: Role = p
                .get("role")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| at("role", "must be viewer, admin or agent"))?;
            let namespaces = match p.get("namespaces") {
                Some(Value::String(s)) if s == "*" => Scope::All,
                Some(Value::Array(a)) => {
                    let set: Option<BTreeSet<String>> =
                        a.iter().map(|n| n.as_str().map(String::from)).collect();
                    set.and_then(|s| Scope::from_list(s).ok()).ok_or_else(|| {
                        at(
                            "namespaces",
                            "must be \"*\" or a non-empty list of namespace names",
                        )
                    })?
                }
                _ => {
                    return Err(at(
                        "namespaces",
                        "must be \"*\" or a list of namespace names",
                    ))
                }
            };
            let hash = p
                .get("token_sha256")
                .and_then(Value::as_str)
                .and_then(|h| unhex(&h.to_ascii_lowercase()))
                .ok_or_else(|| {
                    at(
                        "token_sha256",
                        "must be 64 hex digits (the SHA-256 of the token, never the token)",
                    )
                })?;
            if !names.insert(name.to_string()) {
                return Err(at("name", "appears twice"));
            }
            if !hashes.insert(hash) {
                return Err(at("token_sha256", "is the same as another principal's"));
            }
            out.push(PrincipalRecord {
                principal: Principal {
                    name: name.to_string(),
                    role,
                    namespaces,
                },
                token_sha256: hash,
                created: p.get("created").and_then(Value::as_str).map(String::from),
            });
        }
        Ok(PrincipalsFile { principals: out })
    }

    pub fn to_json(&self) -> Value {
        let list: Vec<Value> = self
            .principals
            .iter()
            .map(|r| {
                let ns = match &r.principal.namespaces {
                    Scope::All => json!("*"),
                    Scope::Namespaces(s) => json!(s),
                };
                let mut o = json!({"name": r.principal.name, "role": r.principal.role.as_str(),
                    "namespaces": ns, "token_sha256": hex(&r.token_sha256)});
                if let Some(c) = &r.created {
                    o["created"] = json!(c);
                }
                o
            })
            .collect();
        json!({"version": 1, "principals": list})
    }

    /// Reads `path`; a missing file is an error (the server must not start with nobody).
    pub fn read(path: &Path) -> Result<PrincipalsFile, QueryError> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad(path, "not found; make a token with `wiretrail auth token add NAME --role viewer` (it writes this file)")
            } else {
                bad(path, e)
            }
        })?;
        PrincipalsFile::parse(&bytes).map_err(|e| bad(path, e))
    }

    /// Reads `path`, or an empty set when it does not exist yet (`auth token add`).
    pub fn read_or_empty(path: &Path) -> Result<PrincipalsFile, QueryError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PrincipalsFile::default()),
            _ => PrincipalsFile::read(path),
        }
    }

    /// Adds a principal with a new token and returns the token (the only time it exists in
    /// clear; only its hash is kept).
    pub fn add(&mut self, name: &str, role: Role, namespaces: Scope) -> Result<String, QueryError> {
        if !valid_name(name) {
            return Err(QueryError::BadRequest(
                "a principal's name is 1–128 letters, digits, '.', '_', '-', '@'".into(),
            ));
        }
        if self.principals.iter().any(|r| r.principal.name == name) {
            return Err(QueryError::Conflict(format!(
                "principal {name} exists; revoke it first to give it a new token"
            )));
        }
        let token = generate_token()?;
        self.principals.push(PrincipalRecord {
            principal: Principal {
                name: name.to_string(),
                role,
                namespaces,
            },
            token_sha256: hash_token(&token),
            created: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        });
        Ok(token)
    }

    /// Removes a principal; its token stops working at the server's next check.
    pub fn revoke(&mut self, name: &str) -> Result<(), QueryError> {
        let before = self.principals.len();
        self.principals.retain(|r| r.principal.name != name);
        if self.principals.len() == before {
            return Err(QueryError::NotFound(format!("no principal named {name}")));
        }
        Ok(())
    }

    /// Replaces `path` atomically: a 0600 temp file beside it, fsynced, renamed over it, the
    /// directory fsynced. The directory is made 0700 when created.
    pub fn write_atomic(&self, path: &Path) -> Result<(), QueryError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| bad(path, e))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tokens.json".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let res = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut body = serde_json::to_vec_pretty(&self.to_json())?;
            body.push(b'\n');
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map_err(|e| bad(path, e))
    }
}

/// What identifies one version of the file: the SHA-256 of its bytes (a stat is not enough:
/// coarse mtimes and reused inodes can make two quick edits look alike). `None`: no file.
type Version = Option<[u8; 32]>;

struct Loaded {
    entries: Vec<([u8; 32], Arc<Principal>)>,
    version: Version,
}

impl Loaded {
    fn new(file: PrincipalsFile, version: Version) -> Loaded {
        Loaded {
            entries: file
                .principals
                .into_iter()
                .map(|r| (r.token_sha256, Arc::new(r.principal)))
                .collect(),
            version,
        }
    }
}

/// The principals in force, reloaded when the file changes.
pub struct TokenStore {
    path: PathBuf,
    interval: Duration,
    current: RwLock<Arc<Loaded>>,
    next_check: Mutex<Instant>,
    /// The version of the file last refused, so it is logged once, not at every check.
    refused: Mutex<Option<Version>>,
    reload_errors: AtomicU64,
}

fn not_found_hint(path: &Path) -> QueryError {
    bad(path, "not found; make a token with `wiretrail auth token add NAME --role viewer` (it writes this file), or pass --auth-tokens FILE")
}

impl TokenStore {
    /// Loads `path`, which must exist and be valid.
    pub fn open(path: &Path, interval: Duration) -> Result<TokenStore, QueryError> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                not_found_hint(path)
            } else {
                bad(path, e)
            }
        })?;
        let file = PrincipalsFile::parse(&bytes).map_err(|e| bad(path, e))?;
        if let Ok(m) = std::fs::metadata(path) {
            if m.mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the principals file is readable by others than its owner; chmod 600 it");
            }
        }
        tracing::info!(path = %path.display(), principals = file.principals.len(), "token authentication on");
        Ok(TokenStore {
            path: path.to_path_buf(),
            interval,
            current: RwLock::new(Arc::new(Loaded::new(file, Some(hash_bytes(&bytes))))),
            next_check: Mutex::new(Instant::now() + interval),
            refused: Mutex::new(None),
            reload_errors: AtomicU64::new(0),
        })
    }

    pub fn len(&self) -> usize {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reload_errors(&self) -> u64 {
        self.reload_errors.load(Ordering::Relaxed)
    }

    /// The principal holding the token whose hash is `hash`, after a (rate-limited) check
    /// for a changed file.
    pub fn lookup(&self, hash: &[u8; 32]) -> Option<Arc<Principal>> {
        self.maybe_reload();
        let cur = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        find(&cur.entries, hash)
    }

    /// Checks the file if the interval has passed since the last check.
    fn maybe_reload(&self) {
        {
            let mut next = self
                .next_check
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if now < *next {
                return;
            }
            *next = now + self.interval;
        }
        self.reload();
    }

    /// Loads the file if it changed; returns true when a new version is in force. A file
    /// that cannot be read or parsed leaves the last good one in force (logged once).
    pub fn reload(&self) -> bool {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .version;
        let (version, parsed) = match std::fs::read(&self.path) {
            Ok(bytes) => (Some(hash_bytes(&bytes)), PrincipalsFile::parse(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (None, Err("it was removed".to_string()))
            }
            Err(e) => (None, Err(e.to_string())),
        };
        if version.is_some() && version == current {
            return false;
        }
        match parsed {
            Ok(file) => {
                let n = file.principals.len();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Arc::new(Loaded::new(file, version));
                *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
                tracing::info!(path = %self.path.display(), principals = n, "principals file reloaded");
                true
            }
            Err(why) => {
                let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
                if *refused != Some(version) {
                    *refused = Some(version);
                    self.reload_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %self.path.display(), "principals file changed but cannot be used, the last good one stays in force: {why}");
                }
                false
            }
        }
    }
}

fn hash_bytes(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}
