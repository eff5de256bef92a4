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
# redis-cli across two gateways, psql with verify-full to a PostgreSQL TLS
# service, a service chosen by SNI, ALPN, a PROXY v2 header carrying the
# client's SPIFFE ID to a backend, and the access log. Last, the sync: Calico policy and workload
# endpoints written into a real etcd as calicoctl writes them, carried to the
# appliance by `causeway sync`, the verdicts following etcd's changes, and
# still enforced once etcd and the sync are gone; and a drain before a
# restart. The lab is removed at the end, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

cargo build --release --bin causeway
CW=$PWD/target/release/causeway
LAB=${LAB:-demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# The sync's etcd and `causeway sync` run in the host's namespace, outside
# the lab: stopped here before the lab goes, also when a step fails.
ETCD_PID= SYNC_PID= SYNC_DIR=
cleanup() {
  for pid in $SYNC_PID $ETCD_PID; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$SYNC_DIR" ]; then rm -rf "$SYNC_DIR"; fi
  step "causeway lab down --name $LAB"; "$CW" lab down --name "$LAB" || true
}
"$CW" lab down --name "$LAB" >/dev/null 2>&1 || true
trap cleanup EXIT

step "causeway lab up --name $LAB --start"
"$CW" lab up --name "$LAB" --start
"$CW" lab status --name "$LAB"

step "ready means forwarding under policy: /live and /ready; causeway run --check on a good and a broken copy of the lab's configuration"
for probe in live ready; do
  printf '/%s: ' "$probe"
  curl -s -o /dev/null -w '%{http_code}\n' --unix-socket "/run/causeway/lab/$LAB/causeway.sock" "http://x/$probe"
done
# In the appliance's namespace, where its ports' interfaces are.
ip netns exec "$LAB-gw" "$CW" run --check --config "/run/causeway/lab/$LAB/config.yaml"
BROKEN=$(mktemp)
sed 's/^\( *\)batch: .*/\1batch: 0/' "/run/causeway/lab/$LAB/config.yaml" >"$BROKEN"
ip netns exec "$LAB-gw" "$CW" run --check --config "$BROKEN" || echo "(refused, exit $?: a template with this value would never replace the configuration in force)"
rm -f "$BROKEN"
echo "gRPC health (grpc.health.v1, what a balancer asks): $("$CW" ctl --lab "$LAB" health)"

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

step "anti-spoofing: island A sends one frame as itself and one claiming island B's 10.2.0.7; only the first crosses"
GW_MAC=$(ip netns exec "$LAB-gw" cat /sys/class/net/a0/address)
SNIFFED=$(mktemp)
ip netns exec "$LAB-b" python3 tests/python/raw_frames.py sniff eth0 2 legit spoofed >"$SNIFFED" 2>/dev/null &
SNIFF=$!
sleep 0.5
ip netns exec "$LAB-a" python3 tests/python/raw_frames.py send eth0 "$GW_MAC" udp,10.1.0.2,10.2.0.2,legit udp,10.2.0.7,10.2.0.2,spoofed
wait "$SNIFF"
echo "island B saw: $(tail -1 "$SNIFFED")"; rm -f "$SNIFFED"
"$CW" stats --lab "$LAB" -o prometheus | grep 'causeway_port_drops_total{port="a",reason="spoofed"}'

step "martians and directed broadcasts: from 127.0.0.1, and to island B's subnet broadcast 10.2.0.255; only the legit frame crosses"
SNIFFED=$(mktemp)
ip netns exec "$LAB-b" python3 tests/python/raw_frames.py sniff eth0 2 legit loopback broadcast >"$SNIFFED" 2>/dev/null &
SNIFF=$!
sleep 0.5
ip netns exec "$LAB-a" python3 tests/python/raw_frames.py send eth0 "$GW_MAC" \
  udp,10.1.0.2,10.2.0.2,legit udp,127.0.0.1,10.2.0.2,loopback udp,10.1.0.2,10.2.0.255,broadcast
wait "$SNIFF"
echo "island B saw: $(tail -1 "$SNIFFED")"; rm -f "$SNIFFED"
"$CW" stats --lab "$LAB" -o prometheus | grep -E 'causeway_port_drops_total\{port="a",reason="(martian|directed_broadcast)"\}'

step "the appliance's own addresses: no host-endpoint policy, so island A's ping to the gateway 10.1.0.1 is judged and denied; its failsafe port 22 stays open"
ip netns exec "$LAB-a" ping -c1 -W1 10.1.0.1 || echo "(no answer: judged by the host endpoint's policy, of which there is none)"
ip netns exec "$LAB-gw" timeout 5 python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("10.1.0.1", 22)); s.listen(); c,_=s.accept(); c.sendall(b"failsafe\n"); time.sleep(0.2)' &
FAILSAFE=$!
sleep 0.3
ip netns exec "$LAB-a" timeout 3 python3 -c 'import socket; print("tcp 10.1.0.1:22 answered:", socket.create_connection(("10.1.0.1", 22), timeout=2).recv(64).decode().strip())'
wait "$FAILSAFE" || true
"$CW" stats --lab "$LAB" | grep -E "^XDP"

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
    # PostgreSQL's own TLS (the SSLRequest, or PG17's direct TLS), ended
    # here for stock psql; the client certificate is the identity.
    - {name: postgres-tls, listen: 10.2.0.2:15433, mode: terminate, protocol: postgres,
       upstreams: [127.0.0.1:5432],
       tls: {cert: $PKI/upstream.pem, key: $PKI/upstream-key.pem, client_ca: $PKI/ca.pem,
             allowed_identities: [spiffe://causeway.lab/ns/lab/sa/client]}}
    # Chosen by SNI on a shared port; with no default service, any other
    # name is refused (and counted).
    - {name: web-by-name, listen: 10.2.0.2:18443, mode: terminate, server_names: [demo.causeway.lab],
       upstreams: [127.0.0.1:8080], tls: {cert: $PKI/server.pem, key: $PKI/server-key.pem}}
    # mTLS with ALPN announced, and a PROXY v2 header sent upstream: the
    # client's address and its verified SPIFFE ID (TLV 0xE0).
    - {name: web-proxied, listen: 10.2.0.2:18444, mode: terminate, upstreams: [127.0.0.1:8081],
       proxy_protocol: {send: true},
       tls: {cert: $PKI/server.pem, key: $PKI/server-key.pem, client_ca: $PKI/ca.pem, alpn: [h2, http/1.1]}}
  # One JSON line per connection, written off the workers.
  access_log: {to: $FAR/access.log}
YAML
# A backend that expects a PROXY v2 header and answers with what it said.
cat >"$FAR/proxy_echo.py" <<'PY'
import ipaddress, socket, struct
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8081)); s.listen()
def serve(c):
    head = c.recv(16, socket.MSG_WAITALL)
    assert head[:12] == b"\r\n\r\n\x00\r\nQUIT\n", "no PROXY v2 signature"
    body = c.recv(struct.unpack("!H", head[14:16])[0], socket.MSG_WAITALL)
    src = ipaddress.ip_address(body[0:4]); port = struct.unpack("!H", body[8:10])[0]
    tlvs, at = {}, 12
    while at + 3 <= len(body):
        t, n = body[at], struct.unpack("!H", body[at + 1:at + 3])[0]
        tlvs[t] = body[at + 3:at + 3 + n]; at += 3 + n
    c.recv(65536)
    said = f"the backend's PROXY v2 header: client {src}:{port}, SPIFFE ID {tlvs.get(0xE0, b'-').decode()}\n"
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(said) + said.encode())
while True:
    c, _ = s.accept()
    try:
        serve(c)
    except Exception as e:  # a client gone early (openssl s_client): serve the next
        print(e, flush=True)
    finally:
        c.close()
PY
ip netns exec "$LAB-b" python3 "$FAR/proxy_echo.py" >"$FAR/proxy_echo.log" 2>&1 &
mkdir -p "$FAR/www" && echo "island B's web, reached by its name" >"$FAR/www/index.html"
ip netns exec "$LAB-b" python3 -m http.server 8080 --bind 127.0.0.1 --directory "$FAR/www" >/dev/null 2>&1 &
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

step "PostgreSQL TLS ended by causeway: stock psql, sslmode=verify-full, its client certificate the identity"
PGTLS="host=10.2.0.2 port=15433 user=postgres dbname=postgres sslmode=verify-full sslrootcert=$PKI/ca.pem"
ip netns exec "$LAB-b" psql "$PGTLS sslcert=$PKI/client.pem sslkey=$PKI/client-key.pem" \
  -c "select 'verify-full through causeway' as psql, client_addr as server_sees from pg_stat_activity where pid = pg_backend_pid()"
echo -n "without a client certificate: "
{ ip netns exec "$LAB-b" psql "$PGTLS sslcert=$FAR/no-such.crt sslkey=$FAR/no-such.key" -c "select 1" 2>&1 || true; } | tail -1

step "SNI routing: demo.causeway.lab on 10.2.0.2:18443 is served; another name is refused and counted"
ip netns exec "$LAB-b" curl -s -m 5 --cacert "$PKI/ca.pem" --resolve demo.causeway.lab:18443:10.2.0.2 https://demo.causeway.lab:18443/
OTHER=$(ip netns exec "$LAB-b" openssl s_client -connect 10.2.0.2:18443 -servername other.test -CAfile "$PKI/ca.pem" </dev/null 2>&1 || true)
echo "other.test: $(grep -m1 -o 'unrecognized name' <<<"$OTHER" || echo 'answered?!')"
curl -s --unix-socket "$FAR/gateway.sock" http://x/metrics | grep -E '^causeway_terminator_listener_refused_total' | grep -v ' 0$' || true

step "ALPN and PROXY v2: h2 negotiated on 10.2.0.2:18444; the backend sees the client's address and SPIFFE ID; the access log"
ip netns exec "$LAB-b" openssl s_client -connect 10.2.0.2:18444 -alpn h2,http/1.1 -CAfile "$PKI/ca.pem" \
  -cert "$PKI/client.pem" -key "$PKI/client-key.pem" </dev/null 2>/dev/null | grep -m1 '^ALPN protocol' || echo "no ALPN?!"
ip netns exec "$LAB-b" curl -s -m 5 --http1.1 --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client-key.pem" \
  --resolve demo.causeway.lab:18444:10.2.0.2 https://demo.causeway.lab:18444/
sleep 0.5
echo "the gateway's access log, last line:"
tail -1 "$FAR/access.log"

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

# ----------------------------------------------------------------- the sync
# Calico's etcdv3 datastore, a real etcd on loopback, written the way
# calicoctl writes it (tests/python/calico_etcd.py); `causeway sync` carries
# it to the appliance as owner sync/default.
SYNC_DIR=/run/causeway/lab/$LAB/sync
rm -rf "$SYNC_DIR" && mkdir -p "$SYNC_DIR"
CONTROL=$("$CW" lab status --name "$LAB" -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["appliance"]["control_socket"])')
# TCP from island A to island B's server: "connects" or "no answer".
tcp() {
  ip netns exec "$LAB-a" curl -s --connect-timeout 1.5 -m 3 -o /dev/null "http://10.2.0.2:$1/" \
    && echo connects || echo "no answer"
}
# Shows TCP 8080 and 9090 once they get $1 and $2, waiting at most $3
# seconds (default 20; 0: they must already).
verdicts() {
  local deadline=$((SECONDS + ${3:-20})) a b
  while :; do
    a=$(tcp 8080); b=$(tcp 9090)
    [ "$a/$b" = "$1/$2" ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "TCP 8080: $a, TCP 9090: $b; expected $1 and $2. The sync's log:"
      tail -20 "$SYNC_DIR/sync.log" 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
  printf 'TCP 10.2.0.2:8080 (http): %-9s  TCP 10.2.0.2:9090: %s\n' "$a" "$b"
}
calico() { python3 tests/python/calico_etcd.py --endpoint "$ETCD" "$@"; }

step "the sync, first: ctl's resources from above removed (the sync's Pods claim their addresses, its Tier and policy their names)"
"$CW" ctl --lab "$LAB" list --owner ctl
"$CW" ctl --lab "$LAB" apply --replace -f - --wait </dev/null 2>&1 | tail -2 || true   # refused if it would leave no policy at all
"$CW" ctl --lab "$LAB" apply --replace --allow-no-policy -f - --wait </dev/null   # said explicitly: ctl's whole set becomes empty

step "listeners on island B's 10.2.0.2:8080 and :9090; no policy selects the server, both connect"
ip netns exec "$LAB-b" python3 -m http.server 8080 --bind 10.2.0.2 >/dev/null 2>&1 &
LISTENERS=$!
ip netns exec "$LAB-b" python3 -m http.server 9090 --bind 10.2.0.2 >/dev/null 2>&1 &
LISTENERS="$LISTENERS $!"
for _ in $(seq 50); do
  [ "$(ip netns exec "$LAB-b" ss -Hltn '( sport = :8080 or sport = :9090 )' | wc -l)" = 2 ] && break
  sleep 0.1
done
verdicts connects connects

# Two free loopback ports, for etcd's clients and its peers.
read -r CLIENT_PORT PEER_PORT < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
ETCD=http://127.0.0.1:$CLIENT_PORT PEER=http://127.0.0.1:$PEER_PORT
step "etcd on $ETCD (Calico's etcdv3 datastore); examples/calico-etcd written into it as calicoctl writes"
etcd --name causeway-demo --data-dir "$SYNC_DIR/etcd" \
  --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
  --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" \
  --initial-cluster "causeway-demo=$PEER" >"$SYNC_DIR/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do curl -sf -m 1 "$ETCD/health" >/dev/null && break; sleep 0.2; done
curl -sf -m 1 "$ETCD/health" || { echo "etcd did not come up:"; tail -20 "$SYNC_DIR/etcd.log"; exit 1; }
echo
calico apply examples/calico-etcd/endpoints.json
calico apply examples/calico-etcd/policy.json

# --allow-no-policy: this cluster's one policy is deleted below, and the
# appliance should then judge nothing (without it, the appliance refuses
# a push that leaves it no policy and keeps the last one).
step "DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=$ETCD causeway sync --allow-no-policy --appliance unix:$CONTROL: the policy in etcd is enforced"
DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=$ETCD "$CW" sync --allow-no-policy --appliance "unix:$CONTROL" \
  --status-socket "$SYNC_DIR/sync.sock" >"$SYNC_DIR/sync.log" 2>&1 &
SYNC_PID=$!
verdicts connects "no answer"

step "what the sync holds (ctl list --owner sync/default), and how it stands (causeway sync status)"
"$CW" ctl --lab "$LAB" list --owner sync/default
"$CW" sync status --socket "$SYNC_DIR/sync.sock"
echo -n "an operator's delete of the sync's policy: "
"$CW" ctl --lab "$LAB" delete globalnetworkpolicy security.server-ingress 2>&1 | tail -1 || true

step "etcd changes, the verdicts follow: the GlobalNetworkPolicy deleted in etcd, then written back"
calico delete GlobalNetworkPolicy security.server-ingress
verdicts connects connects
calico apply examples/calico-etcd/policy.json
verdicts connects "no answer"

step "etcd stopped: the sync says so, and the appliance keeps enforcing what it holds (fail static)"
kill "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=
for _ in $(seq 100); do
  "$CW" sync status --socket "$SYNC_DIR/sync.sock" | grep -q '^source .*disconnected' && break
  sleep 0.2
done
"$CW" sync status --socket "$SYNC_DIR/sync.sock" | tee "$SYNC_DIR/status.txt"
grep -q '^source .*disconnected' "$SYNC_DIR/status.txt" || { echo "the sync did not notice etcd went"; exit 1; }
verdicts connects "no answer" 0

step "the sync stopped too: still enforced; etcd's data removed"
kill "$SYNC_PID"; wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=
verdicts connects "no answer" 0
kill $LISTENERS 2>/dev/null || true; wait 2>/dev/null || true
rm -rf "$SYNC_DIR"; SYNC_DIR=

step "drain before a restart (causeway ctl drain): health says NOT_SERVING, /ready 503, the terminator has closed; the dataplane still forwards"
"$CW" ctl --lab "$LAB" drain
"$CW" ctl --lab "$LAB" health || echo "(health refused, exit $?: balancers stop sending)"
printf '/ready: '; curl -s -o /dev/null -w '%{http_code}\n' --unix-socket "/run/causeway/lab/$LAB/causeway.sock" http://x/ready
ip netns exec "$LAB-a" ping -c2 -i0.2 10.2.0.2
