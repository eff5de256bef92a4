// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
//
// causeway's XDP program: the kernel half of the packet walk.
//
//   malformed L2/L3 header            -> XDP_DROP   (counted: DROP_MALFORMED)
//   source in deny_src (doNotTrack)   -> XDP_DROP   (counted per rule: deny_counts)
//   ARP, IPv6 neighbour discovery     -> XDP_PASS   (the kernel resolves neighbours)
//   L2 multicast / broadcast          -> XDP_PASS   (not routed by the dataplane)
//   to one of the appliance's own
//   addresses (own_addrs)             -> XDP_PASS   (management, ping to the gateway)
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
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// XSKMAP slots: each port (interface) owns a contiguous range of slots,
// one per RX queue, starting at port_slots[ifindex].
#define MAX_SLOTS 256

enum counter {
	C_REDIRECT = 0,
	C_PASS_ARP = 1,
	C_PASS_NDP = 2,
	C_PASS_LOCAL = 3,
	C_PASS_MULTICAST = 4,
	C_PASS_OTHER = 5,
	C_DROP_MALFORMED = 6,
	C_DROP_NO_SOCKET = 7,
	C_DROP_PREFILTER = 8,
	C_MAX = 9,
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

SEC("xdp")
int causeway_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct own_addr key = {};
	struct lpm_key src = { .prefixlen = 128 };
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
		}
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		__builtin_memcpy(src.addr, &ip6->saddr, 16);
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

	if (bpf_map_lookup_elem(&own_addrs, &key))
		return count(C_PASS_LOCAL, XDP_PASS);

	// Fail closed: until a worker has put its socket in the map, drop.
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *base = bpf_map_lookup_elem(&port_slots, &ifindex);
	if (!base)
		return count(C_DROP_NO_SOCKET, XDP_DROP);
	__u32 slot = *base + ctx->rx_queue_index;
	if (bpf_redirect_map(&xsks, slot, XDP_DROP) == XDP_REDIRECT)
		return count(C_REDIRECT, XDP_REDIRECT);
	return count(C_DROP_NO_SOCKET, XDP_DROP);
}

char _license[] SEC("license") = "Dual BSD/GPL";
