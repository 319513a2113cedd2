
/**
 * Where the agent lives on a host, and the two files that make it start by
 * itself. `netfleet bootstrap` writes exactly these; an image builder who
 * copies them into an image gets hosts that enroll on first boot:
 *
 *   /opt/netfleet/agent.mjs        the agent, one self-contained JS file (esbuild bundle)
 *   /opt/netfleet/node             a Node >= 22 binary, only when the host has none
 *   /etc/netfleet/agent.json       the agent's config (@netfleet/agent/config), mode 0600 (holds the join token)
 *   /etc/systemd/system/netfleet-agent.service   the unit (enabled: multi-user.target)
 *
 * Without systemd (containers, the namespace tests) the agent runs detached
 * with a pidfile (/run/netfleet-agent.pid, log /var/log/netfleet-agent.log),
 * started by the bundle itself: `node agent.mjs start-detached ...`.
 */
export const REMOTE = {
  dir: "/opt/netfleet",
  agent: "/opt/netfleet/agent.mjs",
  node: "/opt/netfleet/node",
  configDir: "/etc/netfleet",
  config: "/etc/netfleet/agent.json",
  unitName: "netfleet-agent.service",
  unit: "/etc/systemd/system/netfleet-agent.service",
  pidfile: "/run/netfleet-agent.pid",
  log: "/var/log/netfleet-agent.log",
} as const;

/**
 * How the host starts the agent: `node` is the host's Node (>= 22) or
 * REMOTE.node. `supervise` (bundle-entry.ts) runs `config-run FILE` as its
 * child and does an agent upgrade's swap and revert around it; it passes
 * SIGTERM on. The first two words are the bundle's own command prefix (the
 * detached path runs `start-detached`, `stop-detached` with them).
 */
export function agentExecArgv(node: string): string[] {
  return [node, REMOTE.agent, "supervise", REMOTE.config];
}

/**
 * The agent's systemd unit (systemd.service(5), systemd.exec(5),
 * systemd.kill(5), systemd.resource-control(5)), started with `node`. The one
 * source of the agent's unit: bootstrap and `--image-root` write this text,
 * and packaging/systemd/netfleet-agent.service is it rendered for
 * `/opt/netfleet/node` (a unit test keeps the two equal;
 * `sh scripts/node.sh packages/controller/src/bootstrap/layout.ts agent` prints it).
 *
 * Type=notify: ready once the first local pass has put the VM port rules in
 * (agent/systemd.ts); ordered before libvirtd. Runs as root with a bounding
 * set of what its commands need (below), on a read-only system where it may
 * write only its run dir (/run/netfleet), its state dir
 * (/var/lib/netfleet-agent), /opt/netfleet (an agent upgrade stages the new
 * bundle beside the old one) and /proc/sys/net (sysctl -w net.*).
 * `node` must be a plain absolute path (SAFE_PATH in remote-command.ts).
 */
export function renderUnit(node: string): string {
  return `# Written by netfleet bootstrap; the same file ships in host images and as
# packaging/systemd/netfleet-agent.service. Rendered by layout.ts: edit there.
[Unit]
Description=netfleet agent: enrolls with the site's controller and keeps this host converged
Documentation=https://github.com/netfleet/netfleet
Wants=network-online.target
After=network-online.target openvswitch-switch.service ovs-vswitchd.service
# Before the guests: libvirtd autostarts domains, and a VM port must not carry a frame before
# its rules exist. The VM bridges fail closed (OVS fail_mode=secure) whatever the order; this
# order keeps the guests' first frames from being dropped: the agent reports ready (Type=notify)
# once its first local pass has put the rules in.
Before=libvirtd.service virtqemud.service libvirt-guests.service
ConditionPathExists=${REMOTE.config}
# A crash loop stops after 20 starts in 10 minutes (systemctl reset-failed to try again).
StartLimitIntervalSec=600
StartLimitBurst=20

[Service]
Type=notify
NotifyAccess=all
TimeoutStartSec=120
ExecStart=${agentExecArgv(node).join(" ")}
# SIGTERM goes to the main process only: it stops the agent, which leaves the host as it is
# (bridges, flows, nftables, libvirt networks) and resyncs when it comes back; what is left in
# the unit (its dnsmasq and audit captures) gets SIGKILL once the main process is gone, and the
# next start brings dnsmasq back (its leases are in the state dir).
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=15
Restart=on-failure
RestartSec=5

# Files: the whole system read-only (ProtectSystem=strict), but for these.
RuntimeDirectory=netfleet
RuntimeDirectoryMode=0755
# Kept when the agent stops, as without systemd: dnsmasq's files, the VM hosts' lease tables and
# the libvirt network files there are the next agent's starting point.
RuntimeDirectoryPreserve=yes
StateDirectory=netfleet-agent
StateDirectoryMode=0700
ReadWritePaths=${REMOTE.dir} /proc/sys/net
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# Not ProtectProc=invisible: the agent must see its dnsmasq, which runs as the dnsmasq user.

# Privileges: root (ovsdb's socket, libvirt's, /proc/sys and dnsmasq's start want uid 0), with
# no more than these capabilities:
#   CAP_NET_ADMIN         ip link/addr/route, nft, sysctl net.*, nflog captures, dnsmasq's ARP
#   CAP_NET_RAW           ping (the management move's check), dnsmasq's ICMP probe, tcpdump
#   CAP_NET_BIND_SERVICE  dnsmasq on ports 53 and 67
#   CAP_SETUID CAP_SETGID dnsmasq and tcpdump drop to their own accounts
#   CAP_CHOWN CAP_FOWNER  dnsmasq's lease and log files handed to its account (chown, chmod)
#   CAP_DAC_READ_SEARCH   reading those files back (mode 0640, owned by dnsmasq)
#   CAP_KILL              SIGHUP/SIGTERM to dnsmasq and tcpdump, which run as other users
# Not CAP_SYS_ADMIN, CAP_SYS_MODULE (the kernel loads bonding, 8021q, nf_tables itself),
# CAP_SYS_PTRACE, CAP_DAC_OVERRIDE, CAP_SYS_RAWIO, CAP_MKNOD, CAP_SETPCAP, ...
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER CAP_DAC_READ_SEARCH CAP_KILL
AmbientCapabilities=
NoNewPrivileges=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
# Not MemoryDenyWriteExecute=yes: V8 compiles JavaScript to machine code at run time.
# AF_NETLINK: iproute2, nft, nflog; AF_UNIX: ovsdb, libvirt, systemd-notify; AF_PACKET: tcpdump.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`;
}

// `node layout.ts agent`: prints the unit as packaging/systemd ships it (for /opt/netfleet/node).
if (import.meta.main && process.argv[2] === "agent") process.stdout.write(renderUnit(REMOTE.node));
