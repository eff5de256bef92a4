#!/usr/bin/env bash
# The causeway demo: a lab of three network namespaces (island A, the
# appliance, island B), the appliance started with the built-in default
# configuration, then traffic from A to B that only the dataplane can carry:
# ping over IPv4 and IPv6, a traceroute-style TTL expiry, an iperf3 TCP
# transfer, and the appliance's counters. Then the gates: Calico policy
# checked, explained, and enforced per packet (port 80 allowed, 22 denied),
# with per-rule counters, applied through the control API (causeway ctl),
# refused when wrong, and still in force after a restart. Before the gates, the armoured car: curl over mTLS
# through the terminator to three backends, a refused client, and psql and
# redis-cli across two gateways. The lab is removed at the end, also when a
# step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

cargo build --release --bin causeway
CW=$PWD/target/release/causeway
LAB=${LAB:-demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() { step "causeway lab down --name $LAB"; "$CW" lab down --name "$LAB" || true; }
"$CW" lab down --name "$LAB" >/dev/null 2>&1 || true
trap cleanup EXIT

step "causeway lab up --name $LAB --start"
"$CW" lab up --name "$LAB" --start
"$CW" lab status --name "$LAB"

step "the appliance's kernel does not forward; the XDP program is attached"
echo "net.ipv4.ip_forward = $(ip netns exec "$LAB-gw" sysctl -n net.ipv4.ip_forward)"
echo "net.ipv6.conf.all.forwarding = $(ip netns exec "$LAB-gw" sysctl -n net.ipv6.conf.all.forwarding)"
ip -n "$LAB-gw" link show a0 | grep -E "a0|prog/xdp"

step "ping from island A to island B (IPv4, IPv6)"
ip netns exec "$LAB-a" ping -c3 -i0.2 10.2.0.2
ip netns exec "$LAB-a" ping -6 -c3 -i0.2 fd00:b::2

step "TTL 1: the appliance answers time exceeded, as a router does"
ip netns exec "$LAB-a" ping -c1 -t1 -W2 10.2.0.2 || true

step "iperf3: TCP from island A to island B for 5 s"
ip netns exec "$LAB-b" iperf3 -s -1 -D -B 10.2.0.2
sleep 0.5
taskset -c 0 ip netns exec "$LAB-a" iperf3 -c 10.2.0.2 -t 5 -f m

step "the appliance's counters (causeway stats --lab $LAB)"
"$CW" stats --lab "$LAB"

# ------------------------------------------------------- the armoured car
PKI=/run/causeway/lab/$LAB/pki
step "the terminator: curl with the lab's client certificate, mTLS to 10.100.0.10:443"
for i in 1 2 3 4 5 6; do
  ip netns exec "$LAB-a" curl -s -m 5 --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client-key.pem" \
    --resolve demo.causeway.lab:443:10.100.0.10 https://demo.causeway.lab/
done
echo -n "without a client certificate: "
ip netns exec "$LAB-a" curl -s -m 5 --cacert "$PKI/ca.pem" --resolve demo.causeway.lab:443:10.100.0.10 \
  https://demo.causeway.lab/ && echo "answered?!" || echo "refused (curl exit $?)"

step "gateway to gateway: psql and redis-cli on island A, mTLS across, the servers on island B"
FAR=/run/causeway/lab/$LAB/far
mkdir -p "$FAR" && chmod 777 "$FAR"
PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")
runuser -u postgres -- "$PGBIN/initdb" -D "$FAR/pg" -A trust -U postgres >/dev/null
ip netns exec "$LAB-b" runuser -u postgres -- "$PGBIN/postgres" -D "$FAR/pg" -h 127.0.0.1 -p 5432 -k "$FAR" >"$FAR/pg.log" 2>&1 &
ip netns exec "$LAB-b" redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no >"$FAR/redis.log" 2>&1 &
cat >"$FAR/gateway.yaml" <<YAML
# Island B's gateway: a causeway with no dataplane ports, terminating the
# appliance's mTLS (only its identity is admitted) in front of the servers.
ports: []
api: {socket: $FAR/gateway.sock}
state: {dir: $FAR/gateway-state}
terminator:
  cores: [0]
  services:
    - {name: postgres-in, listen: 10.2.0.2:15432, mode: terminate, upstreams: [127.0.0.1:5432],
       tls: {cert: $PKI/upstream.pem, key: $PKI/upstream-key.pem, client_ca: $PKI/ca.pem,
             allowed_identities: [spiffe://causeway.lab/ns/lab/sa/gateway]}}
    - {name: redis-in, listen: 10.2.0.2:16379, mode: terminate, upstreams: [127.0.0.1:6379],
       tls: {cert: $PKI/upstream.pem, key: $PKI/upstream-key.pem, client_ca: $PKI/ca.pem,
             allowed_identities: [spiffe://causeway.lab/ns/lab/sa/gateway]}}
YAML
ip netns exec "$LAB-b" "$CW" run --config "$FAR/gateway.yaml" >"$FAR/gateway.log" 2>&1 &
for _ in $(seq 50); do
  ip netns exec "$LAB-b" ss -Hltn | grep -q ':5432 ' && ip netns exec "$LAB-b" ss -Hltn | grep -q ':15432 ' && break
  sleep 0.2
done
echo "psql -h 10.100.0.20 (the appliance's postgres service, originating mTLS):"
ip netns exec "$LAB-a" psql -h 10.100.0.20 -p 5432 -U postgres -c "select 'across two gateways' as hello, 6 * 7 as answer"
echo "redis-cli -h 10.100.0.21:"
ip netns exec "$LAB-a" redis-cli -h 10.100.0.21 -p 6379 SET causeway bridge
ip netns exec "$LAB-a" redis-cli -h 10.100.0.21 -p 6379 GET causeway

step "the terminator's metrics (Linkerd's names) on the appliance's /metrics"
curl -s --unix-socket "/run/causeway/lab/$LAB/causeway.sock" http://x/metrics \
  | grep -E '^causeway_terminator_(tcp_open_total|tls_handshakes_total|tls_handshake_failures_total|endpoint_connects_total)' || true
kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true

# ---------------------------------------------------------------- the gates
step "causeway policy check / explain on examples/lab-policy (Calico YAML)"
"$CW" policy check -f examples/lab-policy
"$CW" policy explain -f examples/lab-policy --src 10.1.0.2 --dst 10.2.0.2 --proto tcp --dport 80
"$CW" policy explain -f examples/lab-policy --src 10.1.0.2 --dst 10.2.0.2 --proto tcp --dport 22

step "the control API: causeway ctl apply -f examples/lab-policy --wait (gRPC on the lab's causeway-control.sock)"
"$CW" ctl --lab "$LAB" apply -f examples/lab-policy --wait
"$CW" ctl --lab "$LAB" list
"$CW" ctl --lab "$LAB" explain --src 10.1.0.2 --dst 10.2.0.2 --proto tcp --dport 22
ip netns exec "$LAB-b" python3 -m http.server 80 --bind 10.2.0.2 >/dev/null 2>&1 &
ip netns exec "$LAB-b" python3 -m http.server 22 --bind 10.2.0.2 >/dev/null 2>&1 &
sleep 1
"$CW" ctl --lab "$LAB" flows --for 4s --address 10.2.0.2 &
FLOWS=$!
sleep 1
echo -n "TCP 80 (allowed):  "; ip netns exec "$LAB-a" curl -s -m 3 -o /dev/null -w "HTTP %{http_code}\n" http://10.2.0.2:80/ || true
echo -n "TCP 22 (denied):   "; ip netns exec "$LAB-a" curl -s -m 3 -o /dev/null http://10.2.0.2:22/ && echo "answered?!" || echo "no answer: denied by policy"
wait $FLOWS || true

step "a bad manifest is refused whole (file, line, resource, field, reason); the policy in force stays"
BAD=$(mktemp --suffix .yaml)
printf 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: oops}\nspec:\n  selector: role == server &&\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [70000]}}]\n' >"$BAD"
"$CW" ctl --lab "$LAB" apply -f "$BAD" || echo "(refused, exit $?)"
rm -f "$BAD"

step "restart the appliance: what was acknowledged is on disk and enforced from the first packet"
"$CW" lab stop --name "$LAB"
"$CW" lab start --name "$LAB"
"$CW" ctl --lab "$LAB" status
echo -n "TCP 22 (denied):   "; ip netns exec "$LAB-a" curl -s -m 3 -o /dev/null http://10.2.0.2:22/ && echo "answered?!" || echo "no answer: still denied"

step "per-rule counters: the allow rule and the tier's default deny"
"$CW" stats --lab "$LAB"
kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
