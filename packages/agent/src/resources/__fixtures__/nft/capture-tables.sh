#!/bin/bash
# Captures what `nft -j list table inet netfleet` and `nft -j list tables` print for prune
# (no table; one of that name without our mark; ours), in a scratch network namespace (nothing outside it
# is touched). Run as root: bash packages/agent/src/resources/__fixtures__/nft/capture-tables.sh
set -eu
cd "$(dirname "$0")"
NS=nfcap-nft-$$
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
n() { ip netns exec "$NS" "$@"; }
cap() {  # cap <file> <cmd...>: stdout into <file>, stderr into <file>.stderr (when any), rc into <file>.rc
  local f=$1; shift
  set +e; n "$@" > "$f" 2> "$f.stderr"; echo $? > "$f.rc"; set -e
  [ -s "$f.stderr" ] || rm -f "$f.stderr"
  [ "$(cat "$f.rc")" != 0 ] || rm -f "$f.rc"
}
# no table at all
cap table-missing.json nft -j list table inet netfleet
cap tables-none.json nft -j list tables
# a foreign table inet netfleet (same name, no mark) beside another table
n nft -f - <<'NFT'
table inet netfleet {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established accept comment "made by hand"
  }
}
table ip filter {
  chain input {
    type filter hook input priority filter; policy accept;
  }
}
NFT
cap table-foreign.json nft -j list table inet netfleet
n nft delete table inet netfleet
# ours: the table with the structure mark (as nftRuleset writes it, reduced to the marked chain)
n nft -f - <<'NFT'
table inet netfleet {
  set allow_tcp { type ipv4_addr . ipv4_addr . inet_service; flags interval; }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept comment "netfleet structure=0123456789abcdef"
    ct state invalid drop
    counter drop
  }
}
NFT
cap table-ours.json nft -j list table inet netfleet
n nft delete table inet netfleet   # what prune runs (exit 0, no output)
