
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

/** How the host starts the agent: `node` is the host's Node (>= 22) or REMOTE.node. */
export function agentExecArgv(node: string): string[] {
  return [node, REMOTE.agent, "config-run", REMOTE.config];
}

/** The systemd unit that starts the agent at boot with `node` (Type=notify: ready once the VM port rules are in). */
export function renderUnit(node: string): string {
  return `# Written by netfleet bootstrap; the same file ships in host images.
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

[Service]
Type=notify
NotifyAccess=all
TimeoutStartSec=120
ExecStart=${agentExecArgv(node).join(" ")}
# SIGTERM leaves the host as it is; the agent resyncs when it comes back.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`;
}
