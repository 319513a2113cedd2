#!/bin/sh
# Captures the fixtures of a device as this release makes it (nolearning, static unicast entries, its
# source filter table) with iproute2 6.1.0 and nftables 1.0.6 on Linux 6.18, in scratch namespaces
# vxf-a (the host) and vxf-b (a sender on its underlay that is no remote). Run as root from this folder.
set -eu
ip netns add vxf-a; ip netns add vxf-b
trap 'ip netns del vxf-a; ip netns del vxf-b' EXIT
ip -n vxf-a link add mgmt0 type veth peer name peer0 netns vxf-b
ip -n vxf-a addr add 10.99.0.1/24 dev mgmt0; ip -n vxf-a link set mgmt0 up
ip -n vxf-b addr add 10.99.0.254/24 dev peer0; ip -n vxf-b link set peer0 up
ip -n vxf-a link add name vx-secure type vxlan id 1081 local 10.99.0.1 dev mgmt0 dstport 4789 nolearning
ip -n vxf-a link set dev vx-secure alias netfleet-owner=lab; ip -n vxf-a link set vx-secure mtu 1450 up
bridge -n vxf-a fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.2
bridge -n vxf-a fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.3
bridge -n vxf-a fdb replace 02:4e:46:00:04:39 dev vx-secure dst 10.99.0.3
bridge -n vxf-a fdb replace 52:54:00:81:0b:01 dev vx-secure dst 10.99.0.2
ip -n vxf-a link add vx-other type vxlan id 7 local 10.99.0.1      # no dstport: the kernel's 8472, not ours
ip netns exec vxf-a nft -f - <<'NFT'
table inet netfleet-vx-secure {
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport 4789 @th,96,24 0x439 ip saddr != { 10.99.0.2, 10.99.0.3 } counter drop comment "netfleet-owner=lab"
	}
}
NFT
# one VXLAN packet into VNI 1081 from 10.99.0.254 (no remote): the filter counts it
ip netns exec vxf-b /usr/bin/python3 -c 'from scapy.all import *; from scapy.layers.vxlan import VXLAN; conf.verb=0; send(IP(src="10.99.0.254",dst="10.99.0.1")/UDP(sport=40000,dport=4789)/VXLAN(vni=1081,flags=8)/Ether(src="52:54:00:fd:99:99",dst="ff:ff:ff:ff:ff:ff")/Raw(b"x"*46))'
ip -n vxf-a -d -j link show > vmhost-link.json
bridge -n vxf-a -j fdb show dev vx-secure > vx-secure-fdb-static.json
ip netns exec vxf-a nft list table inet netfleet-vx-secure > filter-table.nft
ip netns exec vxf-a nft list table inet netfleet-vx-datain > /dev/null 2> filter-missing.stderr || echo $? > filter-missing.rc
# an older release's device: learning, and a frame from a MAC no VM has, unfiltered, teaches it that MAC
ip netns exec vxf-a nft delete table inet netfleet-vx-secure
ip -n vxf-a link set dev vx-secure type vxlan learning
ip netns exec vxf-b /usr/bin/python3 -c 'from scapy.all import *; from scapy.layers.vxlan import VXLAN; conf.verb=0; send(IP(src="10.99.0.254",dst="10.99.0.1")/UDP(sport=40000,dport=4789)/VXLAN(vni=1081,flags=8)/Ether(src="52:54:00:fd:99:99",dst="ff:ff:ff:ff:ff:ff")/Raw(b"x"*46))'
bridge -n vxf-a -j fdb show dev vx-secure > vx-secure-fdb-learned.json
