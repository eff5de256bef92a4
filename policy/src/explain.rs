//! `causeway policy explain`: which verdict a packet gets and why, from
//! manifests on disk, by the reference evaluator (the same semantics the
//! appliance enforces; see [`super::eval`]).

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Result, bail};

use super::{
    eval::{self, Packet},
    model::Protocol,
};

/// Arguments of `causeway policy explain`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// Manifest files or directories; repeat for more.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Source address.
    #[arg(long)]
    pub src: IpAddr,
    /// Destination address.
    #[arg(long)]
    pub dst: IpAddr,
    /// tcp, udp, icmp, icmpv6, sctp or a number.
    #[arg(long, default_value = "tcp")]
    pub proto: String,
    /// Source port.
    #[arg(long)]
    pub sport: Option<u16>,
    /// Destination port.
    #[arg(long)]
    pub dport: Option<u16>,
    /// ICMP type (default: echo request).
    #[arg(long)]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[arg(long)]
    pub icmp_code: Option<u8>,
    /// Output: text or json.
    #[arg(short, long, default_value = "text")]
    pub output: String,
}

/// Runs `causeway policy explain`.
///
/// # Errors
/// The manifests do not load (every error is printed) or the arguments are
/// inconsistent.
pub fn run(args: &ExplainArgs) -> Result<()> {
    let protocol = Protocol::parse(&args.proto).map_err(anyhow::Error::msg)?;
    if args.src.is_ipv4() != args.dst.is_ipv4() {
        bail!(
            "--src {} and --dst {} are of different IP versions",
            args.src,
            args.dst
        );
    }
    let set = match super::load_set(&args.files) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            bail!(
                "{} error(s) in the manifests; nothing explained",
                errors.len()
            );
        }
    };
    let icmp = matches!(protocol, Protocol::ICMP | Protocol::ICMPV6);
    let echo = if protocol == Protocol::ICMP { 8 } else { 128 };
    let pkt = Packet {
        src: args.src,
        dst: args.dst,
        protocol,
        src_port: if icmp {
            None
        } else {
            Some(args.sport.unwrap_or(40000))
        },
        dst_port: if icmp { None } else { args.dport },
        icmp_type: icmp.then(|| args.icmp_type.unwrap_or(echo)),
        icmp_code: icmp.then(|| args.icmp_code.unwrap_or(0)),
    };
    let e = eval::evaluate(&set, &pkt);
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&e)?),
        "text" => print!("{e}"),
        o => bail!("--output {o}: use text or json"),
    }
    Ok(())
}
