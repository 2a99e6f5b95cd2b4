//! Running PostgreSQL's programs: secrets only through the environment, exit status checked,
//! stderr kept for the error, a time limit on every run, optionally as another OS user.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Errors of running a program; each names the program.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} did not finish within {after:?}")]
    TimedOut { program: String, after: Duration },
    #[error("waiting for {program}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Most stderr kept for an error message.
const STDERR_KEEP: usize = 8 * 1024;

/// An OS identity to run a program as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// A program invocation. Build with [`Cmd::new`], run with [`Cmd::run`] or [`Cmd::spawn`].
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    run_as: Option<RunAs>,
    timeout: Duration,
}

impl Cmd {
    /// A program with a default limit of one hour.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            run_as: None,
            timeout: Duration::from_secs(3600),
        }
    }
    /// Adds an argument (never a secret).
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    /// Adds arguments (never secrets).
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    /// Sets an environment variable; this is how passwords reach a program (`PGPASSWORD`).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.to_owned(), v.to_owned()));
        self
    }
    /// Runs the program as another user.
    pub fn run_as(mut self, who: Option<RunAs>) -> Self {
        self.run_as = who;
        self
    }
    /// Sets the time limit.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The program's file name, for messages.
    pub fn name(&self) -> String {
        self.program
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.display().to_string())
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        // A clean environment: nothing of the server's (tokens, keys) leaks into children.
        c.env_clear();
        c.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        c.env("LC_ALL", "C.UTF-8");
        c.env("LANG", "C.UTF-8");
        c.env("HOME", "/tmp");
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        if let Some(who) = self.run_as {
            c.uid(who.uid);
            c.gid(who.gid);
        }
        c.kill_on_drop(true);
        c
    }

    /// Runs to completion with stdin closed; returns stdout. Fails with stderr on a non-zero exit.
    pub async fn run(self) -> Result<String, Error> {
        let name = self.name();
        let mut c = self.command();
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().map_err(|source| Error::Spawn {
            program: name.clone(),
            source,
        })?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => {
                return Err(Error::TimedOut {
                    program: name,
                    after: self.timeout,
                })
            }
            Ok(r) => r.map_err(|source| Error::Wait {
                program: name.clone(),
                source,
            })?,
        };
        if !out.status.success() {
            return Err(Error::Failed {
                program: name,
                status: out.status.to_string(),
                stderr: tail(&out.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the program with stdout piped and stderr collected in the background.
    pub fn spawn(self) -> Result<Running, Error> {
        let name = self.name();
        let mut c = self.command();
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|source| Error::Spawn {
            program: name.clone(),
            source,
        })?;
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s)));
        Ok(Running {
            name,
            child,
            stderr,
            timeout: self.timeout,
        })
    }
}

/// A started program whose stdout the caller reads.
pub struct Running {
    name: String,
    child: Child,
    stderr: Option<tokio::task::JoinHandle<Vec<u8>>>,
    timeout: Duration,
}

impl Running {
    /// Takes the program's stdout.
    pub fn stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for exit; a non-zero exit is an error with stderr attached.
    pub async fn finish(mut self) -> Result<(), Error> {
        let status = match tokio::time::timeout(self.timeout, self.child.wait()).await {
            Err(_) => {
                let _ = self.child.kill().await;
                return Err(Error::TimedOut {
                    program: self.name,
                    after: self.timeout,
                });
            }
            Ok(r) => r.map_err(|source| Error::Wait {
                program: self.name.clone(),
                source,
            })?,
        };
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => Vec::new(),
        };
        if !status.success() {
            return Err(Error::Failed {
                program: self.name,
                status: status.to_string(),
                stderr: tail(&stderr),
            });
        }
        Ok(())
    }

    /// Kills the program (used when the caller gives up).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn read_tail(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_KEEP {
                    kept.drain(..kept.len() - STDERR_KEEP);
                }
            }
        }
    }
    kept
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_KEEP);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// Path of a program in a directory.
pub fn bin(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_keeps_stderr_and_program_name() {
        let err = Cmd::new("/bin/sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh failed") && msg.contains("boom"), "{msg}");
    }

    #[tokio::test]
    async fn env_reaches_child_but_server_env_does_not() {
        let out = Cmd::new("/bin/sh")
            .args(["-c", "echo \"$PGPASSWORD:${CARGO:-unset}\""])
            .env("PGPASSWORD", "x1")
            .run()
            .await
            .unwrap();
        assert_eq!(out.trim(), "x1:unset");
    }

    #[tokio::test]
    async fn timeout_is_enforced() {
        let err = Cmd::new("/bin/sleep")
            .arg("5")
            .timeout(Duration::from_millis(100))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut { .. }));
    }
}
