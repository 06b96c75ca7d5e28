//! A TLS connection decrypted with a key log (`--keylog`): records are opened with the
//! connection's secrets ([`crate::keylog::TlsSession`]), handshake plaintext goes back to the
//! TLS parser (TLS 1.3 EncryptedExtensions and Certificate), and application data is
//! dissected by an inner parser — HTTP/2 when ALPN says `h2`, otherwise whichever dissector
//! claims the first plaintext bytes — whose entries are marked with the TLS connection's SNI.

use std::sync::Arc;

use serde_json::{json, Value};
use wiretrail_proto::Entry;

use crate::dissect::http2::Http2Parser;
use crate::dissect::{registry, Dir, DissectConfig, Parser, Probe};
use crate::keylog::{KeyLog, TlsSession};

/// Plaintext kept per direction while no dissector has decided yet.
const MAX_PROBE: usize = 16 << 10;

pub(super) struct Decryptor {
    log: Arc<KeyLog>,
    cfg: DissectConfig,
    session: TlsSession,
    /// Why this connection is not decrypted, for the entry's detail.
    pub note: Option<&'static str>,
    sni: Option<String>,
    alpn: Option<String>,
    inner: Option<Box<dyn Parser>>,
    inner_name: Option<&'static str>,
    /// No dissector claimed the plaintext: it is counted, not dissected.
    undissected: bool,
    probe_buf: [Vec<u8>; 2],
    entries: Vec<Entry>,
}

impl Decryptor {
    pub fn new(log: Arc<KeyLog>, cfg: DissectConfig) -> Self {
        Self {
            log,
            cfg,
            session: TlsSession::default(),
            note: None,
            sni: None,
            alpn: None,
            inner: None,
            inner_name: None,
            undissected: false,
            probe_buf: [Vec::new(), Vec::new()],
            entries: Vec::new(),
        }
    }

    pub fn client_hello(&mut self, random: &[u8], sni: Option<&str>) {
        self.session.client_hello(random);
        self.sni = sni.map(str::to_string);
    }

    pub fn server_hello(&mut self, random: &[u8], cipher: u16, tls13: bool) {
        if let Err(why) = self.session.server_hello(&self.log, random, cipher, tls13) {
            self.note = Some(why);
        }
    }

    pub fn alpn(&mut self, alpn: Option<&str>) {
        if let Some(a) = alpn {
            self.alpn = Some(a.to_string());
        }
    }

    pub fn change_cipher_spec(&mut self, dir: Dir) {
        // Without secrets for this connection the session has none to derive keys from.
        self.session.change_cipher_spec(&self.log, dir as usize);
    }

    /// Whether records of `dir` are to be decrypted now.
    pub fn active(&self, dir: Dir) -> bool {
        self.session.can_decrypt(dir as usize)
    }

    /// Opens one record; returns the real content type and plaintext.
    pub fn open(&mut self, dir: Dir, kind: u8, version: u16, frag: &[u8]) -> Option<(u8, Vec<u8>)> {
        self.session.decrypt(dir as usize, kind, version, frag)
    }

    /// Application data plaintext: to the inner parser (chosen on the first bytes).
    pub fn application_data(&mut self, dir: Dir, ts: i64, plain: &[u8], out: &mut Vec<Entry>) {
        if self.undissected || plain.is_empty() {
            return;
        }
        if self.inner.is_none() {
            let i = dir as usize;
            self.probe_buf[i].extend_from_slice(plain);
            if !self.choose(dir) {
                return;
            }
            let first = std::mem::take(&mut self.probe_buf[i]);
            self.feed(dir, ts, &first, out);
            return;
        }
        self.feed(dir, ts, plain, out);
    }

    fn choose(&mut self, dir: Dir) -> bool {
        let i = dir as usize;
        if self.alpn.as_deref() == Some("h2") {
            self.inner = Some(Box::new(Http2Parser::new(self.cfg.clone())));
            self.inner_name = Some("http2");
            return true;
        }
        let mut undecided = false;
        for d in registry().iter().filter(|d| d.name() != "tls") {
            match d.probe_stream(&self.probe_buf[i]) {
                Probe::Client | Probe::Server => {
                    self.inner = Some(d.new_stream(&self.cfg));
                    self.inner_name = Some(d.name());
                    return true;
                }
                Probe::NeedMore => undecided = true,
                Probe::No => {}
            }
        }
        if !undecided || self.probe_buf[i].len() > MAX_PROBE {
            self.undissected = true;
            self.probe_buf = [Vec::new(), Vec::new()];
        }
        false
    }

    fn feed(&mut self, dir: Dir, ts: i64, data: &[u8], out: &mut Vec<Entry>) {
        if let Some(p) = self.inner.as_mut() {
            p.data(dir, ts, data, &mut self.entries);
        }
        self.flush(out);
    }

    /// Marks the inner entries as carried by this TLS connection and hands them out.
    fn flush(&mut self, out: &mut Vec<Entry>) {
        for mut e in self.entries.drain(..) {
            let tls = json!({"sni": self.sni, "alpn": self.alpn, "decrypted": true});
            let mut detail: Value = e
                .request
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or_else(|| json!({}));
            if let Value::Object(m) = &mut detail {
                m.insert("tls".into(), tls);
            }
            e.request = Some(detail.to_string());
            out.push(e);
        }
    }

    pub fn end(&mut self, out: &mut Vec<Entry>) {
        if let Some(p) = self.inner.as_mut() {
            p.end(&mut self.entries);
        }
        self.flush(out);
    }

    pub fn errors(&self) -> u64 {
        self.inner.as_ref().map_or(0, |p| p.errors()) + self.session.failed_records
    }

    /// What the TLS entry says about decryption.
    pub fn detail(&self) -> Value {
        json!({
            "decrypted": self.session.decrypted_records > 0,
            "records": self.session.decrypted_records,
            "failed_records": self.session.failed_records,
            "inner_protocol": self.inner_name,
            "reason": self.note,
        })
    }
}
