//! The machine's `kubectl` against one k3rs server, with the admin kubeconfig that server wrote
//! and a home (and discovery cache) of its own, so no test shares kubectl state with another
//! or reads the user's. Every call has kubectl's `--request-timeout=20s`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};

use super::k3rs_server::K3rsServer;

/// Lossy UTF-8 of a command's output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// kubectl for one server's admin kubeconfig.
pub struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
    /// Another API URL than the kubeconfig's (`--server`), e.g. a second server of the cluster.
    pub server_url: Option<String>,
}

impl Kubectl {
    /// kubectl with `server`'s `server/cred/admin.kubeconfig`.
    pub fn for_server(server: &K3rsServer) -> Self {
        Self {
            kubeconfig: server
                .data_dir()
                .join("server")
                .join("cred")
                .join("admin.kubeconfig"),
            home: tempfile::Builder::new()
                .prefix("k3rs-kubectl-")
                .tempdir()
                .expect("creating the kubectl home"),
            server_url: None,
        }
    }

    /// The kubeconfig kubectl is given.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The home kubectl runs in.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `kubectl ARGS`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .env("HOME", self.home.path())
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=20s");
        if let Some(url) = &self.server_url {
            command.args(["--server", url]);
        }
        command.args(args);
        command
    }

    /// Runs `kubectl ARGS` with `input` on its stdin (none: stdin is empty).
    pub fn run(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("writing kubectl's input");
        }
        child.wait_with_output().expect("kubectl's output")
    }

    /// The stdout of a run that must succeed.
    pub fn ok_input(&self, args: &[&str], input: Option<&str>) -> String {
        let output = self.run(args, input);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// The stdout of a run without input that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_input(args, None)
    }

    /// `kubectl apply -f -` of `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) -> String {
        self.ok_input(&["apply", "-f", "-"], Some(yaml))
    }

    /// The stderr of a run that must fail.
    pub fn err_input(&self, args: &[&str], input: Option<&str>) -> String {
        let output = self.run(args, input);
        assert!(
            !output.status.success(),
            "kubectl {args:?} succeeded: {}",
            text(&output.stdout)
        );
        text(&output.stderr)
    }

    /// The stderr of a run without input that must fail.
    pub fn err(&self, args: &[&str]) -> String {
        self.err_input(args, None)
    }

    /// Runs `args` until it succeeds with a stdout that satisfies `done`, at most `bound`.
    pub async fn until(
        &self,
        args: &[&str],
        bound: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + bound;
        loop {
            let output = self.run(args, None);
            let stdout = text(&output.stdout);
            if output.status.success() && done(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} never gave what was wanted: {stdout}{}",
                text(&output.stderr)
            );
            sleep(Duration::from_millis(250)).await;
        }
    }
}
