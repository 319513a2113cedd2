#!/bin/bash
# The management-link guard on the real kernel, run by suite.sh (sourced after lib.sh).
# Three hosts, each a network namespace m<X> whose eth0 holds the management address
# 10.98.0.1<n>/24 and the default route via 10.98.0.254, the gateway and controller,
# which is namespace g<X> (a bridge over the far ends p0, p1 of eth0, eth1):
#   (a) mA, kma.json: a bond over eth0+eth1 without management: refused
#   (b) mB, kmb.json: the same with management.address: the address and route move onto bond0
#   (c) mC, kmc.json: members [eth1, eth0] (eth1, the active one, first) and p1 dangles (up,
#       on no bridge): the gateway stops answering through the bond, the move is undone
# The assignments are written by kernel.test.ts (sealed, /xfer/in/mgmt/). Each agent has its
# own run dir (its state: the move record) under /tmp. Records under $OUT/mgmt.
MG=mgmt
mgmt_host() {  # mgmt_host <X> <addr> <dangling-p1: 0|1>
  local h=m$1 g=g$1
  ip netns add $h && ip netns add $g || return 1
  ip -n $h link add eth0 type veth peer name p0 netns $g && ip -n $h link add eth1 type veth peer name p1 netns $g || return 1
  ip -n $g -batch - <<B || return 1
link set lo up
link add gbr type bridge
link set p0 master gbr up
addr add 10.98.0.254/24 dev gbr
link set gbr up
link set p1 up
B
  [ "$3" = 1 ] || ip -n $g link set p1 master gbr || return 1
  ip -n $h -batch - <<B || return 1
link set lo up
link set eth0 up
link set eth1 up
addr add $2/24 dev eth0
route add default via 10.98.0.254 dev eth0
B
  wait_for 10 ip netns exec $h ping -n -c 1 -W 1 10.98.0.254
}
mgmt_state() {  # mgmt_state <X> <label>: what the host holds, and whether the gateway reaches <addr>
  local h=m$1
  rec $MG/$1-$2-addr ip -n $h -json addr show
  rec $MG/$1-$2-route ip -n $h -json route show
  rec $MG/$1-$2-link ip -n $h -details -json link show
}
mgmt_ping() { rec $MG/$1-$2-ping-from-gw ip netns exec g$1 ping -n -c 2 -i 0.3 -W 2 $3; }  # mgmt_ping <X> <label> <addr>
mgmt_agent() {  # mgmt_agent <X> <assignment>
  AGENT_NS=m$1 agent $MG/$1-apply /xfer/in/mgmt/$2 --run-dir /tmp/nfmgmt-$1
  for f in /tmp/nfmgmt-$1/state/management-move*.json; do [ -e "$f" ] && cp "$f" "$OUT/$MG/$1-$(basename "$f")"; done
  ls -A /tmp/nfmgmt-$1/state > $OUT/$MG/$1-state-files.txt 2>&1
}
mkdir -p $OUT/$MG
step "management guard: (a) attack, (b) move, (c) dead path (the three at once: own namespaces and run dirs)"
scenario() {  # scenario <X> <addr> <dangling-p1> <assignment>: set up, record, apply, record
  mgmt_host $1 $2 $3 || { echo "INFRA FAILED: mgmt_host $1" | tee -a "$STEPS" >&2; return 1; }
  mgmt_state $1 before
  mgmt_ping $1 before ${2%/*}
  mgmt_agent $1 $4
  mgmt_state $1 after
  mgmt_ping $1 after ${2%/*}
  return 0
}
MPIDS=
scenario A 10.98.0.11 0 kma.json & MPIDS="$MPIDS $!"
scenario B 10.98.0.12 0 kmb.json & MPIDS="$MPIDS $!"
scenario C 10.98.0.13 1 kmc.json & MPIDS="$MPIDS $!"
for pid in $MPIDS; do wait $pid || INFRA_FAILED=1; done
for x in A B C; do ip netns del m$x; ip netns del g$x; done
step "management guard done"
