#!/bin/sh
# Rebuilds test/nats/upgrade/wire-1.0.tar.gz: the parts of commit 5a82fb1
# (the first tree that speaks protocol 1.0, see old-tree.ts) that the
# mixed-fleet tests run, without that tree's tests and captured fixtures.
# A committed snapshot, because CI clones may be shallow or carry no tags.
# Deterministic: sorted names, owner 0, mtime 0, gzip -n.
set -eu
cd "$(dirname "$0")/../../.."
commit=$(git rev-parse --verify 5a82fb1^{commit})
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$commit" packages/shared packages/controller packages/agent packages/lab \
  test/nats/sim-agent.ts test/nats/sim-facts.ts inventories/lab package.json tsconfig.json | tar -x -C "$tmp"
find "$tmp" -name __fixtures__ -type d -prune -exec rm -rf {} +
find "$tmp" -name '*.test.ts' -type f -delete
tar -c -C "$tmp" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 . | gzip -9n > test/nats/upgrade/wire-1.0.tar.gz
echo "test/nats/upgrade/wire-1.0.tar.gz from $commit"
