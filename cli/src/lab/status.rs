//! What a lab looks like now: its namespaces, their interfaces as the kernel
//! reports them, and the appliance. [`LabStatus`] serialised is the output
//! of `causeway lab status -o json`.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cmd::{self, IP};
use super::error::{LabError, Result};
use super::topology::Role;

/// A lab as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabStatus {
    /// The lab name.
    pub name: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// The manifests directory given to `up --manifests`, if any.
    pub manifests: Option<PathBuf>,
    /// The lab's namespaces, in the order `up` made them: island A, the
    /// appliance, the terminator's, island B.
    pub namespaces: Vec<NamespaceStatus>,
    /// The appliance process and its files.
    pub appliance: ApplianceStatus,
    /// The demo service of the terminator, and what a client needs to
    /// reach it.
    pub terminator: TerminatorStatus,
}

/// One of the lab's namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStatus {
    /// `a`, `gw`, `svc` or `b`; `None` for a recorded name that is none of
    /// them.
    pub role: Option<Role>,
    /// The namespace name, e.g. `demo-gw`.
    pub name: String,
    /// Whether the namespace exists (it may not, after a crash).
    pub exists: bool,
    /// Its interfaces, in the kernel's order.
    pub interfaces: Vec<InterfaceStatus>,
}

/// An interface, from `ip -j addr show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// The MAC address, e.g. `02:5e:…`.
    pub mac: Option<String>,
    /// The MTU.
    pub mtu: Option<u32>,
    /// Administratively up (the `UP` flag).
    pub up: bool,
    /// The kernel's operational state: `UP`, `DOWN`, `UNKNOWN` (loopback)…
    pub operstate: Option<String>,
    /// Its addresses, IPv4 first as the kernel lists them.
    pub addresses: Vec<AddressStatus>,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressStatus {
    /// `inet` or `inet6`.
    pub family: String,
    /// The address, e.g. `10.1.0.2`.
    pub address: String,
    /// The prefix length, e.g. 24.
    pub prefix_len: u8,
    /// `global`, `link` or `host`.
    pub scope: Option<String>,
}

/// The appliance process and its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplianceStatus {
    /// The pid in `appliance.pid`, if the appliance was started.
    pub pid: Option<u32>,
    /// Whether that pid is alive and is a causeway process.
    pub running: bool,
    /// The appliance's stdout and stderr.
    pub log: PathBuf,
    /// Its configuration.
    pub config: PathBuf,
    /// Its API socket (HTTP: metrics and stats).
    pub api_socket: PathBuf,
    /// Its gRPC control API socket (`causeway ctl --lab NAME`).
    pub control_socket: PathBuf,
    /// Its state directory (`desired.json`).
    pub state: PathBuf,
}

/// The lab's terminator: where its demo service listens, the files a
/// client needs for mTLS, and the service's upstreams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminatorStatus {
    /// The demo service, e.g. `10.100.0.10:443`.
    pub service: SocketAddr,
    /// The lab CA, which the service's certificate chains to.
    pub ca: PathBuf,
    /// A client certificate the service admits
    /// (`spiffe://causeway.lab/ns/lab/sa/client`).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// The name to send as SNI and check the certificate against.
    pub server_name: String,
    /// The HTTP backends in island B that the service balances across.
    pub backends: Vec<SocketAddr>,
    /// The namespace the terminator's sockets live in, e.g. `demo-svc`.
    pub svc_netns: String,
}

impl LabStatus {
    /// The namespace with role `role`.
    #[must_use]
    pub fn namespace(&self, role: Role) -> Option<&NamespaceStatus> {
        self.namespaces.iter().find(|ns| ns.role == Some(role))
    }

    /// Interface `ifname` in the namespace with role `role`.
    #[must_use]
    pub fn interface(&self, role: Role, ifname: &str) -> Option<&InterfaceStatus> {
        self.namespace(role)?
            .interfaces
            .iter()
            .find(|i| i.name == ifname)
    }
}

impl InterfaceStatus {
    /// The addresses as `address/prefix_len`.
    #[must_use]
    pub fn cidrs(&self) -> Vec<String> {
        self.addresses
            .iter()
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect()
    }
}

/// One interface of `ip -j addr show`; only the fields the lab reports.
#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    operstate: Option<String>,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
    #[serde(default)]
    scope: Option<String>,
}

/// The interfaces of namespace `netns`.
pub(crate) fn interfaces(netns: &str) -> Result<Vec<InterfaceStatus>> {
    let args = ["-n", netns, "-j", "addr", "show"];
    let json = cmd::run(IP, &args)?;
    parse_ip_addr(&json).map_err(|e| LabError::BadOutput {
        command: cmd::command_line(IP.program, &args),
        detail: e.to_string(),
    })
}

fn parse_ip_addr(json: &str) -> serde_json::Result<Vec<InterfaceStatus>> {
    // iproute2 prints nothing at all, not `[]`, for a namespace without
    // interfaces in some versions.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let links: Vec<IpLink> = serde_json::from_str(json)?;
    Ok(links
        .into_iter()
        .map(|l| InterfaceStatus {
            up: l.flags.iter().any(|f| f == "UP"),
            name: l.ifname,
            mac: l.address,
            mtu: l.mtu,
            operstate: l.operstate,
            addresses: l
                .addr_info
                .into_iter()
                .filter_map(|a| {
                    Some(AddressStatus {
                        family: a.family?,
                        address: a.local?,
                        prefix_len: a.prefixlen?,
                        scope: a.scope,
                    })
                })
                .collect(),
        })
        .collect())
}

/// The text of `causeway lab status`: an aligned listing.
impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lab {}", self.name)?;
        let mut rows = vec![[
            "NAMESPACE".to_owned(),
            "INTERFACE".to_owned(),
            "STATE".to_owned(),
            "MAC".to_owned(),
            "ADDRESSES".to_owned(),
        ]];
        for ns in &self.namespaces {
            if !ns.exists {
                rows.push(placeholder(&ns.name, "(missing)"));
                continue;
            }
            if ns.interfaces.is_empty() {
                rows.push(placeholder(&ns.name, "(none)"));
            }
            for (i, ifc) in ns.interfaces.iter().enumerate() {
                let state = match (ifc.up, ifc.operstate.as_deref()) {
                    (false, _) => "down".to_owned(),
                    (true, Some("UP" | "UNKNOWN") | None) => "up".to_owned(),
                    (true, Some(other)) => format!("up ({})", other.to_lowercase()),
                };
                rows.push([
                    if i == 0 {
                        ns.name.clone()
                    } else {
                        String::new()
                    },
                    ifc.name.clone(),
                    state,
                    ifc.mac.clone().unwrap_or_default(),
                    ifc.cidrs().join(" "),
                ]);
            }
        }
        let mut widths = [0; 5];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::from("  ");
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }

        let a = &self.appliance;
        let appliance = match (a.pid, a.running) {
            (None, _) => "not started".to_owned(),
            (Some(pid), true) => format!("running, pid {pid}"),
            (Some(pid), false) => format!("not running (was pid {pid})"),
        };
        let manifests = self
            .manifests
            .as_ref()
            .map_or_else(|| "-".to_owned(), |m| m.display().to_string());
        let t = &self.terminator;
        let backends = t
            .backends
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let fields = [
            ("appliance", appliance),
            ("log", a.log.display().to_string()),
            ("config", a.config.display().to_string()),
            ("api socket", a.api_socket.display().to_string()),
            ("grpc socket", a.control_socket.display().to_string()),
            ("manifests", manifests),
            ("state dir", self.state_dir.display().to_string()),
            ("service", format!("{} in {}", t.service, t.svc_netns)),
            ("server name", t.server_name.clone()),
            ("ca", t.ca.display().to_string()),
            ("client cert", t.client_cert.display().to_string()),
            ("client key", t.client_key.display().to_string()),
            ("backends", backends),
        ];
        for (key, value) in fields {
            writeln!(f, "{:<12} {value}", format!("{key}:"))?;
        }
        Ok(())
    }
}

/// A listing row for a namespace without interfaces to show.
fn placeholder(netns: &str, what: &str) -> [String; 5] {
    let mut row: [String; 5] = Default::default();
    row[0] = netns.to_owned();
    row[1] = what.to_owned();
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from `ip -n demo-a -j addr show` (iproute2 6.1).
    const SAMPLE: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,
       "qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,
       "link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00",
       "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host",
                     "label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},
                    {"family":"inet6","local":"::1","prefixlen":128,"scope":"host",
                     "valid_life_time":4294967295,"preferred_life_time":4294967295}]},
      {"ifindex":2,"link_index":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
       "mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default","txqlen":1000,
       "link_type":"ether","address":"6a:1b:2c:3d:4e:5f","broadcast":"ff:ff:ff:ff:ff:ff",
       "link_netnsid":0,
       "addr_info":[{"family":"inet","local":"10.1.0.2","prefixlen":24,"scope":"global","label":"eth0"},
                    {"family":"inet6","local":"fd00:a::2","prefixlen":64,"scope":"global"},
                    {}]},
      {"ifindex":3,"ifname":"hp1","flags":["BROADCAST","MULTICAST"],"mtu":1500,
       "operstate":"DOWN","address":"aa:bb:cc:dd:ee:ff","addr_info":[]}
    ]"#;

    #[test]
    fn parses_ip_json() {
        let ifs = parse_ip_addr(SAMPLE).unwrap();
        assert_eq!(ifs.len(), 3);
        assert_eq!(ifs[0].name, "lo");
        assert!(ifs[0].up);
        assert_eq!(ifs[0].cidrs(), ["127.0.0.1/8", "::1/128"]);
        assert_eq!(ifs[1].mac.as_deref(), Some("6a:1b:2c:3d:4e:5f"));
        assert_eq!(ifs[1].mtu, Some(1500));
        assert_eq!(ifs[1].operstate.as_deref(), Some("UP"));
        assert_eq!(ifs[1].cidrs(), ["10.1.0.2/24", "fd00:a::2/64"]);
        assert_eq!(ifs[1].addresses[0].scope.as_deref(), Some("global"));
        assert!(!ifs[2].up);
        assert!(parse_ip_addr("").unwrap().is_empty());
        assert!(parse_ip_addr("[]").unwrap().is_empty());
        assert!(parse_ip_addr("not json").is_err());
    }

    fn sample_status() -> LabStatus {
        LabStatus {
            name: "demo".to_owned(),
            state_dir: "/run/causeway/lab/demo".into(),
            manifests: None,
            namespaces: vec![
                NamespaceStatus {
                    role: Some(Role::A),
                    name: "demo-a".to_owned(),
                    exists: true,
                    interfaces: parse_ip_addr(SAMPLE).unwrap(),
                },
                NamespaceStatus {
                    role: Some(Role::Gw),
                    name: "demo-gw".to_owned(),
                    exists: false,
                    interfaces: Vec::new(),
                },
            ],
            appliance: ApplianceStatus {
                pid: Some(42),
                running: false,
                log: "/run/causeway/lab/demo/appliance.log".into(),
                config: "/run/causeway/lab/demo/config.yaml".into(),
                api_socket: "/run/causeway/lab/demo/causeway.sock".into(),
                control_socket: "/run/causeway/lab/demo/causeway-control.sock".into(),
                state: "/run/causeway/lab/demo/appliance-state".into(),
            },
            terminator: TerminatorStatus {
                service: "10.100.0.10:443".parse().unwrap(),
                ca: "/run/causeway/lab/demo/pki/ca.pem".into(),
                client_cert: "/run/causeway/lab/demo/pki/client.pem".into(),
                client_key: "/run/causeway/lab/demo/pki/client-key.pem".into(),
                server_name: "demo.causeway.lab".to_owned(),
                backends: vec![
                    "10.2.0.2:8081".parse().unwrap(),
                    "10.2.0.2:8082".parse().unwrap(),
                ],
                svc_netns: "demo-svc".to_owned(),
            },
        }
    }

    #[test]
    fn text_is_an_aligned_listing() {
        let text = sample_status().to_string();
        let expected = "\
lab demo
  NAMESPACE  INTERFACE  STATE  MAC                ADDRESSES
  demo-a     lo         up     00:00:00:00:00:00  127.0.0.1/8 ::1/128
             eth0       up     6a:1b:2c:3d:4e:5f  10.1.0.2/24 fd00:a::2/64
             hp1        down   aa:bb:cc:dd:ee:ff
  demo-gw    (missing)
appliance:   not running (was pid 42)
log:         /run/causeway/lab/demo/appliance.log
config:      /run/causeway/lab/demo/config.yaml
api socket:  /run/causeway/lab/demo/causeway.sock
grpc socket: /run/causeway/lab/demo/causeway-control.sock
manifests:   -
state dir:   /run/causeway/lab/demo
service:     10.100.0.10:443 in demo-svc
server name: demo.causeway.lab
ca:          /run/causeway/lab/demo/pki/ca.pem
client cert: /run/causeway/lab/demo/pki/client.pem
client key:  /run/causeway/lab/demo/pki/client-key.pem
backends:    10.2.0.2:8081 10.2.0.2:8082
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json_round_trips_and_names_roles_in_lowercase() {
        let status = sample_status();
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["namespaces"][1]["role"], "gw");
        assert_eq!(
            json["namespaces"][0]["interfaces"][1]["addresses"][0]["prefix_len"],
            24
        );
        assert_eq!(json["appliance"]["pid"], 42);
        assert_eq!(
            json["terminator"],
            serde_json::json!({
                "service": "10.100.0.10:443",
                "ca": "/run/causeway/lab/demo/pki/ca.pem",
                "client_cert": "/run/causeway/lab/demo/pki/client.pem",
                "client_key": "/run/causeway/lab/demo/pki/client-key.pem",
                "server_name": "demo.causeway.lab",
                "backends": ["10.2.0.2:8081", "10.2.0.2:8082"],
                "svc_netns": "demo-svc",
            })
        );
        let back: LabStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
        assert_eq!(
            back.interface(Role::A, "eth0")
                .and_then(|i| i.mac.as_deref()),
            Some("6a:1b:2c:3d:4e:5f")
        );
    }
}
