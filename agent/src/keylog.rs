//! TLS decryption from a key log (the `SSLKEYLOGFILE` format written by browsers, curl,
//! OpenSSL and Go): the per-connection secrets by client random, and record decryption for the
//! AEAD cipher suites of TLS 1.2 (AES-GCM, ChaCha20-Poly1305) and TLS 1.3. The ciphers, HKDF
//! and HMAC come from the RustCrypto crates; this file holds only the TLS key schedule
//! (RFC 8446 §7, RFC 5246 §5/§6.3, RFC 5288, RFC 7905) and the record nonce/AAD rules.
//! CBC suites are not supported (they are counted as undecryptable records).

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384};

use crate::AgentError;

/// The secrets a key log holds for one connection (by its ClientHello random).
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    /// TLS 1.2 and below: `CLIENT_RANDOM <random> <master secret>`.
    pub master: Option<Vec<u8>>,
    pub client_handshake: Option<Vec<u8>>,
    pub server_handshake: Option<Vec<u8>>,
    pub client_app: Option<Vec<u8>>,
    pub server_app: Option<Vec<u8>>,
}

/// A loaded key log.
#[derive(Debug, Default, Clone)]
pub struct KeyLog {
    by_random: HashMap<[u8; 32], Secrets>,
}

impl KeyLog {
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AgentError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::KeyLog {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let log = Self::parse(&text);
        if log.is_empty()
            && text
                .lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            return Err(AgentError::KeyLog {
                path: path.to_path_buf(),
                reason: "no `LABEL <client random hex> <secret hex>` line found".into(),
            });
        }
        Ok(log)
    }

    /// Parses key log text; lines that are not understood are skipped (the format allows
    /// comments and labels this reader does not need, e.g. `EXPORTER_SECRET`).
    pub fn parse(text: &str) -> Self {
        let mut log = Self::default();
        log.merge_text(text);
        log
    }

    fn merge_text(&mut self, text: &str) {
        for line in text.lines() {
            let mut parts = line.split_ascii_whitespace();
            let (Some(label), Some(random), Some(secret)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Some(random), Some(secret)) = (unhex(random), unhex(secret)) else {
                continue;
            };
            let Ok(random) = <[u8; 32]>::try_from(random.as_slice()) else {
                continue;
            };
            let s = self.by_random.entry(random).or_default();
            let slot = match label {
                "CLIENT_RANDOM" => &mut s.master,
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut s.client_handshake,
                "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut s.server_handshake,
                "CLIENT_TRAFFIC_SECRET_0" => &mut s.client_app,
                "SERVER_TRAFFIC_SECRET_0" => &mut s.server_app,
                _ => continue,
            };
            *slot = Some(secret);
        }
    }

    /// Adds another key log's secrets (several `--keylog` files).
    pub fn merge(&mut self, other: KeyLog) {
        self.by_random.extend(other.by_random);
    }

    pub fn get(&self, client_random: &[u8]) -> Option<&Secrets> {
        self.by_random
            .get(<&[u8; 32]>::try_from(client_random).ok()?)
    }

    /// Connections (client randoms) with at least one secret.
    pub fn len(&self) -> usize {
        self.by_random.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_random.is_empty()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20,
}

/// An AEAD cipher suite this module can decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    cipher: Cipher,
    sha384: bool,
    tls13: bool,
}

impl Suite {
    pub fn from_id(id: u16) -> Option<Self> {
        let (cipher, sha384, tls13) = match id {
            0x1301 => (Cipher::Aes128Gcm, false, true),
            0x1302 => (Cipher::Aes256Gcm, true, true),
            0x1303 => (Cipher::ChaCha20, false, true),
            0x009c | 0x009e | 0x00a2 | 0xc02b | 0xc02f => (Cipher::Aes128Gcm, false, false),
            0x009d | 0x009f | 0x00a3 | 0xc02c | 0xc030 => (Cipher::Aes256Gcm, true, false),
            0xcca8..=0xccaa => (Cipher::ChaCha20, false, false),
            _ => return None,
        };
        Some(Self {
            cipher,
            sha384,
            tls13,
        })
    }

    pub fn is_tls13(&self) -> bool {
        self.tls13
    }

    fn key_len(&self) -> usize {
        match self.cipher {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::ChaCha20 => 32,
        }
    }
}

enum Key {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

/// Decrypts the records of one direction, counting sequence numbers.
pub struct RecordDecrypter {
    key: Key,
    iv: [u8; 12],
    /// TLS 1.2 GCM: 4 implicit IV bytes + 8 explicit nonce bytes at the start of each record.
    explicit_nonce: bool,
    tls13: bool,
    seq: u64,
}

fn hmac_sha(sha384: bool, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    if sha384 {
        let mut m = <Hmac<Sha384> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        parts.iter().for_each(|p| m.update(p));
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        parts.iter().for_each(|p| m.update(p));
        m.finalize().into_bytes().to_vec()
    }
}

/// TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed).
fn prf12(sha384: bool, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 48);
    let mut a = hmac_sha(sha384, secret, &[label, seed]);
    while out.len() < len {
        out.extend(hmac_sha(sha384, secret, &[&a, label, seed]));
        a = hmac_sha(sha384, secret, &[&a]);
    }
    out.truncate(len);
    out
}

/// TLS 1.3 HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(sha384: bool, secret: &[u8], label: &str, len: usize) -> Option<Vec<u8>> {
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0; len];
    if sha384 {
        hkdf::Hkdf::<Sha384>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .ok()?;
    } else {
        hkdf::Hkdf::<Sha256>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .ok()?;
    }
    Some(out)
}

impl RecordDecrypter {
    fn new(suite: Suite, key: &[u8], iv: &[u8], explicit_nonce: bool) -> Option<Self> {
        let key = match suite.cipher {
            Cipher::Aes128Gcm => Key::Aes128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
            Cipher::Aes256Gcm => Key::Aes256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
            Cipher::ChaCha20 => Key::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?)),
        };
        let mut full = [0u8; 12];
        full[..iv.len().min(12)].copy_from_slice(&iv[..iv.len().min(12)]);
        Some(Self {
            key,
            iv: full,
            explicit_nonce,
            tls13: suite.tls13,
            seq: 0,
        })
    }

    /// TLS 1.3: keys of one direction from its traffic secret.
    pub fn tls13(suite: Suite, secret: &[u8]) -> Option<Self> {
        let key = expand_label(suite.sha384, secret, "key", suite.key_len())?;
        let iv = expand_label(suite.sha384, secret, "iv", 12)?;
        Self::new(suite, &key, &iv, false)
    }

    /// TLS 1.2: keys of one direction (`client` or server writer) from the master secret.
    pub fn tls12(
        suite: Suite,
        master: &[u8],
        client_random: &[u8],
        server_random: &[u8],
        client: bool,
    ) -> Option<Self> {
        let klen = suite.key_len();
        let ivlen = if suite.cipher == Cipher::ChaCha20 {
            12
        } else {
            4
        };
        let seed = [server_random, client_random].concat();
        let block = prf12(
            suite.sha384,
            master,
            b"key expansion",
            &seed,
            2 * klen + 2 * ivlen,
        );
        let (ck, rest) = block.split_at(klen);
        let (sk, rest) = rest.split_at(klen);
        let (civ, siv) = rest.split_at(ivlen);
        let (key, iv) = if client { (ck, civ) } else { (sk, siv) };
        Self::new(suite, key, iv, suite.cipher != Cipher::ChaCha20)
    }

    /// Decrypts one record's payload. Returns the real content type (TLS 1.3 hides it inside
    /// the record) and the plaintext; `None` if authentication fails (wrong key, or a record
    /// this decrypter did not expect).
    pub fn decrypt(
        &mut self,
        content_type: u8,
        version: u16,
        payload: &[u8],
    ) -> Option<(u8, Vec<u8>)> {
        let mut nonce = self.iv;
        let body = if self.explicit_nonce {
            let (explicit, body) = payload.split_at_checked(8)?;
            nonce[4..].copy_from_slice(explicit);
            body
        } else {
            for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
                *n ^= s;
            }
            payload
        };
        let aad: Vec<u8> = if self.tls13 {
            let mut a = vec![content_type];
            a.extend_from_slice(&version.to_be_bytes());
            a.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            a
        } else {
            let plain_len = body.len().checked_sub(16)? as u16;
            let mut a = self.seq.to_be_bytes().to_vec();
            a.push(content_type);
            a.extend_from_slice(&version.to_be_bytes());
            a.extend_from_slice(&plain_len.to_be_bytes());
            a
        };
        let p = Payload {
            msg: body,
            aad: &aad,
        };
        let plain = match &self.key {
            Key::Aes128(k) => k.decrypt((&nonce).into(), p),
            Key::Aes256(k) => k.decrypt((&nonce).into(), p),
            Key::ChaCha(k) => k.decrypt((&nonce).into(), p),
        }
        .ok()?;
        self.seq += 1;
        if self.tls13 {
            // TLSInnerPlaintext: content, then the real type, then zero padding.
            let end = plain.iter().rposition(|b| *b != 0)?;
            let ty = plain[end];
            let mut plain = plain;
            plain.truncate(end);
            Some((ty, plain))
        } else {
            Some((content_type, plain))
        }
    }
}

/// Decryption state of one TLS connection, fed by the handshake dissector: the randoms and
/// the cipher suite from the hellos, ChangeCipherSpec per direction (TLS 1.2), then every
/// encrypted record. TLS 1.3 switches from handshake to application keys after each side's
/// Finished; instead of tracking handshake messages, a record that fails authentication
/// under the handshake key is tried under the application key (AEAD makes this exact).
#[derive(Default)]
pub struct TlsSession {
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    suite: Option<Suite>,
    /// Per direction (0 = client → server): the current decrypter and, for TLS 1.3, the
    /// application-key decrypter to switch to.
    keys: [Option<RecordDecrypter>; 2],
    next: [Option<RecordDecrypter>; 2],
    /// Records that could not be decrypted (no secrets, unsupported suite, bad tag).
    pub failed_records: u64,
    pub decrypted_records: u64,
}

impl TlsSession {
    pub fn client_hello(&mut self, random: &[u8]) {
        self.client_random = random.try_into().ok();
    }

    /// The ServerHello: keys for TLS 1.3 are ready at once (handshake traffic secrets);
    /// TLS 1.2 waits for each side's ChangeCipherSpec. `Err` says why nothing can be decrypted
    /// (shown in the entry).
    pub fn server_hello(
        &mut self,
        log: &KeyLog,
        random: &[u8],
        suite_id: u16,
        tls13: bool,
    ) -> Result<(), &'static str> {
        self.server_random = random.try_into().ok();
        let suite = Suite::from_id(suite_id).ok_or("cipher suite not supported for decryption")?;
        if suite.tls13 != tls13 {
            return Err("cipher suite does not match the negotiated version");
        }
        self.suite = Some(suite);
        let secrets = self
            .client_random
            .and_then(|r| log.get(&r))
            .ok_or("no secrets for this connection in the key log")?;
        if tls13 {
            let mk =
                |s: &Option<Vec<u8>>| s.as_deref().and_then(|s| RecordDecrypter::tls13(suite, s));
            self.keys = [mk(&secrets.client_handshake), mk(&secrets.server_handshake)];
            self.next = [mk(&secrets.client_app), mk(&secrets.server_app)];
            if self.keys.iter().chain(&self.next).all(Option::is_none) {
                return Err("key log has no TLS 1.3 traffic secrets for this connection");
            }
        } else if secrets.master.is_none() {
            return Err("key log has no CLIENT_RANDOM master secret for this connection");
        }
        Ok(())
    }

    /// TLS 1.2: records of `dir` (0 = client) are encrypted from now on.
    pub fn change_cipher_spec(&mut self, log: &KeyLog, dir: usize) {
        let Some(suite) = self.suite.filter(|s| !s.tls13) else {
            return;
        };
        let (Some(cr), Some(sr)) = (self.client_random, self.server_random) else {
            return;
        };
        if let Some(master) = log.get(&cr).and_then(|s| s.master.as_deref()) {
            self.keys[dir & 1] = RecordDecrypter::tls12(suite, master, &cr, &sr, dir & 1 == 0);
        }
    }

    /// Whether records of `dir` are expected to be encrypted and a key exists for them.
    pub fn can_decrypt(&self, dir: usize) -> bool {
        self.keys[dir & 1].is_some() || self.next[dir & 1].is_some()
    }

    /// Decrypts one record of `dir`; `None` (counted) if no key opens it.
    pub fn decrypt(
        &mut self,
        dir: usize,
        content_type: u8,
        version: u16,
        payload: &[u8],
    ) -> Option<(u8, Vec<u8>)> {
        let d = dir & 1;
        if let Some(out) = self.keys[d]
            .as_mut()
            .and_then(|k| k.decrypt(content_type, version, payload))
        {
            self.decrypted_records += 1;
            return Some(out);
        }
        if let Some(mut next) = self.next[d].take() {
            if let Some(out) = next.decrypt(content_type, version, payload) {
                self.keys[d] = Some(next);
                self.decrypted_records += 1;
                return Some(out);
            }
            self.next[d] = Some(next);
        }
        self.failed_records += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8448 §3 (simple 1-RTT handshake): the server's handshake traffic secret and the
    /// key and IV it expands to.
    #[test]
    fn tls13_key_schedule_matches_rfc8448() {
        let secret =
            unhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38").unwrap();
        let key = expand_label(false, &secret, "key", 16).unwrap();
        let iv = expand_label(false, &secret, "iv", 12).unwrap();
        assert_eq!(
            data_encoding::HEXLOWER.encode(&key),
            "3fce516009c21727d0f2e4e86ee403bc"
        );
        assert_eq!(
            data_encoding::HEXLOWER.encode(&iv),
            "5d313eb2671276ee13000b30"
        );
    }

    #[test]
    fn parses_key_logs() {
        let r = "ab".repeat(32);
        let log = KeyLog::parse(&format!(
            "# comment\nCLIENT_RANDOM {r} {}\nSERVER_TRAFFIC_SECRET_0 {r} 0102\nbad line\n",
            "00".repeat(48)
        ));
        let s = log.get(&[0xab; 32]).unwrap();
        assert_eq!(s.master.as_ref().unwrap().len(), 48);
        assert_eq!(s.server_app.as_deref(), Some(&[1, 2][..]));
        assert!(log.get(&[0; 32]).is_none());
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn round_trip_tls12_gcm_and_tls13() {
        // Encrypt with the same derived keys, then decrypt through the record rules.
        for id in [0xc02f_u16, 0xc030, 0xcca8, 0x1301, 0x1302, 0x1303] {
            let suite = Suite::from_id(id).unwrap();
            let mk = |s: Suite| {
                if s.tls13 {
                    RecordDecrypter::tls13(s, &[7; 48]).unwrap()
                } else {
                    RecordDecrypter::tls12(s, &[9; 48], &[1; 32], &[2; 32], true).unwrap()
                }
            };
            let enc = mk(suite);
            let mut dec = mk(suite);
            let msg = b"GET / HTTP/1.1\r\n\r\n";
            let mut plain = msg.to_vec();
            if suite.tls13 {
                plain.push(23);
            }
            let mut nonce = enc.iv;
            let explicit = [0, 0, 0, 0, 0, 0, 0, 0];
            if enc.explicit_nonce {
                nonce[4..].copy_from_slice(&explicit);
            }
            let body_len = plain.len() + 16;
            let record_len = body_len + if enc.explicit_nonce { 8 } else { 0 };
            let aad: Vec<u8> = if suite.tls13 {
                [&[23u8, 3, 3][..], &(record_len as u16).to_be_bytes()].concat()
            } else {
                [
                    &0u64.to_be_bytes()[..],
                    &[23, 3, 3],
                    &(msg.len() as u16).to_be_bytes(),
                ]
                .concat()
            };
            let p = Payload {
                msg: &plain,
                aad: &aad,
            };
            let ct = match &enc.key {
                Key::Aes128(k) => k.encrypt((&nonce).into(), p),
                Key::Aes256(k) => k.encrypt((&nonce).into(), p),
                Key::ChaCha(k) => k.encrypt((&nonce).into(), p),
            }
            .unwrap();
            let record = if enc.explicit_nonce {
                [&explicit[..], &ct].concat()
            } else {
                ct
            };
            let (ty, out) = dec.decrypt(23, 0x0303, &record).unwrap();
            assert_eq!((ty, out.as_slice()), (23, &msg[..]), "suite {id:x}");
            // Replaying the same record fails: the sequence number moved on (except GCM 1.2,
            // whose nonce is explicit, where the AAD's sequence number catches it).
            assert!(dec.decrypt(23, 0x0303, &record).is_none());
        }
    }
}
