#!/usr/bin/env bash
# A real Ansible run over SSH against two edge nodes on this machine (root,
# no systemd as PID 1, no containers). Each node is a causeway lab (islands
# A and B, the appliance's namespace NAME-gw) whose NAME-gw runs its own
# sshd on 127.0.0.1:22; Ansible reaches it over SSH through a ProxyCommand
# that relays stdin/stdout to that port from inside the namespace. Each node
# has its own install prefix, so the role really copies, templates and
# starts per node; the appliance runs under the role's supervisor (systemd
# is not PID 1 here) as `nobody`, with the service unit's capabilities.
#
# A third namespace with its own sshd is the control host: the play runs the
# `sync` role there (under its supervisor, as `nobody`) with a manifests
# directory as its source and both nodes' appliances as its targets (their
# control sockets: a Unix socket's path is reachable from any namespace on
# the host; production syncs reach appliances' TCP API with mTLS).
#
# Checks: the play converges, each node forwards A -> B, is ready and says
# SERVING over gRPC health, and holds the sync's policy with owner
# sync/lab; a second run reports changed=0 on the nodes and the control
# host; --check on a changed variable reports the
# change and alters nothing; a bad value is refused by `causeway run --check`
# and the running appliance is untouched; upgrade.yml replaces the binary
# one node at a time while a ping stream crosses each node, draining each
# before its restart, and the packets lost per node are reported.
#
# Needs target/release/causeway and scripts/ansible-check.sh's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CW=$ROOT/target/release/causeway
VENV=/opt/causeway/ansible-venv
[ -x "$CW" ] || { echo "build target/release/causeway first" >&2; exit 1; }
[ -x "$VENV/bin/ansible-playbook" ] || { echo "run scripts/ansible-check.sh first (it makes $VENV)" >&2; exit 1; }
command -v sshd >/dev/null || { echo "apt-get install openssh-server" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*" >&2; failed=$((failed + 1)); }

tag="tans$(($$ % 100000))"
NODES=("${tag}x1" "${tag}x2")
CONTROL="${tag}c"
WORK=$(mktemp -d /tmp/cw-ansible-lab.XXXXXX)
pings=()

cleanup() {
  set +e
  for p in "${pings[@]}"; do kill "$p" 2>/dev/null; done
  if [ "$failed" != 0 ]; then
    for n in "${NODES[@]}"; do
      echo "-- $n: the appliance's log (last lines)"
      tail -n 15 "/run/causeway/lab/$n/node/var/log/causeway.log" 2>/dev/null
    done
  fi
  # The control host: its supervisor, the sync, sshd, then its namespace.
  for pidfile in "$WORK/control/run/causeway-sync/supervise.pid" "$WORK/control/run/causeway-sync/sync.pid" "$WORK/control/sshd.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  if [ "$failed" != 0 ]; then
    echo "-- $CONTROL: the sync's log (last lines)"
    tail -n 15 "$WORK/control/var/log/causeway-sync.log" 2>/dev/null
  fi
  ip netns del "$CONTROL" 2>/dev/null
  for n in "${NODES[@]}"; do
    local d=/run/causeway/lab/$n
    # The supervisor first (it would restart the appliance), then the
    # appliance, then sshd: each by its pid file, nothing by name.
    for pidfile in "$d/node/run/causeway/supervise.pid" "$d/node/run/causeway/causeway.pid" "$d/sshd.pid"; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    done
  done
  sleep 1
  for n in "${NODES[@]}"; do "$CW" lab down --name "$n" >/dev/null 2>&1; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$WORK/id" >/dev/null
mkdir -p /run/sshd
cat >"$WORK/relay.py" <<'EOF'
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", 22))
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(d)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
EOF

{
  echo "all:"
  echo "  children:"
  echo "    edge:"
  echo "      hosts:"
} >"$WORK/inventory.yml"
for n in "${NODES[@]}"; do
  "$CW" lab up --name "$n" >/dev/null
  d=/run/causeway/lab/$n
  ssh-keygen -q -t ed25519 -N '' -f "$d/ssh_host_ed25519_key" >/dev/null
  cp "$WORK/id.pub" "$d/authorized_keys"
  cat >"$d/sshd_config" <<EOF
ListenAddress 127.0.0.1:22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  ip netns exec "$n-gw" /usr/sbin/sshd -f "$d/sshd_config"
  cat >>"$WORK/inventory.yml" <<EOF
        $n:
          ansible_host: $n
          ansible_user: root
          ansible_ssh_private_key_file: $WORK/id
          ansible_ssh_common_args: >-
            -o ProxyCommand="ip netns exec $n-gw python3 $WORK/relay.py"
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          ansible_python_interpreter: /usr/bin/python3
          appliance_prefix: $d/node
EOF
done
# The control host: a namespace with sshd, the sync's source directory.
C_DIR=$WORK/control
mkdir -p "$C_DIR/manifests"
ip netns add "$CONTROL"
ip -n "$CONTROL" link set lo up
ssh-keygen -q -t ed25519 -N '' -f "$C_DIR/ssh_host_ed25519_key" >/dev/null
cp "$WORK/id.pub" "$C_DIR/authorized_keys"
sed -e "s|/run/causeway/lab/${NODES[0]}|$C_DIR|g" "/run/causeway/lab/${NODES[0]}/sshd_config" >"$C_DIR/sshd_config"
ip netns exec "$CONTROL" /usr/sbin/sshd -f "$C_DIR/sshd_config"
# A policy from the cluster: it selects no lab host, so the bridges still
# forward; it must reach both appliances with the sync as its owner.
cat >"$C_DIR/manifests/policy.yaml" <<'EOF'
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: from-the-sync}
spec:
  selector: role == 'server'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: role == 'client'}, destination: {ports: [8080]}}
EOF
chmod 0755 "$WORK" "$C_DIR" && chmod -R a+rX "$C_DIR/manifests"
cat >>"$WORK/inventory.yml" <<EOF
    control:
      hosts:
        $CONTROL:
          ansible_host: $CONTROL
          ansible_user: root
          ansible_ssh_private_key_file: $WORK/id
          ansible_ssh_common_args: >-
            -o ProxyCommand="ip netns exec $CONTROL python3 $WORK/relay.py"
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          ansible_python_interpreter: /usr/bin/python3
          sync_prefix: $C_DIR
          sync_service_manager: supervisor
          sync_user: nobody
          sync_group: nogroup
          sync_name: lab
          sync_sources:
            - {name: git, manifests: {dir: $C_DIR/manifests}}
          sync_appliances:
EOF
for n in "${NODES[@]}"; do
  echo "            - unix:/run/causeway/lab/$n/node/run/causeway/causeway-control.sock" >>"$WORK/inventory.yml"
done

cat >"$WORK/group_vars.yml" <<EOF
appliance_artifact: $WORK/causeway
appliance_service_manager: supervisor
appliance_user: nobody
appliance_group: nogroup
appliance_ports:
  - {name: a, interface: a0, queues: 1}
  - {name: b, interface: b0, queues: 1}
appliance_worker_cores: [1]
appliance_metrics_listen: 127.0.0.1:9464
# No manifests: the nodes are plain bridges between the lab's islands,
# which no endpoint claims (the appliance denies that by default).
appliance_policy_unclaimed: allow
EOF
cp "$CW" "$WORK/causeway"

C=$WORK/collections/ansible_collections/causeway
mkdir -p "$C" && ln -s "$ROOT/ansible" "$C/edge"
export ANSIBLE_COLLECTIONS_PATH=$WORK/collections ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1
play() { ansible-playbook -i "$WORK/inventory.yml" -e @"$WORK/group_vars.yml" "$@"; }
recap() { grep -E '^[a-z0-9]+ +: ok=' "$1"; }
forwards() { ip netns exec "$1-a" ping -c1 -W2 10.2.0.2 >/dev/null; }
ready() { ip netns exec "$1-gw" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9464/ready; }
ctl() { local n=$1; shift; "$CW" ctl --socket "/run/causeway/lab/$n/node/run/causeway/causeway-control.sock" "$@"; }
serving() { [ "$(ctl "$1" health 2>&1)" = SERVING ]; }
apid() { cat "/run/causeway/lab/$1/node/run/causeway/causeway.pid"; }

echo "== site.yml"
play "$ROOT/ansible/playbooks/site.yml" | tee "$WORK/run1.log"
for n in "${NODES[@]}"; do
  if forwards "$n" && [ "$(ready "$n")" = 200 ]; then ok "$n forwards A -> B and /ready is 200"; else fail "$n does not forward or is not ready"; fi
  serving "$n" && ok "$n: gRPC health says SERVING (causeway ctl health)" || fail "$n: gRPC health: $(ctl "$n" health 2>&1)"
  if ctl "$n" list --owner sync/lab | grep -q 'GlobalNetworkPolicy .*from-the-sync .*sync/lab'; then
    ok "$n holds the sync's policy from-the-sync, owner sync/lab"
  else
    fail "$n lacks the sync's policy: $(ctl "$n" list 2>&1 | head -5)"
  fi
  u=$(ps -o user= -p "$(apid "$n")")
  [ "$u" = nobody ] && ok "$n: the appliance runs as nobody" || fail "$n: the appliance runs as $u"
done

echo "== site.yml again: nothing changes"
play "$ROOT/ansible/playbooks/site.yml" | tee "$WORK/run2.log"
if recap "$WORK/run2.log" | grep -qv 'changed=0'; then fail "second run changed something: $(recap "$WORK/run2.log")"; else ok "second run: changed=0 on both nodes and the control host"; fi
[ "$(recap "$WORK/run2.log" | grep -c "^$CONTROL ")" = 1 ] && ok "the second run played the sync role on $CONTROL" || fail "the sync role was not played"

echo "== --check --diff on a changed variable"
n=${NODES[0]}
cfg=/run/causeway/lab/$n/node/etc/causeway/causeway.yaml
before=$(sha256sum "$cfg"); pid=$(apid "$n")
play "$ROOT/ansible/playbooks/site.yml" --check --diff -e '{"appliance_worker_batch": 32}' | tee "$WORK/check.log"
recap "$WORK/check.log" | grep -q 'changed=[1-9]' && grep -q '^+  batch: 32' "$WORK/check.log" && ok "--check reports the change (batch: 64 -> 32)" || fail "--check did not report the change"
[ "$(sha256sum "$cfg")" = "$before" ] && [ "$(apid "$n")" = "$pid" ] && ok "--check altered nothing (config, process)" || fail "--check altered something"

echo "== a bad value is refused by causeway run --check"
if play "$ROOT/ansible/playbooks/site.yml" -l "$n" -e '{"appliance_worker_batch": 0}' >"$WORK/bad.log" 2>&1; then
  fail "a batch of 0 was accepted"
else
  grep -q 'workers.batch: 0 is out of range' "$WORK/bad.log" && ok "the play failed naming workers.batch" || fail "the failure does not name workers.batch: $(grep -m3 -i 'fatal\|msg' "$WORK/bad.log")"
fi
[ "$(sha256sum "$cfg")" = "$before" ] && [ "$(apid "$n")" = "$pid" ] && forwards "$n" && ok "the running appliance is untouched and forwards" || fail "the bad value touched the running appliance"

echo "== upgrade.yml: one node at a time under a ping stream"
# A new build: the same program with a byte appended (an ELF ignores it),
# so the role sees a changed artifact.
cp "$CW" "$WORK/causeway" && printf '\0' >>"$WORK/causeway"
for n in "${NODES[@]}"; do
  ip netns exec "$n-a" ping -i 0.02 -W 1 10.2.0.2 >"$WORK/ping-$n.log" 2>&1 &
  pings+=($!)
done
sleep 1
play "$ROOT/ansible/playbooks/upgrade.yml" | tee "$WORK/upgrade.log"
sleep 1
for p in "${pings[@]}"; do kill -INT "$p" 2>/dev/null; done
wait "${pings[@]}" 2>/dev/null || true
pings=()
grep -c 'TASK \[causeway.edge.appliance : Install the causeway binary from the built artifact\]' "$WORK/upgrade.log" | grep -qx 2 && ok "upgrade ran node by node" || fail "upgrade did not run per node"
grep -c 'RUNNING HANDLER \[causeway.edge.appliance : Drain causeway before its restart\]' "$WORK/upgrade.log" | grep -qx 2 && ok "upgrade drained each node before its restart" || fail "upgrade did not drain each node"
for n in "${NODES[@]}"; do
  cmp -s "$WORK/causeway" "/run/causeway/lab/$n/node/usr/local/bin/causeway" && ok "$n runs the new binary" || fail "$n was not upgraded"
  sent=$(grep -oE '[0-9]+ packets transmitted' "$WORK/ping-$n.log" | grep -oE '^[0-9]+')
  got=$(grep -oE '[0-9]+ received' "$WORK/ping-$n.log" | grep -oE '^[0-9]+')
  echo "upgrade: $n: ${sent:-?} pings at 20 ms, $(( ${sent:-0} - ${got:-0} )) lost during its restart"
  grep -q 'drain: health and /ready say NOT_SERVING' "/run/causeway/lab/$n/node/var/log/causeway.log" && ok "$n's old appliance logged its drain" || fail "$n's appliance never drained"
  forwards "$n" && [ "$(ready "$n")" = 200 ] && serving "$n" && ok "$n forwards, is ready and SERVING after the upgrade" || fail "$n is not healthy after the upgrade"
done

echo "ansible lab: $passed passed, $failed failed"
[ "$failed" = 0 ]
