# The VXLAN overlay on OVS's kernel datapath (sourced by suite.sh while kvm1's
# OVS and libvirtd run; issue 17). Hosts of test/kernel/site-vxlan: kvx1 is
# the initial namespace (the VM host: br-vxnet on the kernel datapath), kvxb
# the netns vxb (the backend: the gateway address on its vxlan device, no
# OVS). The underlay is a veth pair vxu0 (10.97.0.11/24) - vxu1 (vxb,
# 10.97.0.2/24), MTU 1500, where the hosts' tunnels are bound (uplink
# underlay). VMs xa and xb are namespaces plugged into br-vxnet as libvirt
# plugs a tap. kernel.test.ts wrote the assignments to /xfer/in/vxlan
# (compiled from the site; the backend's reduced to its vxlan device and
# gateway address: the ktest backend owns dnsmasq and nft in this guest).
# Recorded under $OUT/vxlan for vxlan-checks.ts; what it started is
# stopped: captures and pings by pid, the namespaces, the bridge, the links.
X=vxlan
XA=52:54:00:97:00:01 XB=52:54:00:97:00:02
step "vxlan: underlay vxu0 - vxu1 (netns vxb), VMs xa xb"
mkdir -p $OUT/$X
infra ip netns add vxb
infra ip -batch - <<'EOT'
link add vxu0 type veth peer name vxu1 netns vxb
addr add 10.97.0.11/24 dev vxu0
link set vxu0 up
EOT
infra ip -n vxb -batch - <<'EOT'
link set lo up
addr add 10.97.0.2/24 dev vxu1
link set vxu1 up
EOT
# xa also holds a foreign address (/32) to send from: the spoofing row.
infra vm_ns xa $XA 10.197.0.1 10.197.0.11/24 10.197.0.98/32
infra vm_ns xb $XB 10.197.0.1 10.197.0.12/24
step "vxlan: first applies (backend in vxb, then kvx1)"
AGENT_NS=vxb agent $X/backend-apply1 /xfer/in/vxlan/kvxb.json
agent $X/vmhost-apply1 /xfer/in/vxlan/kvx1.json
for v in xa:$XA xb:$XB; do infra plug_vm ${v%%:*} br-vxnet ${v#*:}; done
agent $X/vmhost-apply2 /xfer/in/vxlan/kvx1.json
AGENT_NS=vxb agent $X/backend-apply2 /xfer/in/vxlan/kvxb.json  # nothing to do: the idempotence row
agent $X/vmhost-apply3 /xfer/in/vxlan/kvx1.json
rec $X/vmhost-links ip -d -j link show
rec $X/backend-links ip -n vxb -d -j link show
rec $X/backend-addr ip -n vxb -j addr show dev vx-vxnet
rec $X/vmhost-fdb bridge -j fdb show dev vx-vxnet
rec $X/backend-fdb ip netns exec vxb bridge -j fdb show dev vx-vxnet
rec $X/ports ovs-vsctl --timeout=5 list-ports br-vxnet
rec $X/datapath ovs-vsctl --timeout=5 get Bridge br-vxnet datapath_type
rec $X/dpif ovs-appctl dpif/show
rec $X/flows ovs-ofctl -O OpenFlow13 dump-flows br-vxnet --no-stats
step "vxlan: traffic"
# On the wire: the underlay as the backend receives it (VXLAN, decoded), the gateway's inner view.
capture_start vxb $X/wire vxu1 200 udp port 4789
capture_start vxb $X/gw vx-vxnet 200 icmp
infra capture_wait $X/wire $X/gw
rec $X/ping-gw ip netns exec xa ping -n -c 3 -i 0.2 -W 2 10.197.0.1
# MTU accounted: 1422 + 28 = 1450 bytes inside, 1500 on the underlay (its MTU), DF set; one byte more is not sent
rec $X/ping-1450 ip netns exec xa ping -n -c 2 -i 0.2 -W 2 -M do -s 1422 10.197.0.1
rec $X/ping-1451 ip netns exec xa ping -n -c 2 -i 0.2 -W 2 -M do -s 1423 10.197.0.1
# Anti-spoofing over the overlay: xa from an address that is not its own, beside its own-address control
rec $X/ping-spoof ip netns exec xa ping -n -c 3 -i 0.2 -W 1 -I 10.197.0.98 10.197.0.1
rec $X/ping-own ip netns exec xa ping -n -c 3 -i 0.2 -W 1 -I 10.197.0.11 10.197.0.1
sleep 1
stop_capture $X/wire $X/gw
rec $X/dp-flows ovs-appctl dpctl/dump-flows
step "vxlan: stopping"
for v in xa xb; do ovs-vsctl --timeout=5 --if-exists del-port br-vxnet vnet-$v; ip netns del $v; done
ip link del vxu0 2>/dev/null
ip link del vx-vxnet 2>/dev/null
ovs-vsctl --timeout=5 --if-exists del-br br-vxnet
virsh -q -c qemu:///system net-destroy vxnet > /dev/null 2>&1
virsh -q -c qemu:///system net-undefine vxnet > /dev/null 2>&1
ip netns del vxb
step "vxlan: done"
