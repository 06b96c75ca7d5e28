//! `wiretrail auth token add|list|revoke`: the principals file of `up --auth tokens`, and the
//! `--token` option every client command shares.
//!
//! The commands edit the file in place (atomic replace) and need no running server and no
//! data-dir lock: a running `up` picks the change up within a second.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::json;
use wiretrail_query::auth::tokens::{default_path, PrincipalsFile};
use wiretrail_query::auth::{Role, Scope};

#[derive(clap::Subcommand, Debug)]
pub enum AuthCommand {
    /// Bearer tokens of `wiretrail up --auth tokens`.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a principal with a new random token: the token is printed once, alone on its
    /// stdout line; the file keeps only its SHA-256.
    Add(AddArgs),
    /// List the principals (names, roles, namespaces; never tokens or hashes).
    List(ListArgs),
    /// Remove a principal: its token stops working within a second, without a restart.
    Revoke(RevokeArgs),
}

/// Which principals file: `--file`, else `<data>/auth/tokens.json`.
#[derive(clap::Args, Debug)]
pub struct FileArgs {
    /// Data directory whose `auth/tokens.json` to edit.
    #[arg(long, value_name = "DIR", default_value = crate::DEFAULT_DATA)]
    data: PathBuf,
    /// The principals file itself (as given to `up --auth-tokens`), instead of the data dir's.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

impl FileArgs {
    fn path(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| default_path(&self.data))
    }
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    file: FileArgs,
    /// What the principal may do: `viewer` (reads, SQL, live views, snapshot list/export),
    /// `admin` (also snapshot create/delete, and shipping entries), `agent` (ships entries to
    /// ingest only).
    #[arg(long, value_name = "ROLE", value_parser = ["viewer", "admin", "agent"])]
    role: String,
    /// Namespaces whose entries it may see: `a,b`, or `*` for all. Recorded now; enforced on
    /// reads by a later release (see README, Security).
    #[arg(long, value_name = "LIST", default_value = "*")]
    namespaces: String,
    /// Principal name: letters, digits, '.', '_', '-', '@'.
    name: String,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    file: FileArgs,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    file: FileArgs,
    name: String,
}

pub fn run(cmd: AuthCommand) -> anyhow::Result<()> {
    let AuthCommand::Token(cmd) = cmd;
    match cmd {
        TokenCommand::Add(a) => {
            let path = a.file.path();
            let role: Role = a.role.parse()?;
            let scope = Scope::parse(&a.namespaces)?;
            let mut f = PrincipalsFile::read_or_empty(&path)?;
            let token = f.add(&a.name, role, scope.clone())?;
            f.write_atomic(&path)?;
            // The token alone on stdout (for scripts: `T=$(wiretrail auth token add …)`); what
            // happened goes to stderr.
            println!("{token}");
            eprintln!(
                "added {} (role {role}, namespaces {scope}) to {}; the token above is shown only now",
                a.name,
                path.display()
            );
            Ok(())
        }
        TokenCommand::List(a) => {
            let path = a.file.path();
            let f = PrincipalsFile::read_or_empty(&path)?;
            if a.format == "json" {
                let list: Vec<_> = f
                    .principals
                    .iter()
                    .map(|r| {
                        json!({"name": r.principal.name, "role": r.principal.role.as_str(),
                               "namespaces": r.principal.namespaces.to_string(), "created": r.created})
                    })
                    .collect();
                println!("{}", json!({ "principals": list }));
            } else {
                println!("{:<32} {:<7} {:<21} NAMESPACES", "NAME", "ROLE", "CREATED");
                for r in &f.principals {
                    println!(
                        "{:<32} {:<7} {:<21} {}",
                        r.principal.name,
                        r.principal.role,
                        r.created.as_deref().unwrap_or("-"),
                        r.principal.namespaces
                    );
                }
                println!("({} principals in {})", f.principals.len(), path.display());
            }
            Ok(())
        }
        TokenCommand::Revoke(a) => {
            let path = a.file.path();
            let mut f = PrincipalsFile::read(&path)?;
            f.revoke(&a.name)?;
            f.write_atomic(&path)?;
            println!("revoked {} in {}", a.name, path.display());
            Ok(())
        }
    }
}

/// `--token` of the client commands (`import`, `agent`, `query`, `snapshot`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TokenArg {
    /// Bearer token for a server started with `--auth tokens` (from `wiretrail auth token
    /// add`). Prefer the environment variable: a command line is visible to other users.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WIRETRAIL_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

impl TokenArg {
    pub fn bearer(&self) -> Option<wiretrail_ingest::BearerToken> {
        self.token.clone().map(wiretrail_ingest::BearerToken::new)
    }

    /// The request with `Authorization: Bearer …` when a token was given (reqwest marks it
    /// sensitive).
    pub fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends the request; a 401/403 becomes an error that says what to pass.
    pub async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        url: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .apply(rb)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let msg = body["error"]["message"].as_str().unwrap_or("refused");
            let hint = if self.token.is_none() {
                " (pass --token or set WIRETRAIL_TOKEN)"
            } else {
                ""
            };
            bail!("{url}: {status}: {msg}{hint}");
        }
        Ok(resp)
    }
}
