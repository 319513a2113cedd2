/** Where a lab lives and what it is built from. */
export interface LabOptions {
  /** Site folder to build, e.g. `inventories/lab`. */
  inventoryDir: string;
  /** Namespace prefix, e.g. `nf`: every namespace is `<prefix>-<name>`. */
  prefix: string;
  /** All state of this lab (OVS dbs, libvirt dirs, logs, lab.json), e.g. `/run/netfleet-lab/nf`. */
  runDir: string;
  /**
   * A checkout whose product (`netfleet`, `netfleet-agent`) the lab runs, found through its
   * packages (e.g. an older agent); absent: the packages @netfleet/lab depends on.
   */
  repoRoot?: string;
  /**
   * How the agents get their assignments: `nats` (default) — `netfleet serve` on the
   * controller machine, agents that enroll, a `netfleet rollout`; `file` — each agent
   * daemon follows an assignment file the lab writes.
   */
  control?: "nats" | "file";
}

/**
 * What `lab status` reports, read live from the machine (namespaces,
 * processes, OVS, libvirt, leases) and the lab's state file. `up` is false
 * when the lab was never built or a part of it is missing or dead (`problems`).
 */
export interface LabStatus {
  up: boolean;
  prefix: string;
  runDir: string;
  hosts: LabHost[];
  vms: LabVm[];
  /** Each network's gateway on the backend: address, MAC and the interface that holds them (read live). */
  gateways?: LabGateway[];
  /** The lab's "internet": its namespace, the backend's address there, web servers, resolver and the names it answers. */
  inet?: { namespace: string; backendAddress: string; web: string[]; resolver: string; names: Record<string, string> };
  /**
   * The switch's LAGs (one per host whose uplink runs LACP), read live:
   * absent when the lab has none.
   */
  lags?: LabLag[];
  /** The lab's controller and how to use `netfleet` against it (absent when the lab was never built). */
  controller?: LabController;
  /** The site folder the lab runs: the one `up` built, or the one `netfleet-lab rollout` last rolled out. */
  inventoryDir?: string;
  /** What is missing or dead when `up` is false. */
  problems?: string[];
}

/**
 * The lab's controller machine (`netfleet serve` and its nats-server in the
 * switch namespace) and a `netfleet` command line that reaches it: run as
 * root, append a command (`status`, `rollout DIR --check`, ...).
 */
export interface LabController {
  namespace: string;
  /** The controller's state dir (secrets, credentials, serve's recorded NATS URLs). */
  stateDir: string;
  /** The NATS URL serve listens on, reachable from inside `namespace`. */
  nats: string;
  /** argv prefix of `netfleet` against this lab: `ip netns exec <ns> env NETFLEET_STATE_DIR=<dir> <node> <netfleet bin>`. */
  argv: string[];
  /** The same as one line a POSIX shell reads back as `argv`. */
  command: string;
}

/** A host of a running lab: its namespace, management address, OVS database socket and run dir, and libvirt URI (VM hosts). */
export interface LabHost {
  name: string;
  role: "vmhost" | "backend";
  namespace: string;
  mgmtAddress?: string;
  ovsDb: string;
  ovsRundir: string;
  /** The agent's run dir on this host (dnsmasq configs, daemon pid and log). */
  agentDir: string;
  libvirtUri?: string;
}

/** A network's gateway as the backend holds it. */
export interface LabGateway {
  network: string;
  vlan: number;
  ip: string;
  /** Lowercase MAC of the interface holding `ip`. */
  mac: string;
  /** The backend's namespace and the interface (an OVS internal port, `gw-<network>`) there. */
  namespace: string;
  interface: string;
}

/** A VM of a running lab, read live: where it is plugged, its MAC and (when it holds one) its address. */
export interface LabVm {
  name: string;
  host: string;
  network: string;
  namespace: string;
  /** VM-side interface name (`eth0`); for a libvirt domain the guest NIC has no name here. */
  interface: string;
  /** Host-side OVS port: `v-<vm>` for a namespace VM, libvirt's `vnetN` for a running domain ("" when not running). */
  hostPort: string;
  mac: string;
  ip?: string;
  /**
   * `namespace`: an inventory VM as a namespace; `domain`: a libvirt domain of
   * the lab; `stranger`: a lab fixture namespace whose MAC the inventory does
   * not know (one per VM host, plugged into `br-secure`).
   */
  kind: "namespace" | "domain" | "stranger";
  state?: string;
  /** What the VM's DHCP client got: router, DNS server and the server that answered. */
  lease?: { ip: string; router: string; dns: string; domain: string; server: string; seconds: number };
}

/** The switch side of a host's LACP uplink, as `ovs-appctl bond/show` (or `lacp/show`) reads it. */
export interface LabLag {
  host: string;
  /** The switch's port: `h<n>-lag` (a bond), or the one link of a one-member LAG. */
  port: string;
  /** `negotiated`, `configured` (LACP runs, no partner heard) or `off`. */
  lacpStatus: string;
  /** The switch ends of the host's links and whether each carries traffic. */
  members: { name: string; enabled: boolean }[];
}
