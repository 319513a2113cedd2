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
#                   203.0.113.1/24 is "the internet" behind kbe's eth2 (no
#                   route back to the VM networks: only masquerade answers)
#   netns p1, p2  = OVS internal ports probe1 (br-secure) and probe2 (br-service)
set -u
. /xfer/guest/lib.sh
mkdir -p $OUT/vmhost $OUT/backend $OUT/traffic $OUT/logs
step "suite start, kernel $(uname -r)"

# ---------------------------------------------------------------- topology
step "topology"
for ns in sw be p1 p2; do infra ip netns add $ns; done
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

# ---------------------------------------------------------------- daemons (kvm1)
step "starting ovsdb-server + ovs-vswitchd (kernel datapath)"
infra start_ovs
step "starting libvirtd"
infra start_libvirtd
step "daemons up"

# ---------------------------------------------------------------- vmhost kvm1
agent vmhost/apply1 /xfer/in/kvm1.json
agent vmhost/apply2 /xfer/in/kvm1.json
step "vmhost captures"
rec vmhost/links ip -details -json link show
rec vmhost/bonding cat /proc/net/bonding/bond0
rec vmhost/ovs-vsctl-show ovs-vsctl show
rec vmhost/ovs-dpctl-show ovs-dpctl show
rec vmhost/ovs-ports ovs-vsctl --format=json -- --columns=name,external_ids list Bridge -- --columns=name,external_ids,tag,trunks list Port
rec vmhost/ovs-br-secure-ports ovs-vsctl list-ports br-secure
rec vmhost/ovs-br-service-ports ovs-vsctl list-ports br-service
rec vmhost/virsh-net-list virsh -q -c qemu:///system net-list --all
for n in secure service; do
  rec vmhost/virsh-net-dumpxml-$n virsh -q -c qemu:///system net-dumpxml $n
  rec vmhost/defined-$n cat /run/netfleet/libvirt/$n.xml
done

# ---------------------------------------------------------------- backend kbe
step "backend (netns be, private mount namespace, no OVS, no libvirtd)"
ip netns exec be unshare -m --propagation private bash /xfer/guest/backend.sh
echo $? > $OUT/backend/script.rc
[ "$(cat $OUT/backend/script.rc)" = 0 ] || INFRA_FAILED=1

# ---------------------------------------------------------------- traffic
step "traffic: probe1 on br-secure (VLAN 1081), probe2 on br-service (VLAN 1082)"
probe() {  # probe <port> <bridge> <netns> <gateway> <addr/len>...
  local port=$1 br=$2 ns=$3 gw=$4 a; shift 4
  ovs-vsctl add-port $br $port -- set Interface $port type=internal || return 1
  ip link set $port netns $ns || return 1
  for a in "$@"; do ip -n $ns addr add $a dev $port || return 1; done
  ip -n $ns link set lo up && ip -n $ns link set $port up && ip -n $ns route add default via $gw
}
# probe1 also holds an address in the service subnet, so that the cross-VLAN ping
# has a route and fails only because VLAN 1081 does not reach the service side.
infra probe probe1 br-secure p1 192.168.128.1 10.81.0.10/24 10.82.0.11/24 192.168.128.10/17
infra probe probe2 br-service p2 192.168.122.1 10.82.0.10/24 192.168.122.10/24
cap() {  # cap <file> <iface> <filter...>: frames the switch port receives (= kvm1 sent), at most 2, at most 40 s
  local f=$1 i=$2; shift 2
  ip netns exec sw timeout 40 tcpdump -i $i -Q in -e -nn -l -c 2 "$@" > $OUT/traffic/$f.txt 2> $OUT/traffic/$f.err &
  echo $! > $OUT/traffic/$f.pid
}
# only the probe's own ARP and ICMP (IPv6 autoconfiguration chatter would fill -c 2)
cap tcpdump-1081-peer0 peer0 vlan 1081 and '(arp or icmp)'
cap tcpdump-1081-peer1 peer1 vlan 1081 and '(arp or icmp)'
wait_for 20 grep -q listening $OUT/traffic/tcpdump-1081-peer0.err
wait_for 20 grep -q listening $OUT/traffic/tcpdump-1081-peer1.err
step "traffic: pings"
# First and alone, so that the VLAN 1081 capture holds this ping's frames.
rec traffic/ping-1081 ip netns exec p1 ping -c 3 -i 0.5 -W 3 10.81.0.254
# The rest are independent of one another: run them side by side (each waits
# on the network far more than it computes).
PIDS=
bg() { rec "$@" & PIDS="$PIDS $!"; }
bg traffic/ping-1082 ip netns exec p2 ping -c 3 -i 0.5 -W 3 10.82.0.254
bg traffic/ping-cross ip netns exec p1 ping -c 3 -i 0.5 -W 1 10.82.0.254
bg traffic/ping-gw-secure ip netns exec p1 ping -c 3 -i 0.5 -W 3 192.168.128.1
bg traffic/ping-gw-service ip netns exec p2 ping -c 3 -i 0.5 -W 3 192.168.122.1
# Through the backend's nftables: service (egress open) is forwarded and
# masqueraded to the internet; secure (allow-list, nothing allowed) is dropped.
bg traffic/ping-internet-service ip netns exec p2 ping -c 2 -i 0.5 -W 3 203.0.113.1
bg traffic/ping-internet-secure ip netns exec p1 ping -c 2 -i 0.5 -W 1 203.0.113.1
bg traffic/dns-service ip netns exec p2 dig +time=3 +tries=1 +short @192.168.122.1 gw.service.ktest.test A
wait $PIDS
rec traffic/neigh-p1 ip -n p1 -json neigh show
rec traffic/sw-route-back ip -n sw route get 192.168.122.10
rec traffic/nft-forward ip netns exec be nft list chain inet netfleet forward
# The tcpdump on the active member has exited after 2 frames; the other one is ended here.
for f in tcpdump-1081-peer0 tcpdump-1081-peer1; do
  wait_for 2 sh -c "! kill -0 $(cat $OUT/traffic/$f.pid)" || kill "$(cat $OUT/traffic/$f.pid)" 2>/dev/null
done
wait

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
