//! A long-running command — `kubectl get -w` — whose standard output is collected line by line
//! as it comes, for a test to wait on.
//!
//! Guarantees: [`OutputWatch::wait_for`] returns once the text has appeared, or panics after
//! the bound it is given, with everything printed so far; dropping the watch kills the command
//! and joins its reader, so no test leaves a process behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::time::{sleep, Instant};

/// A running command and what it printed.
pub struct OutputWatch {
    child: Child,
    printed: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl OutputWatch {
    /// Starts `command` with its standard output collected (standard input closed).
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the watching command");
        let stdout = child.stdout.take().expect("its standard output");
        let printed = Arc::new(Mutex::new(String::new()));
        let sink = printed.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        Self {
            child,
            printed,
            reader: Some(reader),
        }
    }

    /// Waits until the command has printed `wanted`, at most `within`.
    pub async fn wait_for(&self, wanted: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.printed.lock().expect("lock").contains(wanted) {
            assert!(
                Instant::now() < deadline,
                "the watch did not print {wanted:?} within {within:?}; it printed:\n{}",
                self.printed.lock().expect("lock")
            );
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OutputWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
