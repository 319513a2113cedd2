#!/bin/bash
# Captures the per-VM gateway services fixture of nft-vm-services.test.ts from
# the real nft (1.0.6) in a scratch network namespace (nothing outside it is
# touched): the table nftRuleset makes of gateway-vm-services-spec.json
# (gateway-spec.json with two vmServices on network secure), applied and
# listed as the agent reads it. Run as root from the repository:
#   bash packages/agent/src/resources/__fixtures__/nft/capture-vm-services.sh
set -eu
ROOT=$(cd "$(dirname "$0")/../../../../../.." && pwd)
cd "$(dirname "$0")"
NS=nfscratch-vms-$$
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
n() { ip netns exec "$NS" "$@"; }
RULESET=$(cd "$ROOT/packages/agent" && sh "$ROOT/scripts/node.sh" src/resources/__fixtures__/nft/print-vm-services.ts)
printf '%s' "$RULESET" | n nft -f -
n nft -t list table inet netfleet > gateway-vm-services.nft
n nft -j list table inet netfleet > gateway-vm-services.json
