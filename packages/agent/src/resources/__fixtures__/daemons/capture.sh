#!/bin/bash
# Captures what ovs-vsctl and virsh print when their daemon is not there, with
# the argv the agent's Toolbox builds (prune's observe commands), and,
# for contrast, errors that are NOT "daemon not running". Run as root on a
# machine where neither the default ovsdb-server nor the default libvirtd runs:
#   bash packages/agent/src/resources/__fixtures__/daemons/capture.sh
# Writes <case>.stderr and <case>.rc next to this script.
set -u
cd "$(dirname "$0")"
T=$(mktemp -d /tmp/nfdaemons.XXXXXX)
chmod 755 "$T"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
OVS_COLS=(--format=json -- --columns=_uuid,name,datapath_type,fail_mode,ports,external_ids list Bridge
  -- --columns=_uuid,name,interfaces,tag,trunks,bond_mode,vlan_mode,external_ids list Port
  -- --columns=_uuid,name,type,options,external_ids,ofport,mac_in_use list Interface)
cap() {  # cap <case> <cmd...>   (the subshell keeps bash's own "Alarm clock" notice out)
  local name=$1; shift
  ( "$@" > /dev/null 2> "$name.stderr" < /dev/null; echo $? > "$name.rc" ) 2> /dev/null
}
# A unix socket nobody listens on (a daemon that died and left it), and one
# that listens but only root may open (mode 0600), which user nobody tries.
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$T/stale.sock"
python3 -c 'import os,socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1],0o600); s.listen(5); time.sleep(20)' "$T/root-only.sock" &
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(5); time.sleep(20)' "$T/silent.sock" &
sleep 0.5
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)

# not running: no socket at all (default path, and the agent's --ovs-db / --libvirt-uri)
cap ovs-default-no-socket ovs-vsctl --timeout=30 "${OVS_COLS[@]}"
cap ovs-no-socket ovs-vsctl --db=unix:/nonexistent --timeout=30 "${OVS_COLS[@]}"
cap virsh-default-no-socket virsh -q -c qemu:///system net-list --all --name
cap virsh-no-socket virsh -q -c 'qemu:///system?socket=/nonexistent' net-list --all --name
# not running: a stale socket left behind, nobody listening
cap ovs-stale-socket ovs-vsctl --db=unix:$T/stale.sock --timeout=30 "${OVS_COLS[@]}"
cap virsh-stale-socket virsh -q -c "qemu:///system?socket=$T/stale.sock" net-list --all --name
# NOT "not running": the daemon is there but we may not talk to it, or it does not answer
cap ovs-permission-denied "${nobody[@]}" ovs-vsctl --db=unix:$T/root-only.sock --timeout=30 "${OVS_COLS[@]}"
cap virsh-permission-denied "${nobody[@]}" virsh -q -c "qemu:///system?socket=$T/root-only.sock" net-list --all --name
cap ovs-timeout ovs-vsctl --db=unix:$T/silent.sock --timeout=2 "${OVS_COLS[@]}"
# the temp dir differs per run; keep the fixtures stable
sed -i "s|$T|/tmp/nfdaemons|g" *.stderr
