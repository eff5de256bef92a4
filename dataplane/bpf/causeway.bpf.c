// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
//
// causeway's XDP program: the kernel half of the packet walk.
//
//   malformed L2/L3 header            -> XDP_DROP   (counted: DROP_MALFORMED)
//   source in deny_src (doNotTrack)   -> XDP_DROP   (counted per rule: deny_counts)
//   ARP, IPv6 neighbour discovery     -> XDP_PASS   (the kernel resolves neighbours)
//   L2 multicast / broadcast          -> XDP_PASS   (not routed by the dataplane)
//   to one of the appliance's own addresses (own_addrs):
//     TCP/UDP to a failsafe port (failsafe_in)
//                                     -> XDP_PASS   (counted: PASS_FAILSAFE; works with no
//                                                    worker and no policy, as Calico's
//                                                    failsafe rules)
//     TCP (not a bare SYN) or UDP that a kernel socket other than a listener
//     takes (an established or half-open TCP connection, a TIME_WAIT, a
//     connected UDP socket)           -> XDP_PASS   (counted: PASS_SOCKET; the kernel's
//                                                    socket table is the conntrack of the
//                                                    appliance's own connections)
//     ICMP echo reply or error (v4: 0, 3, 11, 12; v6: 129, 1-4)
//                                     -> XDP_PASS   (counted: PASS_ICMP_REPLY; what answers
//                                                    the appliance's own pings and
//                                                    connections: the kernel matches it
//                                                    to its sockets or drops it)
//     anything else                   -> the AF_XDP worker, which judges it by the host
//                                        endpoint's ingress policy (counted: HOST_JUDGE)
//   anything else                     -> XSKMAP[port slot + rx_queue] -> the AF_XDP worker
//                                        (no socket yet -> XDP_DROP: fail closed)
//
// Counters live in a per-CPU array indexed by `enum counter`; userspace sums
// them (dataplane/src/xdp/program.rs mirrors the indices).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// XSKMAP slots: each port (interface) owns a contiguous range of slots,
// one per RX queue, starting at port_slots[ifindex].
#define MAX_SLOTS 256

enum counter {
	C_REDIRECT = 0,
	C_PASS_ARP = 1,
	C_PASS_NDP = 2,
	C_PASS_FAILSAFE = 3,
	C_PASS_MULTICAST = 4,
	C_PASS_OTHER = 5,
	C_DROP_MALFORMED = 6,
	C_DROP_NO_SOCKET = 7,
	C_DROP_PREFILTER = 8,
	C_PASS_SOCKET = 9,
	C_HOST_JUDGE = 10,
	C_PASS_ICMP_REPLY = 11,
	C_MAX = 12,
};

struct own_addr {
	__u8 addr[16]; // IPv4 as ::ffff:a.b.c.d, IPv6 as is
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);   // ifindex
	__type(value, __u32); // first XSKMAP slot of the port
} port_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct own_addr);
	__type(value, __u8);
} own_addrs SEC(".maps");

// Failsafe inbound ports: TCP or UDP to one of them, addressed to the
// appliance, goes to the kernel whatever the policy says.
struct failsafe_key {
	__u8 proto; // IPPROTO_TCP or IPPROTO_UDP
	__u8 pad;
	__be16 port; // destination port, network order
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct failsafe_key);
	__type(value, __u8);
} failsafe_in SEC(".maps");

// The prefilter: sources denied by doNotTrack rules, dropped here before
// anything else looks at them. Value: the rule's slot in deny_counts.
#define PREFILTER_MAX 16384
struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16]; // IPv4 as ::ffff:a.b.c.d (prefix length + 96)
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PREFILTER_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u32);
} deny_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PREFILTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} deny_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline int count(__u32 idx, int action)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
	return action;
}

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

// What the program learns of a packet to one of the appliance's addresses.
struct to_host {
	__u8 proto;  // IPPROTO_TCP, IPPROTO_UDP, or 0: neither (or no ports)
	__u8 syn;    // TCP: SYN without ACK (a new connection: always judged)
	__u8 icmp_reply; // an ICMP echo reply or error
	__u8 v4;     // IPv4 (the addresses are v4-mapped in own_addr and lpm_key)
	__be16 sport;
	__be16 dport;
};

// Whether a kernel socket other than a listener takes the packet: the
// later packets of a connection the worker admitted, and the replies to the
// appliance's own connections. The packet's source (`src`) is the remote
// end, its destination (`dst`) the appliance. Only packets to the
// appliance get here, so the socket tuple is built here, not per packet.
static __always_inline int socket_takes(struct xdp_md *ctx, struct to_host *h,
					struct lpm_key *src, struct own_addr *dst)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	__u32 size;
	int takes;

	if (h->v4) {
		__builtin_memcpy(&tuple.ipv4.saddr, &src->addr[12], 4);
		__builtin_memcpy(&tuple.ipv4.daddr, &dst->addr[12], 4);
		tuple.ipv4.sport = h->sport;
		tuple.ipv4.dport = h->dport;
		size = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, src->addr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, dst->addr, 16);
		tuple.ipv6.sport = h->sport;
		tuple.ipv6.dport = h->dport;
		size = sizeof(tuple.ipv6);
	}
	if (h->proto == IPPROTO_TCP) {
		// A bare SYN could reopen a TIME_WAIT connection or reach a
		// listener: new connections are the policy's to judge.
		if (h->syn)
			return 0;
		sk = bpf_skc_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		takes = sk->state != BPF_TCP_LISTEN;
	} else if (h->proto == IPPROTO_UDP) {
		sk = bpf_sk_lookup_udp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		// Only a connected socket matches on the remote end too; an
		// unconnected one (a server) takes anything: judged.
		takes = sk->state == BPF_TCP_ESTABLISHED;
	} else {
		return 0;
	}
	bpf_sk_release(sk);
	return takes;
}

// Reads the TCP or UDP ports at `l4` into `h` (h->proto = 0 if neither).
static __always_inline int l4_ports(void *l4, void *data_end, __u8 proto, struct to_host *h)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
			return -1;
		h->proto = IPPROTO_TCP;
		h->sport = th->source;
		h->dport = th->dest;
		h->syn = th->syn && !th->ack;
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return -1;
		h->proto = IPPROTO_UDP;
		h->sport = uh->source;
		h->dport = uh->dest;
	}
	return 0;
}

SEC("xdp")
int causeway_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct own_addr key = {};
	struct lpm_key src = { .prefixlen = 128 };
	struct to_host host = {};
	__u16 proto;
	void *l3;

	if ((void *)(eth + 1) > data_end)
		return count(C_DROP_MALFORMED, XDP_DROP);
	if (eth->h_dest[0] & 1)
		return count(C_PASS_MULTICAST, XDP_PASS);

	proto = eth->h_proto;
	l3 = eth + 1;
	// Up to two 802.1Q / 802.1ad tags.
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = l3;
		if ((void *)(vh + 1) > data_end)
			return count(C_DROP_MALFORMED, XDP_DROP);
		proto = vh->proto;
		l3 = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_ARP))
		return count(C_PASS_ARP, XDP_PASS);

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return count(C_DROP_MALFORMED, XDP_DROP);
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->daddr, 4);
		src.addr[10] = 0xff;
		src.addr[11] = 0xff;
		__builtin_memcpy(&src.addr[12], &ip->saddr, 4);
		// Ports only in a first fragment (or an unfragmented packet).
		if (!(ip->frag_off & bpf_htons(0x1fff))) {
			void *l4 = (void *)ip + ip->ihl * 4;
			if (l4_ports(l4, data_end, ip->protocol, &host) < 0)
				return count(C_DROP_MALFORMED, XDP_DROP);
			if (ip->protocol == IPPROTO_ICMP) {
				__u8 *type = l4;
				if ((void *)(type + 1) > data_end)
					return count(C_DROP_MALFORMED, XDP_DROP);
				// Echo reply, unreachable, time exceeded, parameter problem.
				host.icmp_reply = *type == 0 || *type == 3 || *type == 11 || *type == 12;
			}
		}
		host.v4 = 1;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return count(C_DROP_MALFORMED, XDP_DROP);
		if (ip6->nexthdr == IPPROTO_ICMPV6) {
			struct icmp6hdr *icmp6 = (void *)(ip6 + 1);
			if ((void *)(icmp6 + 1) > data_end)
				return count(C_DROP_MALFORMED, XDP_DROP);
			// RFC 4861: router/neighbour solicitation and advertisement, redirect.
			if (icmp6->icmp6_type >= 133 && icmp6->icmp6_type <= 137)
				return count(C_PASS_NDP, XDP_PASS);
			// RFC 4443: echo reply, or an error (1 to 4).
			host.icmp_reply = icmp6->icmp6_type == 129 ||
					  (icmp6->icmp6_type >= 1 && icmp6->icmp6_type <= 4);
		}
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		__builtin_memcpy(src.addr, &ip6->saddr, 16);
		// Ports only right after the fixed header (extension headers: judged).
		if (l4_ports(ip6 + 1, data_end, ip6->nexthdr, &host) < 0)
			return count(C_DROP_MALFORMED, XDP_DROP);
	} else {
		// Neither IP nor ARP (LLDP, STP, ...): the kernel decides.
		return count(C_PASS_OTHER, XDP_PASS);
	}

	__u32 *rule = bpf_map_lookup_elem(&deny_src, &src);
	if (rule) {
		__u64 *c = bpf_map_lookup_elem(&deny_counts, rule);
		if (c)
			*c += 1;
		return count(C_DROP_PREFILTER, XDP_DROP);
	}

	__u32 redirected = C_REDIRECT;
	if (bpf_map_lookup_elem(&own_addrs, &key)) {
		if (host.icmp_reply)
			return count(C_PASS_ICMP_REPLY, XDP_PASS);
		if (host.proto) {
			struct failsafe_key fk = { .proto = host.proto, .port = host.dport };
			if (bpf_map_lookup_elem(&failsafe_in, &fk))
				return count(C_PASS_FAILSAFE, XDP_PASS);
			if (socket_takes(ctx, &host, &src, &key))
				return count(C_PASS_SOCKET, XDP_PASS);
		}
		// The worker judges it by the host endpoint's policy.
		redirected = C_HOST_JUDGE;
	}

	// Fail closed: until a worker has put its socket in the map, drop.
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *base = bpf_map_lookup_elem(&port_slots, &ifindex);
	if (!base)
		return count(C_DROP_NO_SOCKET, XDP_DROP);
	__u32 slot = *base + ctx->rx_queue_index;
	if (bpf_redirect_map(&xsks, slot, XDP_DROP) == XDP_REDIRECT)
		return count(redirected, XDP_REDIRECT);
	return count(C_DROP_NO_SOCKET, XDP_DROP);
}

char _license[] SEC("license") = "Dual BSD/GPL";
