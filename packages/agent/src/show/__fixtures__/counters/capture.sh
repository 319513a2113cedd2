#!/bin/sh
# How the files here were captured (Debian 12, Open vSwitch 3.1.0, userspace datapath), as root:
# one private OVS in namespace cntcap: br-a holds bond0 (a1, a2; balance-tcp, lacp=active), a VM-like port
# vnet0 (its peer eth0 in namespace cntvm, 10.99.0.2) and internal port inta (10.99.0.1); br-b holds the
# partner bond1 (b1, b2, LACP active) and, for bond-show-all/lacp-show-all, bond2 (c1, c2; active-backup, no LACP).
# Teardown: kill the two daemons by their pid files, ip netns del cntcap cntvm.
set -e
D=/tmp/cnt-cap/ovs; mkdir -p $D; cd /tmp/cnt-cap
ip netns add cntcap; ip netns add cntvm
ovsdb-tool create $D/conf.db /usr/share/openvswitch/vswitch.ovsschema
ip netns exec cntcap ovsdb-server $D/conf.db --remote=punix:$D/db.sock --pidfile=$D/ovsdb-server.pid --unixctl=$D/ovsdb-server.ctl --detach --log-file=$D/ovsdb.log
V="ovs-vsctl --db=unix:$D/db.sock"; A="ovs-appctl -t $D/ovs-vswitchd.ctl"
$V --no-wait init
ip netns exec cntcap env OVS_RUNDIR=$D ovs-vswitchd unix:$D/db.sock --pidfile=$D/ovs-vswitchd.pid --unixctl=$D/ovs-vswitchd.ctl --detach --log-file=$D/vswitchd.log
$V add-br br-a -- set bridge br-a datapath_type=netdev
$V add-br br-b -- set bridge br-b datapath_type=netdev
for i in 1 2; do ip -n cntcap link add a$i type veth peer name b$i; ip -n cntcap link set a$i up; ip -n cntcap link set b$i up; done
$V add-bond br-a bond0 a1 a2 bond_mode=balance-tcp lacp=active -- set port bond0 external_ids:netfleet-owner=cnt
$V add-bond br-b bond1 b1 b2 bond_mode=balance-tcp lacp=active
ip -n cntcap link add vnet0 type veth peer name eth0 netns cntvm
ip -n cntcap link set vnet0 up
$V add-port br-a vnet0 -- set interface vnet0 external_ids:attached-mac=aa:bb:cc:00:00:01
ip -n cntvm link set eth0 up; ip -n cntvm addr add 10.99.0.2/24 dev eth0; ip netns exec cntvm ethtool -K eth0 tx off
$V add-port br-a inta -- set interface inta type=internal
ip -n cntcap link set inta up; ip -n cntcap addr add 10.99.0.1/24 dev inta
STATS="$V --format=json --columns=name,statistics,link_state,admin_state,link_resets list Interface"
sleep 3; ip netns exec cntvm ping -c 5 -i 0.2 -q 10.99.0.1; sleep 6
$A bond/show > bond-show.txt; $A lacp/show > lacp-show.txt                   # both bonds negotiated
ip -n cntcap link set b2 down; sleep 6                                          # member a2's partner end down
$A bond/show > bond-show-down.txt; $A lacp/show > lacp-show-down.txt; $STATS > iface-stats-down.json
ip netns exec cntvm ping -c 3 -q 10.99.0.1; sleep 6; $STATS > iface-stats-before.json
ip netns exec cntvm ping -c 20 -i 0.05 -s 1000 -q 10.99.0.1; sleep 6           # known traffic: 20 x 1042-byte frames
$STATS > iface-stats-after.json                                                 # (stats refresh every 5 s)
ip -n cntcap link set b1 down; sleep 4                                          # both members down
$A bond/show bond0 > bond-show-alldown.txt; $A lacp/show bond0 > lacp-show-alldown.txt
ip -n cntcap link set b1 up; ip -n cntcap link set b2 up
for i in 1 2; do ip -n cntcap link add c$i type veth peer name d$i; ip -n cntcap link set c$i up; ip -n cntcap link set d$i up; done
$V add-bond br-b bond2 c1 c2 bond_mode=active-backup; sleep 6
$A bond/show > bond-show-all.txt; $A lacp/show > lacp-show-all.txt            # three bonds, one without LACP
# The whole-show captures beside this folder (../cntcap*, by ../capture.ts inside namespace cntcap, bond2 and br-empty
# removed first, with paths {"ovsDb":"/tmp/cnt-cap/ovs/db.sock","ovsRundir":"/tmp/cnt-cap/ovs",...}; no libvirtd, no nft table):
#   cntcap           both bonds negotiated, every member enabled
#   cntcap-down      then: b2 down (a2 and b2 disabled), cntvm's eth0 down, 10 broadcasts from inta flooded (vnet0 tx_dropped +10)
#   cntcap-mtu-before  then: eth0 and b2 up again, vnet0 mtu_request=1000, one round of 10 pings -s 1400 from inta to 10.99.0.2
#   cntcap-mtu-after   then: 10 more such pings: each 1442-byte echo reply is dropped at vnet0 (rx_dropped +10)
