//! systemd's service notification protocol (`sd_notify(3)`), without
//! libsystemd: each message is one datagram of `KEY=VALUE` lines sent to
//! the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name
//! written `@name`). Under `Type=notify` the unit is started only once
//! `READY=1` arrives, so the appliance sends it only when its policy is
//! loaded and its ports forward (fail closed). With `WatchdogSec=`, systemd
//! sets `$WATCHDOG_USEC` and restarts the service when `WATCHDOG=1` does not
//! come within it; the main loop sends it every half of that, so a wedged
//! loop is restarted. Without `$NOTIFY_SOCKET` (not under systemd, or the
//! lab) every call does nothing.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    time::{Duration, Instant},
};

/// Where notifications go, and how often the watchdog wants a sign.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    /// From this process's environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
    /// `WATCHDOG_PID`).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// From the values of those variables; `pid` is this process's.
    pub fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Self {
        let target = socket.and_then(|s| match address(s) {
            Ok(addr) => match UnixDatagram::unbound() {
                Ok(sock) => Some((sock, addr)),
                Err(e) => {
                    tracing::warn!(error = %e, "NOTIFY_SOCKET: cannot make a datagram socket");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(socket = s, error = %e, "NOTIFY_SOCKET is not a usable address");
                None
            }
        });
        // WATCHDOG_PID, when set, names the process the watchdog is for.
        let for_us = watchdog_pid.is_none_or(|p| p.parse() == Ok(pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Self {
            target,
            watchdog,
            last_ping: None,
        }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1` with a status line: the appliance enforces and forwards.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1`: the stop has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// A status line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// Called at every turn of the main loop: sends `WATCHDOG=1` when half
    /// the watchdog interval has passed since the last one.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.watchdog.map(|w| w / 2) else {
            return;
        };
        if self
            .last_ping
            .is_none_or(|t| now.duration_since(t) >= every)
        {
            self.send("WATCHDOG=1");
            self.last_ping = Some(now);
        }
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(message.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "sd_notify: cannot reach the service manager");
        }
    }
}

/// A `NOTIFY_SOCKET` value as an address: a path, or `@name` for an
/// abstract socket (Linux).
fn address(s: &str) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt as _;
    match s.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None if s.starts_with('/') => SocketAddr::from_pathname(s),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        )),
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_stopping_and_the_watchdog_reach_the_socket() {
        let path = std::env::temp_dir().join(format!("cw-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).expect("bind");
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut n = Notifier::new(path.to_str(), Some("2000000"), None, 42);
        assert!(n.is_active());
        assert_eq!(n.watchdog(), Some(Duration::from_secs(2)));
        n.ready("forwarding\nnow");
        assert_eq!(recv(&listener), "READY=1\nSTATUS=forwarding now");
        let t0 = Instant::now();
        n.tick(t0);
        assert_eq!(recv(&listener), "WATCHDOG=1");
        n.tick(t0 + Duration::from_millis(500));
        n.tick(t0 + Duration::from_millis(1000));
        n.stopping();
        // Nothing between: the second tick came before half the interval.
        assert_eq!(recv(&listener), "WATCHDOG=1");
        assert_eq!(recv(&listener), "STOPPING=1\nSTATUS=stopping");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn abstract_names_work_and_a_watchdog_for_another_pid_is_ignored() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("cw-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let n = Notifier::new(Some(&format!("@{name}")), Some("1000000"), Some("7"), 42);
        assert_eq!(n.watchdog(), None, "WATCHDOG_PID names another process");
        n.status("hello");
        assert_eq!(recv(&listener), "STATUS=hello");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let mut n = Notifier::new(None, None, None, 1);
        assert!(!n.is_active());
        n.ready("x");
        n.tick(Instant::now());
        assert!(
            Notifier::new(Some("relative"), None, None, 1)
                .target
                .is_none()
        );
    }
}
