//! The UMEM frame layout on a real AF_XDP socket: a packet the kernel
//! receives has the headroom in front of it, and a header prepended into
//! that headroom ([`FrameMemory::prepend`]) goes out on the wire in front of
//! the packet, which was neither moved nor copied.
//!
//! Drives the dataplane's own pieces (the XDP program, `XskMemory`,
//! `XskPort`) on one veth pair without the `causeway` binary: the peer end
//! sits in a namespace where python sends a frame and waits for what comes
//! back.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use causeway_dataplane::{
    port::{FrameMemory, HEADROOM, Port},
    xdp::{
        XdpMode, XdpProgram,
        netlink::Netlink,
        socket::{FRAME_SIZE, XDP_PACKET_HEADROOM, XskMemory, XskPort},
    },
};
use causeway_tests::{ok, require, sh};

/// Sends an IPv4/UDP frame from `argv[1]` to the MAC `argv[3]` every 200 ms
/// and prints it (hex); prints the first frame that comes back with the
/// local experimental ethertype 0x88b5 and exits 0, or exits 1 after 10 s.
const PEER: &str = r#"
import socket, struct, sys, time
ifname, src, dst = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0)); s.settimeout(0.2)
payload = b"causeway headroom" * 3
udp = struct.pack("!HHHH", 40000, 40001, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 bytes([10, 99, 0, 1]), bytes([10, 99, 0, 2]))
c = sum(struct.unpack("!10H", ip)); c = (c & 0xffff) + (c >> 16); c = (c & 0xffff) + (c >> 16)
ip = ip[:10] + struct.pack("!H", ~c & 0xffff) + ip[12:]
frame = dst + src + b"\x08\x00" + ip + udp
print(frame.hex(), flush=True)
deadline = time.time() + 10
while time.time() < deadline:
    s.send(frame)
    end = time.time() + 0.2
    while time.time() < end:
        try:
            got = s.recv(4096)
        except socket.timeout:
            break
        if got[12:14] == b"\x88\xb5":
            print(got.hex(), flush=True)
            sys.exit(0)
sys.exit(1)
"#;

/// A veth pair (`{name}a` here, `{name}b` in namespace `name`), removed
/// when dropped, also when the test fails.
struct Veth {
    name: String,
}

impl Veth {
    fn new() -> Self {
        let name = format!("thr{}", std::process::id() % 100_000);
        let veth = Self { name };
        let (ns, a, b) = (veth.ns(), veth.a(), veth.b());
        ok(&format!("ip netns add {ns}"));
        ok(&format!(
            "ip link add {a} type veth peer name {b} netns {ns}"
        ));
        ok(&format!("ip link set {a} up"));
        ok(&format!("ip -n {ns} link set {b} up"));
        veth
    }

    fn ns(&self) -> String {
        self.name.clone()
    }

    fn a(&self) -> String {
        format!("{}a", self.name)
    }

    fn b(&self) -> String {
        format!("{}b", self.name)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        sh(&format!("ip link del {}", self.a()));
        sh(&format!("ip netns del {}", self.ns()));
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn mac(netns: Option<&str>, dev: &str) -> Vec<u8> {
    let cmd = match netns {
        Some(ns) => format!("ip netns exec {ns} cat /sys/class/net/{dev}/address"),
        None => format!("cat /sys/class/net/{dev}/address"),
    };
    hex(&ok(&cmd).trim().replace(':', ""))
}

#[test]
fn received_frames_have_the_headroom_and_a_prepended_header_goes_out_in_front() {
    require("python3", "python3");
    let veth = Veth::new();
    let (a, b) = (veth.a(), veth.b());
    let index: u32 = ok(&format!("cat /sys/class/net/{a}/ifindex"))
        .trim()
        .parse()
        .expect("ifindex");
    let (mac_a, mac_b) = (mac(None, &a), mac(Some(&veth.ns()), &b));

    // The dataplane's pieces, as a worker sets them up for one port.
    let mut program = XdpProgram::load().expect("load the XDP program (root?)");
    let mut nl = Netlink::open(false).expect("netlink");
    let (slot, _) = program
        .attach(&mut nl, &a, index, 1, XdpMode::Generic)
        .expect("attach XDP");
    let (mut mem, mut free) = XskMemory::new(64).expect("UMEM");
    let mut port = XskPort::bind(&mem, &a, 0).expect("bind AF_XDP");
    program
        .register_socket(slot, port.fd())
        .expect("register the socket");
    port.refill(&mut free);

    let script = std::env::temp_dir().join(format!("causeway-{}-xsk-peer.py", std::process::id()));
    std::fs::write(&script, PEER).expect("write script");
    let mut peer = Command::new("ip")
        .args(["netns", "exec", &veth.ns(), "python3"])
        .arg(&script)
        .args([&b, &hex_of(&mac_b), &hex_of(&mac_a)])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the peer");
    let mut lines = BufReader::new(peer.stdout.take().expect("stdout")).lines();
    let sent = hex(&lines.next().expect("the peer's frame").expect("read"));
    // Python has read the script by the time it prints.
    let _ = std::fs::remove_file(&script);

    // Receive it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rx = Vec::new();
    while rx.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no frame reached the AF_XDP socket"
        );
        port.recv(&mut rx, 1);
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut desc = rx[0];
    let offset = desc.addr() % FRAME_SIZE as usize;
    assert_eq!(
        offset,
        HEADROOM + XDP_PACKET_HEADROOM,
        "the kernel puts received data behind our headroom and the XDP program's"
    );
    assert!(offset >= HEADROOM);
    let (packet_at, received) = mem.with_frame(&mut desc, |buf, len| {
        ((buf.as_ptr(), buf[..len].to_vec()), len)
    });
    assert_eq!(received, sent);

    // Prepend into all of the room in front: refused one byte beyond it.
    assert!(!mem.prepend(&mut desc, offset + 1));
    assert!(mem.prepend(&mut desc, offset));
    assert_eq!(mem.frame_len(&desc), offset + sent.len());
    let mut outer = Vec::with_capacity(offset);
    outer.extend_from_slice(&mac_b);
    outer.extend_from_slice(&mac_a);
    outer.extend_from_slice(&[0x88, 0xb5]);
    outer.resize(offset, 0xee);
    let moved = mem.with_frame(&mut desc, |buf, len| {
        buf[..offset].copy_from_slice(&outer);
        (buf[offset..].as_ptr() != packet_at, len)
    });
    assert!(!moved, "the packet is where it was received: not copied");

    // Transmit it from the frame's first byte; the peer sees outer + packet.
    assert_eq!(port.send(&[desc]), 1);
    port.flush();
    let mut done = Vec::new();
    while done.is_empty() {
        assert!(Instant::now() < deadline, "the frame never completed");
        port.reclaim(&mut done);
        port.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    let back = hex(&lines
        .next()
        .expect("the peer saw no 0x88b5 frame")
        .expect("read"));
    assert!(peer.wait().expect("peer").success());
    let mut expected = outer;
    expected.extend_from_slice(&sent);
    assert_eq!(back, expected);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
