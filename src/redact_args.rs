//! Redaction options: what the agent removes from entries before they leave the node
//! (see `wiretrail_agent::redact`). `RedactArgs` is flattened into the live-capture commands
//! (`agent`, `up`), where redaction is on unless `--no-redact`; `wiretrail import` takes the
//! same rules behind an explicit `--redact` (the operator already holds the capture file).

use anyhow::Context;
use wiretrail_agent::Redactor;

/// Extra rules on top of the defaults (Authorization credentials, cookies, JSON keys and
/// parameters named password/token/secret, card numbers).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RedactRules {
    /// Also replace the whole value of this header (case-insensitive; repeatable).
    #[arg(long = "redact-header", value_name = "NAME")]
    pub headers: Vec<String>,
    /// Also replace the values of this JSON key and of query/form parameters named so
    /// (case-insensitive, matched as a word: `api_key` matches `apiKey`, `x-api-key`;
    /// repeatable).
    #[arg(long = "redact-json-key", value_name = "KEY")]
    pub json_keys: Vec<String>,
    /// Also replace every match of this regular expression (Rust `regex` syntax) in header
    /// values, paths, bodies and protocol detail (repeatable).
    #[arg(long = "redact-regex", value_name = "RE")]
    pub regexes: Vec<String>,
}

impl RedactRules {
    /// The default rules plus these.
    pub fn build(&self) -> anyhow::Result<Redactor> {
        let mut r = Redactor::default();
        for h in &self.headers {
            anyhow::ensure!(!h.trim().is_empty(), "--redact-header needs a header name");
            r = r.with_header(h);
        }
        for k in &self.json_keys {
            r = r.with_json_key(k).context("--redact-json-key")?;
        }
        for re in &self.regexes {
            r = r.with_regex(re).context("--redact-regex")?;
        }
        Ok(r)
    }

    fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.json_keys.is_empty() && self.regexes.is_empty()
    }
}

/// Redaction of live capture: on by default.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RedactArgs {
    /// Store secrets as captured (Authorization, cookies, passwords, tokens, card numbers):
    /// for security hunting, where the credentials themselves are the evidence.
    #[arg(long, env = "WIRETRAIL_NO_REDACT")]
    pub no_redact: bool,
    #[command(flatten)]
    pub rules: RedactRules,
}

impl RedactArgs {
    /// The redactor for `PipelineConfig::redactor`; [`Redactor::off`] with `--no-redact`.
    pub fn build(&self) -> anyhow::Result<Redactor> {
        if self.no_redact {
            anyhow::ensure!(
                self.rules.is_empty(),
                "--no-redact cannot be combined with --redact-header/--redact-json-key/--redact-regex"
            );
            tracing::warn!(
                "redaction off (--no-redact): credentials and secrets are stored as captured"
            );
            return Ok(Redactor::off());
        }
        self.rules.build()
    }
}

/// Redaction of `wiretrail import`: off unless `--redact`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImportRedactArgs {
    /// Remove secrets before storing, as live capture does by default (Authorization
    /// credentials, cookies, passwords/tokens/secrets in JSON and parameters, card numbers).
    #[arg(long)]
    pub redact: bool,
    #[command(flatten)]
    pub rules: RedactRules,
}

impl ImportRedactArgs {
    pub fn build(&self) -> anyhow::Result<Option<Redactor>> {
        if !self.redact {
            anyhow::ensure!(
                self.rules.is_empty(),
                "--redact-header/--redact-json-key/--redact-regex need --redact"
            );
            return Ok(None);
        }
        self.rules.build().map(Some)
    }
}
