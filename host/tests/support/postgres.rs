//! A private PostgreSQL server for a test, started and stopped by the project's own
//! `scripts/postgres` (which installs PostgreSQL from Debian's packages when it is missing).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A running server; stopped and deleted on drop.
#[derive(Debug)]
pub struct Server {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    dir: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres")
}

impl Server {
    /// Starts a server on a free loopback port.
    pub fn start() -> Result<Server> {
        let out = Command::new(script())
            .arg("start")
            .output()
            .context("running scripts/postgres start")?;
        if !out.status.success() {
            bail!(
                "scripts/postgres start failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8(out.stdout)?;
        let mut lines = stdout.lines();
        let (Some(url), Some(dir)) = (lines.next(), lines.next()) else {
            bail!("scripts/postgres start printed {stdout:?}, not a URL and a directory");
        };
        Ok(Server {
            url: url.to_string(),
            dir: dir.to_string(),
        })
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(&self, name: &str) -> Result<String> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        let conn = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        drop(client);
        let _ = conn.await;
        let base = self
            .url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&self.url);
        Ok(format!("{base}/{name}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}
