//! A real headless browser for tests: Debian's `chromium`, driven through `chromedriver`
//! (Debian's `chromium-driver`) with the W3C WebDriver protocol. Both are installed with
//! `apt-get` on first use when missing (the test fails with the reason if that is impossible).
//! The WebDriver client is a short Python script (standard library only) run with the pinned
//! venv's interpreter.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::python::run_script_with;

/// `chromium` and `chromedriver`, installed.
#[derive(Debug, Clone)]
pub struct Browser {
    /// The browser binary.
    pub chromium: PathBuf,
    /// The WebDriver server.
    pub chromedriver: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn apt_install() -> Result<(), String> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let out = install().map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    // Stale package lists: refresh once and retry.
    let _ = Command::new("apt-get")
        .args(["update", "-q"])
        .stdin(Stdio::null())
        .output();
    let out = install().map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get install chromium chromium-driver failed (run as root, or install them):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn find() -> Result<Browser, String> {
    if which("chromium").is_none() || which("chromedriver").is_none() {
        apt_install()?;
    }
    Ok(Browser {
        chromium: which("chromium").ok_or("chromium is not on PATH after installing it")?,
        chromedriver: which("chromedriver")
            .ok_or("chromedriver is not on PATH after installing chromium-driver")?,
    })
}

/// The browser, installing it on first use.
///
/// # Errors
/// Why it is not available.
pub fn browser() -> Result<&'static Browser, String> {
    static BROWSER: OnceLock<Result<Browser, String>> = OnceLock::new();
    BROWSER.get_or_init(find).as_ref().map_err(Clone::clone)
}

/// A running `chromedriver`, stopped on drop.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The WebDriver client: opens `page`, optionally switches into the first `iframe`, polls the
/// document's text until it holds every expected string (or 60 s pass), evaluates `js` there,
/// saves a screenshot, and prints the result as JSON.
const WEBDRIVER: &str = r#"
import base64, json, sys, time, urllib.request
port, chromium, page, shot, plan = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
base = "http://127.0.0.1:%s" % port
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["value"]
caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
    "binary": chromium,
    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-quic", "--no-first-run", "--window-size=1280,900"]}}}}
session = call("POST", "/session", caps)["sessionId"]
s = "/session/" + session
try:
    call("POST", s + "/url", {"url": page})
    result = {}
    if plan.get("frame"):
        deadline = time.time() + 30
        while True:
            try:
                frame = call("POST", s + "/element", {"using": "css selector", "value": "iframe"})
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        ref = list(frame.values())[0]
        result["iframe_src"] = call("GET", s + "/element/%s/property/src" % ref)
        call("POST", s + "/frame", {"id": frame})
    text = ""
    deadline = time.time() + 60
    while time.time() < deadline:
        text = call("POST", s + "/execute/sync",
                    {"script": "return document.body ? document.body.innerText : ''", "args": []})
        if all(e in text for e in plan.get("expect", [])):
            break
        time.sleep(0.5)
    result["text"] = text
    if plan.get("js"):
        result["js"] = call("POST", s + "/execute/sync", {"script": plan["js"], "args": []})
    call("POST", s + "/frame", {"id": None})
    with open(shot, "wb") as f:
        f.write(base64.b64decode(call("GET", s + "/screenshot")))
    print(json.dumps(result))
finally:
    call("DELETE", s)
"#;

impl Browser {
    /// Starts `chromedriver` on a free port.
    ///
    /// # Errors
    /// Why it did not start.
    pub fn driver(&self) -> Result<Driver, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let child = Command::new(&self.chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start chromedriver: {e}"))?;
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(driver)
    }

    /// Opens `page` (a `file://` or `http://` URL) in headless Chromium and returns what the
    /// WebDriver script saw (`text`, `iframe_src`, `js`); the screenshot goes to `screenshot`.
    /// `frame`: read inside the page's first iframe. `expect`: strings to wait for (60 s).
    ///
    /// # Errors
    /// The script's failure.
    pub fn inspect(
        &self,
        page: &str,
        screenshot: &Path,
        frame: bool,
        expect: &[&str],
        js: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        let driver = self.driver()?;
        let plan = serde_json::json!({"frame": frame, "expect": expect, "js": js});
        let out = run_script_with(
            WEBDRIVER,
            &[
                &driver.port.to_string(),
                &self.chromium.to_string_lossy(),
                page,
                &screenshot.to_string_lossy(),
                &plan.to_string(),
            ],
            &[],
        )?;
        drop(driver);
        out.lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("no result from the WebDriver script:\n{out}"))
    }
}
