// Spawns the real `quickstart` example binary on an ephemeral loopback port
// and scrapes its output. Included by test crates with
// `#[path = "../support/app.rs"] mod app;`.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// An example binary; built by the test command before the tests run
/// (`cargo build --examples`), built here if missing.
#[allow(dead_code, unreachable_pub)]
pub fn example_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    // Built every time (a no-op when fresh): a binary left from an older
    // checkout would test old code.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--all-features", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    target.join("debug/examples").join(name)
}

/// The command running example `name` with `PORT=0`, JSON logs, no
/// inherited `OTEL_*` variable and `env`.
#[allow(dead_code)]
fn command(name: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(example_binary(name));
    command
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(k);
        }
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Runs quickstart with `env` until it exits by itself (at most 30 s, as a
/// start refused by `init` does); its status and output lines.
#[allow(dead_code, unreachable_pub)]
pub fn run_to_exit(env: &[(&str, &str)]) -> (std::process::ExitStatus, Vec<String>) {
    let mut child = command("quickstart", env).spawn().expect("spawn quickstart");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("quickstart did not exit within 30 s with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut lines = Vec::new();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        lines.extend(BufReader::new(stream).lines().map_while(Result::ok));
    }
    (status, lines)
}

/// Resident memory of a process, in bytes (Linux `/proc/<pid>/status`).
#[allow(dead_code, unreachable_pub)]
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A running quickstart process; killed on drop.
#[allow(dead_code, unreachable_pub)]
pub struct App {
    child: Option<Child>,
    pub address: String,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads reading stdout and stderr; they end at the process's exit.
    readers: Vec<std::thread::JoinHandle<()>>,
}

#[allow(dead_code, unreachable_pub)]
impl App {
    /// Starts quickstart with `PORT=0`, JSON logs and the given extra
    /// environment, and waits (at most 30 s) for its "listening" line.
    pub fn start(env: &[(&str, &str)]) -> App {
        Self::start_example("quickstart", env)
    }

    /// Starts the example `name` as [`start`](Self::start) does.
    pub fn start_example(name: &str, env: &[(&str, &str)]) -> App {
        let mut child = command(name, env).spawn().expect("spawn quickstart");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = loop {
            let found = lines.lock().unwrap().iter().find_map(|line| {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
                    return (json["fields"]["message"] == "listening")
                        .then(|| json["fields"]["address"].as_str().unwrap().to_owned());
                }
                // Text logs: `... listening address=127.0.0.1:1234 ...`
                let rest = line.split(": listening address=").nth(1)?;
                Some(rest.split(' ').next()?.to_owned())
            });
            if let Some(address) = found {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("quickstart exited with {status}: {:#?}", lines.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "quickstart did not listen: {:#?}", lines.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        };
        App { child: Some(child), address, lines, readers }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Every line the process wrote so far, stdout and stderr.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Sends SIGTERM, waits (at most 15 s) for the exit, and returns its
    /// status with every line the process wrote, to the last.
    pub fn terminate_with_output(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let readers = std::mem::take(&mut self.readers);
        let lines = Arc::clone(&self.lines);
        let status = self.terminate();
        for reader in readers {
            let _ = reader.join();
        }
        let lines = lines.lock().unwrap().clone();
        (status, lines)
    }

    /// Sends SIGTERM and waits (at most 15 s) for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("quickstart did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
