//! The Kubernetes API server double (`tests/k8s-apiserver/apiserver.py`),
//! started for a test and driven with the real `kubectl`.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Output, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use crate::{ok, require, sh};

/// A running double and its temporary directory, both gone on drop.
pub struct Double {
    child: Child,
    /// Its temporary directory (the kubeconfig is `kubeconfig` in it).
    pub dir: PathBuf,
    /// Its URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its first line names the URL; held open so it never writes to a
    /// closed pipe.
    stdout: BufReader<ChildStdout>,
}

impl Double {
    pub fn start(tag: &str) -> Self {
        require("python3", "python3");
        require("kubectl", "kubectl");
        require("curl", "curl");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "causeway-k8s-double-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s-apiserver/apiserver.py");
        let log = File::create(dir.join("apiserver.log")).expect("log file");
        let spawned = Command::new("python3")
            .arg(&script)
            .args(["--listen", "127.0.0.1:0", "--bookmark-interval", "1"])
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .arg("--verbose")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("cannot start {}: {e}", script.display());
            }
        };
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut double = Self {
            child,
            dir,
            url: String::new(),
            stdout,
        };
        let mut line = String::new();
        let _ = double.stdout.read_line(&mut line);
        double.url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "the double's first line is {line:?}, not `listening on URL`; its log:\n{}",
                    double.log()
                )
            })
            .to_owned();
        double
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default()
    }

    pub fn kubectl_cmd(&self, args: &str) -> String {
        format!(
            "kubectl --kubeconfig {} --cache-dir {} {args}",
            self.dir.join("kubeconfig").display(),
            self.dir.join("kube-cache").display()
        )
    }

    /// `kubectl ARGS`, which must succeed; returns stdout.
    pub fn kubectl(&self, args: &str) -> String {
        ok(&self.kubectl_cmd(args))
    }

    /// `kubectl ARGS`, whatever its status.
    pub fn try_kubectl(&self, args: &str) -> Output {
        sh(&self.kubectl_cmd(args))
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &str) -> Value {
        serde_json::from_str(&self.kubectl(&format!("get {args} -o json"))).expect("kubectl JSON")
    }

    /// Writes `text` to a file in the temporary directory.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("manifest");
        path
    }

    /// `curl -s` with extra arguments against a path of the double.
    pub fn curl(&self, args: &str, path: &str) -> String {
        ok(&format!("curl -s {args} '{}{path}'", self.url))
    }

    pub fn state(&self) -> Value {
        serde_json::from_str(&self.curl("", "/_double/state")).expect("state JSON")
    }

    pub fn resource_version(&self) -> u64 {
        self.state()["resourceVersion"]
            .as_u64()
            .expect("resourceVersion")
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- the double's log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
