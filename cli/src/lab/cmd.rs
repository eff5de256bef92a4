//! The lab's one door to the system: every `ip`, `ethtool`, `sysctl`, `ping`,
//! `openssl` and `kill` it runs goes through [`run`], which logs the command and turns
//! a failure into an error that names the command and quotes its stderr.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::error::{LabError, Result};

/// A program the lab needs, with the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tool {
    pub(crate) program: &'static str,
    pub(crate) package: &'static str,
}

pub(crate) const IP: Tool = Tool {
    program: "ip",
    package: "iproute2",
};
pub(crate) const ETHTOOL: Tool = Tool {
    program: "ethtool",
    package: "ethtool",
};
pub(crate) const SYSCTL: Tool = Tool {
    program: "sysctl",
    package: "procps",
};
pub(crate) const PING: Tool = Tool {
    program: "ping",
    package: "iputils-ping",
};
pub(crate) const OPENSSL: Tool = Tool {
    program: "openssl",
    package: "openssl",
};
pub(crate) const KILL: Tool = Tool {
    program: "kill",
    package: "procps",
};

impl Tool {
    /// Whether the program is on `PATH`. Checked up front for the programs
    /// that run inside `ip netns exec`, whose "exec failed" says less.
    pub(crate) fn require(self) -> Result<()> {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| is_executable(&dir.join(self.program)))
        });
        if found { Ok(()) } else { Err(self.missing()) }
    }

    fn missing(self) -> LabError {
        LabError::ToolMissing {
            tool: self.program,
            package: self.package,
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `tool args…` to completion and returns its stdout.
///
/// # Errors
///
/// [`LabError::ToolMissing`] if the program is not installed,
/// [`LabError::CommandFailed`] if it exits unsuccessfully.
pub(crate) fn run<S: AsRef<OsStr>>(tool: Tool, args: &[S]) -> Result<String> {
    let output = output(tool, args)?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(LabError::CommandFailed {
            command: command_line(tool.program, args),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `tool args…` to completion and returns whether it succeeded, for the
/// commands whose failure is an answer (a `ping` that gets no reply).
pub(crate) fn succeeds<S: AsRef<OsStr>>(tool: Tool, args: &[S]) -> Result<bool> {
    Ok(output(tool, args)?.status.success())
}

/// Runs `ip netns exec NETNS tool args…` and returns its stdout.
#[cfg(test)]
pub(crate) fn run_in(netns: &str, tool: Tool, args: &[&str]) -> Result<String> {
    run(IP, &netns_exec(netns, tool, args))
}

/// [`succeeds`] inside `netns`.
pub(crate) fn succeeds_in(netns: &str, tool: Tool, args: &[&str]) -> Result<bool> {
    succeeds(IP, &netns_exec(netns, tool, args))
}

fn netns_exec<'a>(netns: &'a str, tool: Tool, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["netns", "exec", netns, tool.program];
    all.extend_from_slice(args);
    all
}

fn output<S: AsRef<OsStr>>(tool: Tool, args: &[S]) -> Result<Output> {
    tracing::debug!(command = %command_line(tool.program, args), "lab: running");
    Command::new(tool.program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => tool.missing(),
            _ => LabError::io("run", tool.program, e),
        })
}

/// The command as it could be pasted into a shell.
pub(crate) fn command_line<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(&quote(&arg.as_ref().to_string_lossy()));
    }
    line
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_paste_into_a_shell() {
        assert_eq!(
            command_line(
                "ip",
                &["-n", "x-gw", "addr", "add", "fd00:a::1/64", "dev", "a0"]
            ),
            "ip -n x-gw addr add fd00:a::1/64 dev a0"
        );
        assert_eq!(
            command_line("echo", &["a b", "it's", ""]),
            r"echo 'a b' 'it'\''s' ''"
        );
    }

    #[test]
    fn a_missing_program_says_which_package_to_install() {
        let tool = Tool {
            program: "causeway-no-such-program",
            package: "causeway-no-such-package",
        };
        assert!(matches!(tool.require(), Err(LabError::ToolMissing { .. })));
        let err = run(tool, &["x"]).unwrap_err().to_string();
        assert!(
            err.contains("apt-get install causeway-no-such-package"),
            "{err}"
        );
    }

    #[test]
    fn a_failing_command_is_named_with_its_stderr() {
        let sh = Tool {
            program: "sh",
            package: "dash",
        };
        let err = run(sh, &["-c", "echo oops >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sh -c 'echo oops >&2; exit 3'`"), "{err}");
        assert!(err.contains("oops"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }
}
