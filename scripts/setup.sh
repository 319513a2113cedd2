#!/bin/sh
# Brings everything netfleet needs onto this machine, idempotently:
# system packages (Debian/apt), a supported Node (>= 22) and the npm packages.
# A second run checks and does nothing.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
NODE_MAJOR_WANTED=24
NODE_MAJOR_MIN=22

say() { printf 'setup: %s\n' "$*" >&2; }

# Debian package -> a command that proves it is there (for non-Debian systems);
# `py:MODULE` instead means a module /usr/bin/python3 must import. python3-scapy
# builds the attack tier's crafted frames (netfleet-lab attack, packages/lab/src/checks/attack.py).
# zsh: the unit test that the generated zsh completion script parses (zsh -n).
# systemd, systemd-container: systemd-analyze verify/security of the shipped units, and systemd-nspawn
# boots the systemd tier's machine (systemd as PID 1) over an overlay of /.
# dpkg-dev: dpkg-shlibdeps, which npm run package (packaging/deb) uses for the packaged Node's Depends.
# graphviz: `dot`, the layout engine behind `netfleet graph --format svg`.
# chromium: the headless browser that the dashboard's lab test loads the page in.
# pmacct: sfacctd/nfacctd, the real sFlow and IPFIX collectors of the sampling lab test.
# iperf3: the traffic tool that measures a VM's bandwidth limit in the lab and kernel tiers.
# ansible, python3-libvirt, python3-lxml: the Ansible playbook the bench races netfleet with
# (openvswitch.openvswitch, community.libvirt) and its lab test.
PACKAGES="openvswitch-switch:ovs-vswitchd dnsmasq-base:dnsmasq nftables:nft nats-server:nats-server
libvirt-daemon:libvirtd libvirt-daemon-driver-qemu:libvirtd libvirt-clients:virsh iproute2:ip
iputils-ping:ping ethtool:ethtool isc-dhcp-client:dhclient tcpdump:tcpdump openssh-server:sshd
qemu-system-x86:qemu-system-x86_64 busybox-static:busybox dnsutils:dig python3-scapy:py:scapy zsh:zsh
systemd:systemd-analyze systemd-container:systemd-nspawn dpkg-dev:dpkg-shlibdeps
graphviz:dot chromium:chromium pmacct:sfacctd iperf3:iperf3
ansible:ansible-playbook python3-libvirt:py:libvirt python3-lxml:py:lxml"

# Whether the proof of an entry (command, or py:MODULE) is there.
present() {
  case "$1" in
    py:*) [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import ${1#py:}" >/dev/null 2>&1 ;;
    *) PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 ;;
  esac
}

system_packages() {
  if [ "${NETFLEET_SKIP_SYSTEM:-}" = 1 ]; then return 0; fi
  if [ -f /etc/debian_version ] && command -v dpkg-query >/dev/null 2>&1; then
    missing=""
    for entry in $PACKAGES; do
      pkg=${entry%%:*}
      status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
      [ "$status" = "install ok installed" ] || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
      say "missing Debian packages:$missing"
      say "run as root, or: sudo apt-get install$missing"
      exit 1
    fi
    say "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    # The lab runs its own OVS, libvirtd and nats-server per host; the
    # packaged system services are not needed and must not hold the ports.
    for svc in nats-server libvirtd; do
      if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
    done
  else
    missing=""
    for entry in $PACKAGES; do
      cmd=${entry#*:}
      present "$cmd" || missing="$missing ${entry%%:*}($cmd)"
    done
    if [ -n "$missing" ]; then
      say "this is not a Debian system; install these yourself (package(command)):$missing"
      exit 1
    fi
  fi
}

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

ensure_node() {
  if command -v node >/dev/null 2>&1 && [ "$(node_major node)" -ge "$NODE_MAJOR_MIN" ]; then return 0; fi
  local_node="$ROOT/.tools/node/bin/node"
  if [ -x "$local_node" ] && [ "$(node_major "$local_node")" -ge "$NODE_MAJOR_MIN" ]; then return 0; fi
  case "$(uname -m)" in
    x86_64) arch=x64 ;; aarch64) arch=arm64 ;;
    *) say "no Node >= $NODE_MAJOR_MIN and no prebuilt Node package for $(uname -m)"; exit 1 ;;
  esac
  command -v npm >/dev/null 2>&1 || { say "npm is needed to fetch Node $NODE_MAJOR_WANTED"; exit 1; }
  say "system Node is $(node -v 2>/dev/null || echo absent); fetching Node $NODE_MAJOR_WANTED from the npm registry (node-linux-$arch)"
  tmp="$ROOT/.tools/tmp"
  rm -rf "$tmp" "$ROOT/.tools/node"; mkdir -p "$tmp"
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_MAJOR_WANTED" >/dev/null)
  tar -xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$tmp"
  mv "$tmp/package" "$ROOT/.tools/node"
  rm -rf "$tmp"
  "$local_node" -v >/dev/null
}

npm_packages() {
  stamp="node_modules/.netfleet-install-stamp"
  if [ -f "$stamp" ] && [ -z "$(find package.json package-lock.json packages/*/package.json -newer "$stamp" 2>/dev/null)" ]; then
    return 0
  fi
  say "installing npm packages"
  PATH="$ROOT/.tools/node/bin:$PATH"
  export PATH
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
  touch "$stamp"
}

# Node's compile cache filled with the CLIs' modules (scripts/compile-cache.mjs), so the first command after
# setup starts as fast as later ones; again only when a source file changed since, or the cache is gone.
compile_cache() {
  stamp="node_modules/.netfleet-compile-cache-stamp"
  cache_root=$(sh "$ROOT/scripts/node.sh" -p 'require("node:path").join(require("node:os").tmpdir(), "node-compile-cache")' 2>/dev/null || true)
  if [ -f "$stamp" ] && [ -n "$cache_root" ] && [ -d "$cache_root" ] && [ -z "$(find packages/*/src -name '*.ts' -newer "$stamp" 2>/dev/null | head -1)" ]; then
    return 0
  fi
  if sh "$ROOT/scripts/node.sh" "$ROOT/scripts/compile-cache.mjs"; then touch "$stamp"; fi
}

system_packages
ensure_node
npm_packages
compile_cache
