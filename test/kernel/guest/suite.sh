#!/bin/bash
# The kernel-tier scenario, run as root inside the VM (Debian kernel: bonding,
# 8021q and the OVS kernel datapath). Started by test/kernel/harness.ts; the
# assignments compiled from test/kernel/site are in /xfer/in/. Records results
# under /xfer/out for test/kernel/kernel.test.ts; exits non-zero only when the
# test set-up itself failed (what the agent did is for the tests to judge).
#
# Topology (veth pairs stand in for NICs and cables):
#   initial netns = VM host kvm1: eth0, eth1 (bond members); OVS + libvirtd
#   netns be      = backend kbe:  eth0, eth1 (bond members), eth2 (external,
#                   203.0.113.2/24); own mount namespace, no OVS, no libvirtd
#   netns sw      = top-of-rack switch: VLAN-filtering bridge swbr, ports peer0,
#                   peer1 (cables to kvm1) and pbe0, pbe1 (to kbe) trunking
#                   1081/1082; swbr.1081 10.81.0.254/24 and swbr.1082
#                   10.82.0.254/24 are the switch's own addresses; pbe2
#                   203.0.113.1/24 is kbe's upstream router behind its eth2,
#                   198.51.100.1 "the internet" beyond it (no route back to
#                   the VM networks: only masquerade answers); open egress
#                   reaches the internet, never kbe's own external subnet
#   netns kv1, kv2 = VMs on br-secure (VLAN 1081): kv1 isolated, kv2 not;
#   netns ks1     = a VM on br-service (VLAN 1082) whose MAC the inventory does
#                   not know: its address is the lease the backend gave it
#   netns kv2m    = a second MAC on kv2's NIC (macvlan): kv2 spoofing its MAC
#   Each VM's NIC is a veth whose host end vnet-<vm> kvm1 plugs into the
#   bridge as libvirt plugs a tap (lib.sh plug_vm).
set -u
. /xfer/guest/lib.sh
mkdir -p $OUT/vmhost $OUT/backend $OUT/traffic $OUT/logs
# MACs: the VMs (as in test/kernel/site), kv2's spoofing second MAC, one nobody
# has, and the gateways (compile.ts gatewayMac: 02:4e:46:00 + the VLAN id).
KV1=52:54:00:81:00:11 KV2=52:54:00:81:00:12 KS1=52:54:00:82:00:21 KV2M=52:54:00:81:00:99 UNKNOWN=52:54:00:81:00:77
GW1081=02:4e:46:00:04:39 GW1082=02:4e:46:00:04:3a
step "suite start, kernel $(uname -r)"

# ---------------------------------------------------------------- topology
step "topology"
for ns in sw be; do infra ip netns add $ns; done
infra ip netns exec sw sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.default.arp_ignore=1
# The switch is a learning, VLAN-filtering bridge with one port per cable, as a
# real top-of-rack switch is. (A bond over peer0+peer1 facing kvm1's
# active-backup bond flaked: when the agent takes eth0 down to enslave it, the
# far bond fails over to peer1 while kvm1 keeps eth0 active, and nothing passes.)
infra ip -batch - <<'EOF'
link add eth0 type veth peer name peer0 netns sw
link add eth1 type veth peer name peer1 netns sw
link set eth0 up
link set eth1 up
EOF
# kbe's external interface and its address are the operator's, not netfleet's.
infra ip -n be -batch - <<'EOF'
link add eth0 type veth peer name pbe0 netns sw
link add eth1 type veth peer name pbe1 netns sw
link add eth2 type veth peer name pbe2 netns sw
link set lo up
link set eth0 up
link set eth1 up
addr add 203.0.113.2/24 dev eth2
link set eth2 up
route add default via 203.0.113.1 dev eth2
EOF
infra ip -n sw -batch - <<'EOF'
link add swbr mtu 9000 type bridge vlan_filtering 1 vlan_default_pvid 0
link set peer0 mtu 9000 master swbr up
link set peer1 mtu 9000 master swbr up
link set pbe0 mtu 9000 master swbr up
link set pbe1 mtu 9000 master swbr up
link add link swbr name swbr.1081 type vlan id 1081
link add link swbr name swbr.1082 type vlan id 1082
addr add 10.81.0.254/24 dev swbr.1081
addr add 10.82.0.254/24 dev swbr.1082
addr add 203.0.113.1/24 dev pbe2
addr add 198.51.100.1/32 dev lo
link set swbr up
link set swbr.1081 up
link set swbr.1082 up
link set pbe2 up
link set lo up
EOF
infra ip netns exec sw bridge -batch - <<'EOF'
vlan add dev peer0 vid 1081
vlan add dev peer0 vid 1082
vlan add dev peer1 vid 1081
vlan add dev peer1 vid 1082
vlan add dev pbe0 vid 1081
vlan add dev pbe0 vid 1082
vlan add dev pbe1 vid 1081
vlan add dev pbe1 vid 1082
vlan add dev swbr vid 1081 self
vlan add dev swbr vid 1082 self
EOF
# The VMs' NICs (lib.sh vm_ns): each VM also holds the foreign address it will
# try to send from (/32, so that ping -I can use it): kv1 a free one, kv2 kv3's
# (an inventory VM that is not running), ks1 one outside its lease.
infra vm_ns kv1 $KV1 192.168.128.1 192.168.128.11/17 192.168.128.98/32
infra vm_ns kv2 $KV2 192.168.128.1 192.168.128.12/17 192.168.128.50/32 192.168.128.13/32
infra vm_ns ks1 $KS1 192.168.122.1 192.168.122.150/24 192.168.122.151/32
# kv2m: a second MAC on kv2's NIC (a macvlan moved into its own namespace) with
# kv2's own address: kv2 sending from a MAC that is not its own.
infra ip netns add kv2m
infra ip -n kv2 -batch - <<EOF
link add link eth0 name eth0m address $KV2M type macvlan mode private
link set eth0m netns kv2m
EOF
infra ip -n kv2m -batch - <<'EOF'
addr add 192.168.128.12/17 dev eth0m
link set eth0m up
EOF

# ---------------------------------------------------------------- management guard
# Its own namespaces (guest/management.sh); needs no daemon.
. /xfer/guest/management.sh

# ---------------------------------------------------------------- daemons (kvm1)
step "starting ovsdb-server + ovs-vswitchd (kernel datapath)"
infra start_ovs
step "starting libvirtd"
infra start_libvirtd
step "daemons up"

# ---------------------------------------------------------------- vmhost kvm1: first apply
agent vmhost/apply1 /xfer/in/kvm1.json

# ---------------------------------------------------------------- backend kbe
step "backend (netns be, private mount namespace, no OVS, no libvirtd)"
ip netns exec be unshare -m --propagation private bash /xfer/guest/backend.sh
echo $? > $OUT/backend/script.rc
[ "$(cat $OUT/backend/script.rc)" = 0 ] || INFRA_FAILED=1

# ---------------------------------------------------------------- VM ports before the agent saw them
# The bridges exist (apply1: fail_mode=secure, the agent's baseline only).
# Domains start: libvirt plugs their taps, and the agent has not run for them.
# Each VM sends to its gateway every 50 ms through the whole window (its
# gateway neighbour pinned, so every attempt is an IP frame); the gateway
# counts what arrives, before and after the agent's apply. The other way, the
# switch sends to a MAC nobody has every 100 ms (unknown unicast): kv1 and kv2
# count what reaches them (nothing: no VM port here holds that MAC, and a port
# the agent has not vetted is no destination at all). ks1's lease
# reaches kvm1 as the fleet side writes it (<runDir>/leases/<net>.json).
# The busy files of the window stay on the guest's tmpfs until it is over.
W=/tmp/window
step "VM ports: kv1, kv2 on br-secure, ks1 on br-service, agent not run"
mkdir -p /run/netfleet/leases $W $OUT/window
printf '{"network":"service","host":"kbe","at":%s,"leases":[{"mac":"%s","ip":"192.168.122.150","expires":%s}]}\n' \
  "$(date +%s%3N)" $KS1 $(( $(date +%s) + 43200 )) > /run/netfleet/leases/service.json
capture_start be $W/gw-1081 bond0.1081 50000 ether src $KV1 or ether src $KV2
capture_start be $W/gw-1082 bond0.1082 50000 ether src $KS1
capture_start kv1 $W/at-kv1 eth0 50000 ether dst $UNKNOWN
capture_start kv2 $W/at-kv2 eth0 50000 ether dst $UNKNOWN
infra capture_wait $W/gw-1081 $W/gw-1082 $W/at-kv1 $W/at-kv2
# three domains starting at once
PLUGS=
for vm in "kv1 br-secure $KV1" "kv2 br-secure $KV2" "ks1 br-service $KS1"; do plug_vm $vm & PLUGS="$PLUGS $!"; done
for pid in $PLUGS; do infra wait $pid; done
rec window/flows-br-secure ovs-ofctl -O OpenFlow13 dump-flows br-secure
SENDERS=
sender() {  # sender <vm> <gateway> <gateway MAC>: one echo request every 50 ms, each logged (-D -O)
  ip -n $1 neigh replace $2 lladdr $3 dev eth0 nud permanent
  ip netns exec $1 timeout 300 ping -D -O -n -i 0.05 -c 6000 $2 > $W/send-$1.out 2> $W/send-$1.err &
  SENDERS="$SENDERS $!"
}
sender kv1 192.168.128.1 $GW1081
sender kv2 192.168.128.1 $GW1081
sender ks1 192.168.122.1 $GW1082
infra ip -n sw route add 192.168.128.77/32 dev swbr.1081
infra ip -n sw neigh replace 192.168.128.77 lladdr $UNKNOWN dev swbr.1081 nud permanent
ip netns exec sw timeout 300 ping -n -i 0.1 -c 3000 192.168.128.77 > $W/send-sw.out 2> $W/send-sw.err &
SENDERS="$SENDERS $!"
stamp > $W/senders-start
sleep 3
stamp > $W/apply-start
agent vmhost/apply2 /xfer/in/kvm1.json
stamp > $W/apply-end
# After the apply: until the gateways have seen every VM (at most 20 s), then 1 s more.
seen() { grep -q "$2 >" $W/$1.txt; }
wait_for 20 seen gw-1081 $KV1; wait_for 20 seen gw-1081 $KV2; wait_for 20 seen gw-1082 $KS1
sleep 1
stop_pids $SENDERS
stamp > $W/senders-end
stop_capture $W/gw-1081 $W/gw-1082 $W/at-kv1 $W/at-kv2
cp $W/* $OUT/window/
ip -n kv1 neigh del 192.168.128.1 dev eth0; ip -n kv2 neigh del 192.168.128.1 dev eth0; ip -n ks1 neigh del 192.168.122.1 dev eth0

# ---------------------------------------------------------------- vmhost kvm1: a third apply, and what it left
agent vmhost/apply3 /xfer/in/kvm1.json
step "vmhost captures"
rec vmhost/links ip -details -json link show
rec vmhost/bonding cat /proc/net/bonding/bond0
rec vmhost/ovs-vsctl-show ovs-vsctl show
rec vmhost/ovs-dpctl-show ovs-dpctl show
rec vmhost/ovs-ports ovs-vsctl --format=json -- --columns=name,external_ids,fail_mode list Bridge -- --columns=name,external_ids,tag,trunks list Port -- --columns=name,external_ids,ofport list Interface
rec vmhost/ovs-br-secure-ports ovs-vsctl list-ports br-secure
rec vmhost/ovs-br-service-ports ovs-vsctl list-ports br-service
for br in br-secure br-service; do
  rec vmhost/flows-$br ovs-ofctl -O OpenFlow13 dump-flows $br
done
rec vmhost/virsh-net-list virsh -q -c qemu:///system net-list --all
for n in secure service; do
  rec vmhost/virsh-net-dumpxml-$n virsh -q -c qemu:///system net-dumpxml $n
  rec vmhost/defined-$n cat /run/netfleet/libvirt/$n.xml
done

# ---------------------------------------------------------------- the wrong assignment
# kbe's document on kvm1 (kvm1's on kbe: backend.sh): refused, and nothing on kvm1 changed.
HOSTSTATE='ip -details -json link show; ip -json addr show; ovs-vsctl show; ovs-ofctl -O OpenFlow13 dump-flows br-secure --no-stats; virsh -q -c qemu:///system net-list --all'
rec vmhost/state-before-wrong bash -c "$HOSTSTATE"
agent vmhost/wrong-host /xfer/in/kbe.json --name kvm1
rec vmhost/state-after-wrong bash -c "$HOSTSTATE"

# ---------------------------------------------------------------- traffic
# Every row is a frame sent from a VM (or the switch) and looked for where it
# would land: at the gateways (kbe's bond0.1081/bond0.1082), in the VMs, and on
# the wire (the switch ports facing kvm1's bond members). Attacks sit next to
# their controls: same VM, same port, same target.
step "traffic: captures"
T=traffic
capture_start be $T/gw-1081 bond0.1081 2000 icmp or arp or udp or ip6
capture_start be $T/gw-1082 bond0.1082 2000 icmp or arp or udp or ip6
capture_start kv1 $T/at-kv1 eth0 500 icmp or ether dst $UNKNOWN
capture_start kv2 $T/at-kv2 eth0 500 icmp or ether dst $UNKNOWN
for p in peer0 peer1; do
  capture_start sw $T/wire-$p $p 2000 "(ether src $KV1 or ether src $KV2 or ether src $KS1 or ether src $KV2M) and vlan"
done
infra capture_wait $T/gw-1081 $T/gw-1082 $T/at-kv1 $T/at-kv2 $T/wire-peer0 $T/wire-peer1
step "traffic: frames"
PIDS=
bg() { "$@" & PIDS="$PIDS $!"; }
ping3() { local ns=$1; shift; ip netns exec $ns ping -n -c 3 -i 0.2 -W 2 "$@"; }  # ping3 <netns> [ping options] <target>
kv1_rows() {  # isolated: the gateway by ARP; then, neighbours pinned, a spoofed source and kv2
  rec $T/kv1-own ping3 kv1 192.168.128.1
  rec $T/kv1-neigh ip -n kv1 -json neigh show
  ip -n kv1 neigh replace 192.168.128.1 lladdr $GW1081 dev eth0 nud permanent
  ip -n kv1 neigh replace 192.168.128.12 lladdr $KV2 dev eth0 nud permanent
  rec $T/kv1-spoof-ip ping3 kv1 -I 192.168.128.98 192.168.128.1 &
  rec $T/kv1-to-kv2 ping3 kv1 192.168.128.12 &
  wait
}
kv2_rows() {  # not isolated: the gateway by ARP; then its extra (virtual IP) and a claimed (kv3's) address, kv1, IPv6, a DHCP server's port
  rec $T/kv2-own ping3 kv2 192.168.128.1
  ip -n kv2 neigh replace 192.168.128.1 lladdr $GW1081 dev eth0 nud permanent
  ip -n kv2 neigh replace 192.168.128.11 lladdr $KV1 dev eth0 nud permanent
  rec $T/kv2-extra ping3 kv2 -I 192.168.128.50 192.168.128.1 &
  rec $T/kv2-spoof-ip ping3 kv2 -I 192.168.128.13 192.168.128.1 &
  rec $T/kv2-to-kv1 ping3 kv2 192.168.128.11 &
  rec $T/kv2-ipv6 ping3 kv2 -6 ff02::1%eth0 &
  rec $T/kv2-dhcp-server ip netns exec kv2 python3 /xfer/guest/dhcp-reply.py 192.168.128.12 $KV2 &
  wait
}
ks1_rows() {  # a DHCP VM: its lease, then an address it does not hold
  rec $T/ks1-own ping3 ks1 192.168.122.1
  ip -n ks1 neigh replace 192.168.122.1 lladdr $GW1082 dev eth0 nud permanent
  rec $T/ks1-spoof-ip ping3 ks1 -I 192.168.122.151 192.168.122.1
}
kv2m_rows() {  # kv2's address from another MAC on kv2's port
  ip -n kv2m neigh replace 192.168.128.1 lladdr $GW1081 dev eth0m nud permanent
  rec $T/kv2m-spoof-mac ping3 kv2m 192.168.128.1
}
flood_rows() {  # the switch sends to a MAC no VM port here holds (dropped) and to kv2's (delivered to kv2 only)
  rec $T/flood-unknown ping3 sw 192.168.128.77
  ip -n sw route add 192.168.128.12/32 dev swbr.1081
  ip -n sw neigh replace 192.168.128.12 lladdr $KV2 dev swbr.1081 nud permanent
  rec $T/to-kv2 ping3 sw 192.168.128.12
}
bg kv1_rows
bg kv2_rows
bg ks1_rows
bg kv2m_rows
bg flood_rows
# Through the backend's nftables: service (egress open) is forwarded and
# masqueraded to the internet, but not into kbe's own external subnet (the
# upstream router 203.0.113.1); secure (allow-list, nothing allowed) is dropped.
bg rec $T/ping-internet-service ip netns exec ks1 ping -n -c 2 -i 0.5 -W 3 198.51.100.1
bg rec $T/ping-extsubnet-service ip netns exec ks1 ping -n -c 2 -i 0.5 -W 1 203.0.113.1
bg rec $T/ping-internet-secure ip netns exec kv2 ping -n -c 2 -i 0.5 -W 1 198.51.100.1
bg rec $T/dns-service ip netns exec ks1 dig +time=3 +tries=1 +short @192.168.122.1 gw.service.ktest.test A
wait $PIDS
sleep 0.5
stop_capture $T/gw-1081 $T/gw-1082 $T/at-kv1 $T/at-kv2 $T/wire-peer0 $T/wire-peer1
rec $T/sw-route-back ip -n sw route get 192.168.122.10
rec $T/nft-forward ip netns exec be nft list chain inet netfleet drop_secure
rec $T/nft-drop-service ip netns exec be nft list chain inet netfleet drop_service
wait

# VM bandwidth limits on the kernel datapath: its own bridge and VMs (guest/qos.sh).
. /xfer/guest/qos.sh

# The VXLAN overlay on the kernel datapath: its own hosts, underlay and VMs (guest/vxlan.sh).
. /xfer/guest/vxlan.sh

# ---------------------------------------------------------------- stop what we started
step "stopping dnsmasq (kbe), libvirtd and OVS (kvm1)"
for pid in $(cat $OUT/backend/dnsmasq.pids 2>/dev/null); do
  kill "$pid" 2>/dev/null && { wait_for 5 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null; }
done
rec logs/libvirtd-log cat /run/libvirt/libvirtd.log
stop_pidfile /run/libvirt/libvirtd.pid
stop_pidfile /run/openvswitch/ovs-vswitchd.pid
stop_pidfile /run/openvswitch/ovsdb-server.pid
cp /var/log/openvswitch/*.log $OUT/logs/ 2>/dev/null
dmesg > $OUT/logs/dmesg.txt
rec logs/ps ps -eo pid,comm,args
step "suite end (infra failed: $INFRA_FAILED)"
exit $INFRA_FAILED
