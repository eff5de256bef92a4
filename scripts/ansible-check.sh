#!/usr/bin/env bash
# The ansible/ collection's checks, as scripts/test.sh runs them: yamllint
# and ansible-lint (production profile) from a venv of pinned versions, and
# the appliance's systemd unit rendered from the role's defaults, verified
# with systemd-analyze verify and scored with systemd-analyze security.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=/opt/causeway/ansible-venv
PINS=(ansible-core==2.18.12 ansible-lint==25.9.2 yamllint==1.37.1)
# Idempotent: install only when a pin is missing.
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qxF -e "${PINS[0]}" ||
   ! "$VENV/bin/pip" freeze | grep -qxF -e "${PINS[1]}" ||
   ! "$VENV/bin/pip" freeze | grep -qxF -e "${PINS[2]}"; then
  "$VENV/bin/pip" install -q "${PINS[@]}"
fi
export PATH="$VENV/bin:$PATH"

# The collection is found as causeway.edge through a collections path of
# one symlink (the playbooks name its roles by their full names).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/collections/ansible_collections/causeway"
ln -s "$PWD/ansible" "$tmp/collections/ansible_collections/causeway/edge"
export ANSIBLE_COLLECTIONS_PATH="$tmp/collections"

echo "-- yamllint"
(cd ansible && yamllint -s .)
echo "-- ansible-lint (production profile)"
(cd ansible && ansible-lint --offline --nocolor -q)

echo "-- the appliance's systemd unit"
for netns in "" /run/netns/svc; do
  unit="$tmp/causeway.service"
  ansible localhost -c local -o -m ansible.builtin.template \
    -a "src=ansible/roles/appliance/templates/causeway.service.j2 dest=$unit mode=0644" \
    -e @ansible/roles/appliance/defaults/main.yml \
    -e @ansible/roles/appliance/vars/main.yml \
    -e appliance_bin=/bin/true -e "appliance_terminator_netns=$netns" >/dev/null
  systemd-analyze verify "$unit"
  score=$(systemd-analyze security --offline=yes --no-pager "$unit" | awk '/Overall exposure level/ {print $(NF-2)}')
  echo "causeway.service (terminator netns: ${netns:-none}): systemd-analyze security exposure $score"
  awk -v s="$score" 'BEGIN { exit !(s + 0 > 0 && s + 0 <= 3.0) }' ||
    { echo "exposure $score is above 3.0: the unit lost some hardening" >&2; exit 1; }
done
echo "-- the sync's systemd unit"
unit="$tmp/causeway-sync.service"
ansible localhost -c local -o -m ansible.builtin.template \
  -a "src=ansible/roles/sync/templates/causeway-sync.service.j2 dest=$unit mode=0644" \
  -e @ansible/roles/sync/defaults/main.yml -e sync_bin=/bin/true >/dev/null
systemd-analyze verify "$unit"
echo "causeway-sync.service: systemd-analyze security exposure $(systemd-analyze security --offline=yes --no-pager "$unit" | awk '/Overall exposure level/ {print $(NF-2)}')"
echo "ansible checks: 5 passed, 0 failed"
