//! A service in a child process (a Python or Rust HTTP service of a test), stopped when dropped
//! whatever happens to the test.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a service prints once it listens: `LISTENING <port>` (anywhere on a line).
pub const LISTENING: &str = "LISTENING";

/// A running child service; killed on drop unless it already exited.
#[derive(Debug)]
pub struct Service {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(
    pipe: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    port: Option<mpsc::Sender<u16>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &port
                // A Rust test binary prints `test name ... ` before the test's own output.
                && let Some((_, rest)) = line.split_once(LISTENING)
                && let Ok(p) = rest.trim().parse()
            {
                let _ = tx.send(p);
            }
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
        }
    });
}

impl Service {
    /// Spawns `command` and waits (at most `timeout`) for its `LISTENING <port>` line on stdout.
    ///
    /// # Errors
    /// The spawn error, or what the child printed when it exited or stayed silent.
    pub fn spawn(mut command: Command, timeout: Duration) -> Result<Self, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the service: {e}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            collect(out, stdout.clone(), Some(tx));
        }
        if let Some(err) = child.stderr.take() {
            collect(err, stderr.clone(), None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(port) = rx.recv_timeout(Duration::from_millis(100)) {
                return Ok(Service {
                    child,
                    port,
                    stdout,
                    stderr,
                });
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                return Err(format!(
                    "the service {} before listening:\n{}\n{}",
                    exited.map_or_else(|| "stayed silent".to_owned(), |s| format!("exited ({s})")),
                    stdout.lock().map(|l| l.join("\n")).unwrap_or_default(),
                    stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
                ));
            }
        }
    }

    /// Runs `command` to its end (killed after `timeout`); returns whether it succeeded and
    /// everything it printed (stdout, then stderr).
    ///
    /// # Errors
    /// The spawn error.
    pub fn run(mut command: Command, timeout: Duration) -> Result<(bool, String), String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            collect(out, stdout.clone(), None);
        }
        if let Some(err) = child.stderr.take() {
            collect(err, stderr.clone(), None);
        }
        let service = Service {
            child,
            port: 0,
            stdout,
            stderr,
        };
        Ok(service.wait(timeout))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits (at most `timeout`) for it to exit; returns whether it succeeded and everything it
    /// printed (stdout, then stderr).
    pub fn wait(mut self, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => break None,
            }
        };
        // Let the pipe readers drain.
        std::thread::sleep(Duration::from_millis(200));
        let text = format!(
            "{}\n{}",
            self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default(),
            self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
        );
        (status.is_some_and(|s| s.success()), text)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
