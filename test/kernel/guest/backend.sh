#!/bin/bash
# Backend kbe, run by suite.sh inside netns "be" and a private mount namespace.
# A kernel-mode backend uses neither Open vSwitch nor libvirt, so none runs
# here: tmpfs over /run/openvswitch and /run/libvirt hides kvm1's sockets, as
# on a host where those daemons were never started. The agent's prune
# must see "nothing of ours there", not fail. /run/netfleet (the agent's run
# dir: dnsmasq configs, pids, leases) is the backend's own as well.
# The dnsmasq processes the agent starts keep serving for suite.sh's traffic
# tests; their pids go to $OUT/backend/dnsmasq.pids and suite.sh stops them.
set -u
. /xfer/guest/lib.sh
B=backend
for d in /run/openvswitch /run/libvirt /run/netfleet; do mkdir -p $d && mount -t tmpfs tmpfs $d || exit 1; done

# Proof that neither daemon is reachable here (what the agent will meet).
rec $B/no-ovsdb ovs-vsctl --timeout=5 show
rec $B/no-libvirtd virsh -q -c qemu:///system net-list --all --name
rec $B/sysctl-before sysctl -n net.ipv4.ip_forward
agent $B/apply1 /xfer/in/kbe.json
agent $B/apply2 /xfer/in/kbe.json
# kvm1's document on kbe: refused (it would remove every gateway port, dnsmasq and the nft
# table), and nothing here changed.
HOSTSTATE='ip -details -json link show; ip -json addr show; nft list ruleset; pgrep -a dnsmasq; sysctl -n net.ipv4.ip_forward'
rec $B/state-before-wrong bash -c "$HOSTSTATE"
agent $B/wrong-host /xfer/in/kvm1.json --name kbe
rec $B/state-after-wrong bash -c "$HOSTSTATE"
step "backend captures"
rec $B/links ip -details -json link show
rec $B/addrs ip -json addr show
rec $B/bonding cat /proc/net/bonding/bond0
rec $B/ip_forward sysctl -n net.ipv4.ip_forward
rec $B/nft-table nft list table inet netfleet
rec $B/dnsmasq-ps pgrep -a dnsmasq
cat /run/netfleet/dnsmasq/*.pid > $OUT/$B/dnsmasq.pids 2>/dev/null
exit 0
