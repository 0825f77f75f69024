//! The pages in a real browser: `witness serve` on a fresh data dir (so it
//! creates the demo tenant and prints its logins), then a script under
//! `tests/e2e/` drives a customer, an agent and an admin in headless
//! Chromium through Playwright: `chat.mjs` the chat, `call.mjs` a video call
//! through the SFU. Needs WITNESS_TEST_CHROMIUM and tests/e2e/node_modules:
//! `scripts/test.sh` installs both.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `witness serve` on a fresh data dir, with the demo logins it printed.
struct Served {
    _server: Server,
    _dir: tempfile::TempDir,
    port: u16,
    log: std::path::PathBuf,
    passwords: std::collections::HashMap<String, String>,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("WITNESS_DATABASE_URL", format!("sqlite://{}/w.db", dir.path().display()))
        .env("WITNESS_LOG", "info,witness_api=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The demo logins, printed once on the fresh store.
    let mut passwords = std::collections::HashMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let server = Server(child);
    for line in lines.by_ref() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [role, "login", _, "password", password] = words[..] {
            passwords.insert(role.to_owned(), password.to_owned());
        }
        if line.starts_with("Customer page") {
            break;
        }
    }
    assert!(["agent", "compliance", "admin"].iter().all(|r| passwords.contains_key(*r)), "{passwords:?}");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Served { _server: server, _dir: dir, port, log, passwords }
}

/// Runs `tests/e2e/SCRIPT` with node against `served`; returns its stdout
/// once it printed `"ok":true`.
fn run_script(served: &Served, script: &str) -> String {
    let chromium = std::env::var("WITNESS_TEST_CHROMIUM")
        .expect("WITNESS_TEST_CHROMIUM is not set: run the tests with scripts/test.sh, which installs Chromium");
    let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(e2e.join("node_modules/playwright-core").exists(), "run scripts/test.sh: it installs playwright-core");
    let output = Command::new("node")
        .arg(script)
        .current_dir(&e2e)
        .env("BASE_URL", format!("http://localhost:{}", served.port))
        .env("AGENT_PASSWORD", &served.passwords["agent"])
        .env("COMPLIANCE_PASSWORD", &served.passwords["compliance"])
        .env("ADMIN_PASSWORD", &served.passwords["admin"])
        .env("CHROMIUM", chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}\nserver log:\n{}", read(&served.log));
    assert!(stdout.contains("\"ok\":true"), "{stdout}");
    stdout.into_owned()
}

#[test]
fn a_customer_and_an_agent_talk_through_the_pages_and_the_audit_trail_shows_it() {
    let served = serve();
    run_script(&served, "chat.mjs");
    // What the customer wrote never reaches the server's log.
    std::thread::sleep(Duration::from_millis(200));
    let log = read(&served.log);
    drop(served);
    for personal in ["annual fee", "Gold card", "in yen", "that helps"] {
        assert!(!log.contains(personal), "the server log holds the customer's words {personal:?}:\n{log}");
    }
}

#[test]
fn a_video_call_with_screen_sharing_goes_through_the_sfu_and_into_the_record() {
    let served = serve();
    let stdout = run_script(&served, "call.mjs");
    eprintln!("{stdout}");
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
