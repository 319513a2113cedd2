#!/bin/bash
# Captures the firewall fixtures of nft.test.ts from nft 1.0.6 in a scratch
# network namespace (nothing outside it is touched): the table nftRuleset
# makes of gateway-spec.json (print-ruleset.ts), then that table after each
# hand edit the drift check must see, a foreign ruleset beside it, and
# `ip -j addr show dev wan0`. Run as root from the repository:
#   bash packages/agent/src/resources/__fixtures__/nft/capture-gateway.sh
set -eu
ROOT=$(cd "$(dirname "$0")/../../../../../.." && pwd)
cd "$(dirname "$0")"
NS=nfscratch-cap-$$
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
n() { ip netns exec "$NS" "$@"; }
n ip link add wan0 type veth peer name wan0-peer
n ip addr add 203.0.113.5/24 dev wan0
n ip addr add 198.18.0.9/15 dev wan0
n ip link set wan0 up
n ip -j addr show dev wan0 > gateway-wan0-addr.json
RULESET=$(sh "$ROOT/scripts/node.sh" print-ruleset.ts)
printf '%s' "$RULESET" > gateway-ruleset.nft
apply() { printf '%s' "$RULESET" | n nft -f -; }
snap() {  # snap <name>: the table as the agent reads it (text, terse: no set elements) and as JSON
  n nft -t list table inet netfleet > "gateway-$1.nft"
  n nft -j list table inet netfleet > "gateway-$1.json"
}
apply; snap applied
# dnsmasq adding a resolved address, and `update` refreshing one: no drift (dynamic elements are not compared)
n nft add element inet netfleet dns_9a2a437a32e5 '{ 192.0.2.99 }'; snap dynamic
apply; n nft insert rule inet netfleet forward iifname "bond0.1081" accept; snap inserted
apply; n nft flush chain inet netfleet prerouting; snap flushed
apply; n nft chain inet netfleet forward '{ policy drop; }'; snap policy
apply; n nft delete element inet netfleet allow_tcp '{ 10.81.0.13 . 203.0.113.20 . 80 }'; snap element
apply; n nft add element inet netfleet allow_all_udp '{ 10.81.0.11 . 0.0.0.0/0 }'; snap extra-element
apply; n nft delete rule inet netfleet out_service handle "$(n nft -a list chain inet netfleet out_service | sed -n 's/.*ip daddr .*goto drop_service # handle \([0-9]*\)$/\1/p')"; snap deny-deleted
# A foreign ruleset beside ours: iptables-nft as Docker leaves it (FORWARD policy drop, DOCKER-USER,
# docker0-scoped drops), a VPN table with an unscoped reject, and a host firewall whose input drops
# by policy but accepts our interfaces.
apply
n nft -f - <<'NFT'
table ip filter {
  chain FORWARD { type filter hook forward priority filter; policy drop;
    jump DOCKER-USER
    jump DOCKER-ISOLATION-STAGE-1
    oifname "docker0" ct state established,related accept
    iifname "docker0" oifname != "docker0" accept
  }
  chain DOCKER-USER { }
  chain DOCKER-ISOLATION-STAGE-1 {
    iifname "docker0" oifname != "docker0" jump DOCKER-ISOLATION-STAGE-2
  }
  chain DOCKER-ISOLATION-STAGE-2 {
    oifname "docker0" drop
  }
}
table inet vpn {
  chain forward_vpn { type filter hook forward priority 10; policy accept;
    ct state invalid drop
    jump vpn_guard
  }
  chain vpn_guard {
    ip daddr 10.0.0.0/8 reject
  }
}
table inet hostfw {
  chain input { type filter hook input priority filter; policy drop;
    iifname "lo" accept
    iifname { "gw-secure", "gw-service", "gw-datain" } accept
  }
}
NFT
n nft -j list ruleset > gateway-foreign-ruleset.json
n nft flush ruleset
n nft -j list ruleset > gateway-empty-ruleset.json
# a VXLAN backend: our table beside a VXLAN device's source filter of ours (vxlan-interface-filter.ts) and a
# foreign table of the same shape without our mark (still a foreign drop)
apply
n nft -f - <<'NFT'
table inet netfleet-vx-secure {
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport 4789 @th,96,24 0x13d9 ip saddr != { 10.99.0.1, 10.99.0.2 } counter drop comment "netfleet-owner=lab"
	}
}
table inet vxguard {
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport 4789 ip saddr != 10.99.0.1 drop comment "made by hand"
	}
}
NFT
n nft -j list ruleset > gateway-vxlan-ruleset.json
