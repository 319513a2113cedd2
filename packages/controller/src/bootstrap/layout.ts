import { DNS_LABEL, parseJoinToken } from "@netfleet/shared";

/**
 * Where the agent lives on a host, and the two files that make it start by
 * itself. `netfleet bootstrap` writes exactly these; an image builder who
 * copies them into an image gets hosts that enroll on first boot:
 *
 *   /opt/netfleet/agent.mjs        the agent, one self-contained JS file (esbuild bundle)
 *   /opt/netfleet/node             a Node >= 22 binary, only when the host has none
 *   /etc/netfleet/agent.json       AgentConfig below, mode 0600 (holds the join token)
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

/** /etc/netfleet/agent.json: what `netfleet-agent run --site --nats --token [--name]` takes, as a file. */
export interface AgentConfig {
  site: string;
  nats: string[];
  /** The site's join token `<id>.<secret>` (netfleet token prints it). */
  token: string;
  /** Name to enroll as; absent in images: the hostname's first label (or the management MAC) decides. */
  name?: string;
  /** Default /var/lib/netfleet-agent. */
  stateDir?: string;
  /** Default /run/netfleet. */
  runDir?: string;
}

const NATS_URL = /^(?:nats|tls):\/\/[A-Za-z0-9.-]+:\d{1,5}$/;
const DIR = /^(?:\/[A-Za-z0-9_.@+-]+)+$/;

export class AgentConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentConfigError";
  }
}

/** Validates a parsed agent.json; throws AgentConfigError naming the field. */
export function checkAgentConfig(value: unknown, source: string = REMOTE.config): AgentConfig {
  const bad = (field: string, want: string) => new AgentConfigError(`${source}: ${field}: ${want}`);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new AgentConfigError(`${source}: want a JSON object`);
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v)) if (!["site", "nats", "token", "name", "stateDir", "runDir"].includes(key)) throw bad(key, "unknown key");
  if (typeof v.site !== "string" || !DNS_LABEL.test(v.site)) throw bad("site", "a DNS label");
  if (!Array.isArray(v.nats) || v.nats.length === 0 || !v.nats.every((u) => typeof u === "string" && NATS_URL.test(u))) throw bad("nats", "a list of nats://host:port");
  if (typeof v.token !== "string") throw bad("token", "the site's join token <id>.<secret>");
  try {
    parseJoinToken(v.token);
  } catch (err) {
    throw bad("token", (err as Error).message);
  }
  if (v.name !== undefined && (typeof v.name !== "string" || !DNS_LABEL.test(v.name))) throw bad("name", "a DNS label");
  for (const k of ["stateDir", "runDir"] as const) if (v[k] !== undefined && (typeof v[k] !== "string" || !DIR.test(v[k]))) throw bad(k, "an absolute path");
  const out: AgentConfig = { site: v.site, nats: v.nats as string[], token: v.token };
  if (v.name !== undefined) out.name = v.name as string;
  if (v.stateDir !== undefined) out.stateDir = v.stateDir as string;
  if (v.runDir !== undefined) out.runDir = v.runDir as string;
  return out;
}

/** The argv of `netfleet-agent run` for a config. */
export function runArgs(c: AgentConfig): string[] {
  return [
    "run",
    "--site",
    c.site,
    "--nats",
    c.nats.join(","),
    // One argv word: a token beginning with "-" must not read as an option.
    `--token=${c.token}`,
    ...(c.name ? ["--name", c.name] : []),
    ...(c.stateDir ? ["--state-dir", c.stateDir] : []),
    ...(c.runDir ? ["--run-dir", c.runDir] : []),
  ];
}

export function renderConfig(c: AgentConfig): string {
  return JSON.stringify(checkAgentConfig(c, "agent config"), null, 2) + "\n";
}

/** How the host starts the agent: `node` is the host's Node (>= 22) or REMOTE.node. */
export function agentExecArgv(node: string): string[] {
  return [node, REMOTE.agent, "config-run", REMOTE.config];
}

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
