// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
//
// The `forward` scenario's cheap sink, on island B's eth0: it counts the
// generator's frames and drops them in the driver, so the forwarder's CPU
// (which runs island B's receive: it sends into it) does forwarding and
// not a UDP socket's receive path.
//
//   IPv4 UDP to SINK_PORT   -> counted in `sink_count` (slot 0), XDP_DROP
//   anything else (ARP, ICMP, IPv6)
//        -> XDP_PASS: island B's stack answers the gateway's ARP
//
// A veth also takes redirected frames only when its peer runs an XDP
// program, so this program serves the in-kernel XDP forwarder too.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// perf/src/forward/mod.rs: SINK_PORT.
#define SINK_PORT 9000

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;
	__u32 key = 0;
	__u64 *count;

	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP ||
	    ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(SINK_PORT))
		return XDP_PASS;
	count = bpf_map_lookup_elem(&sink_count, &key);
	if (count)
		*count += 1;
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
