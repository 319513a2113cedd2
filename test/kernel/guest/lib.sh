# Helpers for the guest scripts (sourced). Everything the tests assert on is
# written under /xfer/out; the vitest suite reads it after the VM powered off.
# /xfer/env.sh (written by the harness) gives NODE (node binary) and REPO.
. /xfer/env.sh
OUT=/xfer/out
STEPS=$OUT/steps.log
INFRA_FAILED=0

up() { cut -d' ' -f1 /proc/uptime; }
step() { echo "[$(up)s] $*" | tee -a "$STEPS"; echo "[guest $(up)s] $*" > /dev/console; }
# infra <cmd...>: a set-up step that must work; the suite's exit code reports it.
infra() { "$@" || { echo "INFRA FAILED: $*" | tee -a "$STEPS" >&2; INFRA_FAILED=1; }; }

# rec <name> <cmd...>: runs the command, keeps stdout, stderr and exit code as
# <name>.out / <name>.err / <name>.rc under $OUT (name may contain a folder).
rec() {
  local name=$1; shift
  mkdir -p "$(dirname "$OUT/$name")"
  "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" < /dev/null
  echo $? > "$OUT/$name.rc"
}

# agent <name> <assignment> [apply options...]: one agent run with the product CLI,
# exactly as an operator runs it; --json output in <name>.json. The agent is told
# which host it is (--name <the file's base name>: kvm1.json -> kvm1) unless the
# options say (--name, --any-host); it refuses another host's assignment. With
# AGENT_NS set it runs in that network namespace.
agent() {
  local name=$1 assignment=$2 who=(); shift 2
  case " $* " in *" --name "*|*" --any-host "*) ;; *) who=(--name "$(basename "$assignment" .json)") ;; esac
  mkdir -p "$(dirname "$OUT/$name")"
  local t0; t0=$(up)
  ${AGENT_NS:+ip netns exec "$AGENT_NS"} "$NODE" "$REPO/packages/agent/src/cli.ts" apply --assignment "$assignment" --json "${who[@]}" "$@" \
    > "$OUT/$name.json" 2> "$OUT/$name.err" < /dev/null
  local rc=$?
  echo $rc > "$OUT/$name.rc"
  step "agent $name: exit $rc in $(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}') s"
}

# wait_for <seconds> <cmd...>: polls (every 0.2 s) until the command succeeds.
wait_for() {
  local limit=$1 i; shift
  for i in $(seq 1 $((limit * 5))); do "$@" > /dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

# Open vSwitch with a private, empty database under /run/openvswitch (the host's
# conf.db shows through the overlay and must not be used). OVS 3.1 counts 0 CPUs
# while CLOCK_MONOTONIC < 10 s and then drops every upcall: vswitchd starts in a
# time namespace whose monotonic clock is 100000 s ahead.
start_ovs() {  # start_ovs [--no-vswitchd]; logs in $OVSLOG (default /var/log/openvswitch)
  local d=/run/openvswitch l=${OVSLOG:-/var/log/openvswitch}
  mkdir -p $d $l
  ovsdb-tool create $d/conf.db /usr/share/openvswitch/vswitch.ovsschema || return 1
  ovsdb-server $d/conf.db --remote=punix:$d/db.sock --pidfile=$d/ovsdb-server.pid \
    --unixctl=$d/ovsdb-server.ctl --log-file=$l/ovsdb-server.log --detach || return 1
  ovs-vsctl --no-wait init || return 1
  [ "${1:-}" = --no-vswitchd ] && return 0
  unshare --time --monotonic 100000 --fork \
    ovs-vswitchd unix:$d/db.sock --pidfile=$d/ovs-vswitchd.pid --log-file=$l/ovs-vswitchd.log --detach || return 1
  wait_for 30 ovs-appctl -t ovs-vswitchd version
}

# libvirtd with the network driver usable and no emulator to probe: without
# /usr/bin/qemu-system-* the qemu driver starts in ~2 s instead of probing
# capabilities under emulation (minutes). Private state dirs; the host's
# libvirt definitions that show through the overlay are hidden.
start_libvirtd() {
  local d
  rm -f /usr/bin/qemu-system-*
  for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt/qemu; do
    mkdir -p $d && mount -t tmpfs tmpfs $d || return 1
  done
  grep -q '^libvirt-qemu:' /etc/passwd || echo 'libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin' >> /etc/passwd
  grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >> /etc/group
  grep -q '^kvm:' /etc/group || echo 'kvm:x:64056:' >> /etc/group
  printf 'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\nsecurity_driver = "none"\nstdio_handler = "file"\n' > /etc/libvirt/qemu.conf
  printf 'log_outputs="3:file:/run/libvirt/libvirtd.log"\n' > /etc/libvirt/libvirtd.conf
  libvirtd -d --pid-file=/run/libvirt/libvirtd.pid || return 1
  wait_for 60 virsh -q -c qemu:///system net-list --all
}

stop_pidfile() {  # stop_pidfile <file>: ends a daemon this script started
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null
  wait_for 10 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null
}

# ------------------------------------------------------------------ VMs as namespaces
# vm_ns <ns> <mac> <gateway> <addr/len>...: a "VM": network namespace <ns>
# holding eth0, the guest's NIC, with the VM's MAC and addresses and a default
# route via <gateway>. The host end, vnet-<ns>, stays down and unplugged until
# plug_vm (a domain's NIC exists before libvirt plugs its tap).
vm_ns() {
  local ns=$1 mac=$2 gw=$3 a; shift 3
  ip netns add $ns && ip link add vnet-$ns type veth peer name eth0 address $mac netns $ns || return 1
  { for a in "$@"; do echo "addr add $a dev eth0"; done; printf 'link set lo up\nlink set eth0 up\nroute add default via %s\n' $gw; } | ip -n $ns -batch -
}

# plug_vm <ns> <bridge> <mac>: what libvirt does when a domain's <interface
# type='network'> on an openvswitch virtualport starts: one ovs-vsctl
# transaction adding the tap (here the veth's host end) with the guest MAC in
# external_ids:attached-mac and the interface and domain UUIDs, then the link
# up at the bridge's MTU.
plug_vm() {
  local ns=$1 br=$2 mac=$3 port=vnet-$1 iface vm
  iface=$(cat /proc/sys/kernel/random/uuid) vm=$(cat /proc/sys/kernel/random/uuid)
  ovs-vsctl --timeout=5 -- --if-exists del-port $port -- add-port $br $port \
    -- set Interface $port "external-ids:attached-mac=\"$mac\"" \
    -- set Interface $port "external-ids:iface-id=\"$iface\"" \
    -- set Interface $port "external-ids:vm-id=\"$vm\"" \
    -- set Interface $port external-ids:iface-status=active || return 1
  ip link set $port mtu "$(cat /sys/class/net/$br/mtu)" && ip link set $port up
}

# Captures: <file> is relative to $OUT, or an absolute path (a busy capture
# is better kept on the guest's tmpfs than written line by line over 9p).
cap_path() { case $1 in /*) echo "$1" ;; *) echo "$OUT/$1" ;; esac; }

# capture_start <ns> <file> <iface> <count> <filter...>: tcpdump in netns <ns>
# (inbound frames, epoch timestamps, MACs, no name lookups), at most <count>
# frames and 300 s, into <file>.txt; its pid in <file>.pid.
capture_start() {
  local ns=$1 f; f=$(cap_path $2); local i=$3 c=$4; shift 4
  mkdir -p "$(dirname "$f")"
  ip netns exec $ns timeout 300 tcpdump -i $i -Q in -tt -e -nn -l -c $c "$@" > $f.txt 2> $f.err &
  echo $! > $f.pid
}

# capture_wait <file>...: until each of these captures listens (at most 30 s each).
capture_wait() {
  local f
  for f in "$@"; do wait_for 30 grep -q listening "$(cap_path $f).err" || { echo "capture $f not listening" >&2; return 1; }; done
}

gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_pids <pid>...: SIGINT (ping and tcpdump print their counts), SIGKILL after 5 s.
stop_pids() {
  local pid
  for pid in "$@"; do kill -INT $pid 2>/dev/null; done
  for pid in "$@"; do wait_for 5 gone $pid || kill -9 $pid 2>/dev/null; done
}

# stop_capture <file>...: ends captures (those that saw their count have ended already).
stop_capture() {
  local f pids=
  for f in "$@"; do pids="$pids $(cat "$(cap_path $f).pid" 2>/dev/null)"; done
  stop_pids $pids
}

stamp() { date +%s.%N; }  # the clock tcpdump's -tt prints
