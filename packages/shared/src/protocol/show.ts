import { z } from "zod";
import { DNS_LABEL } from "../names.ts";
import { CountersSummary } from "./counters.ts";

export * from "./counters.ts";

/**
 * `netfleet show HOST` on the wire: the controller asks one agent
 * (`nf.<site>.show.<host>`, subjects.ts showSubject; request/reply, like
 * check mode) what it sees on its host right now, and the agent answers
 * with a HostView: what it read, read-only, with the tools the resources
 * observe with (`ip -s -details -json link`, `ovs-vsctl --format=json list`,
 * `ovs-ofctl dump-flows`, `virsh net-list`/`net-dumpxml`, `nft -j list
 * table inet netfleet`, the lease files). New message kinds in protocol
 * 1.2: an older agent has no responder, and the request fails with "no
 * responders" (the controller says the agent is older or not connected).
 *
 * Sizes are bounded so that a reply stays under nats-server's default
 * max_payload (1 MiB): SHOW_LIMITS; the agent cuts longer lists and says so
 * in `problems`.
 */

const dnsLabel = z.string().regex(DNS_LABEL);
const hash = z.string().regex(/^[0-9a-f]{64}$/);
const timestamp = z.iso.datetime({ offset: true });
const name = z.string().max(256);
const count = z.number().int().min(0);

/** How many items of each list a HostView carries at most (the agent cuts, and says so in `problems`). */
export const SHOW_LIMITS = { links: 1024, bridges: 128, ports: 2048, flows: 2000, networks: 256, leases: 4096, setElements: 4096, counters: 512, problems: 64 } as const;

/** Interface counters (`ip -s -json link`: stats64), since the device was created. */
export const LinkCounters = z.strictObject({
  rxBytes: count,
  rxPackets: count,
  rxErrors: count,
  rxDropped: count,
  txBytes: count,
  txPackets: count,
  txErrors: count,
  txDropped: count,
});

/** One kernel link (`ip -s -details -json link show`, `ip -json addr show`). */
export const ShowLink = z.strictObject({
  name,
  /** `linkinfo.info_kind` (bond, vlan, veth, tun, openvswitch, ...); null for a plain device. */
  kind: z.string().max(64).nullable(),
  mtu: count,
  up: z.boolean(),
  /** Operational state (`operstate`: UP, DOWN, UNKNOWN, LOWERLAYERDOWN). */
  state: z.string().max(32).optional(),
  mac: z.string().max(64).optional(),
  alias: z.string().max(256).optional(),
  /** The bond or bridge it is enslaved to. */
  master: name.optional(),
  /** A VLAN's parent device. */
  parent: name.optional(),
  /** Global IPv4 addresses, `a.b.c.d/len`. */
  addresses: z.array(z.string().max(64)).max(256),
  bond: z.strictObject({ mode: z.string().max(64), miimon: count, lacpActive: z.boolean().optional() }).optional(),
  vlan: z.strictObject({ id: count, protocol: z.string().max(32) }).optional(),
  /** A bond member's state (`info_slave_data`: state ACTIVE/BACKUP, mii_status UP/DOWN). */
  member: z.strictObject({ state: z.string().max(32).optional(), mii: z.string().max(32).optional() }).optional(),
  counters: LinkCounters.optional(),
});

/** An OVS Interface row of a port. */
export const ShowOvsInterface = z.strictObject({
  name,
  type: z.string().max(64),
  ofport: z.number().int().optional(),
  mac: z.string().max(64).optional(),
  options: z.record(z.string().max(256), z.string().max(1024)),
  /** `external_ids:attached-mac`: the guest NIC's MAC, set by libvirt on a VM's tap. */
  attachedMac: z.string().max(64).optional(),
  /** `external_ids:port-profile` (libvirt: the portgroup's profileid). */
  profile: z.string().max(256).optional(),
  /**
   * The Interface `statistics` column (ovs-vswitchd.conf.db(5)): since the
   * interface was added, refreshed by ovs-vswitchd every
   * `other_config:stats-update-interval` (5 s by default). Seen from the
   * switch: on a VM's tap, `rx` is what the VM sent. Absent unless OVS
   * reports all eight rx/tx packets, bytes, dropped, errors keys for it.
   */
  counters: LinkCounters.optional(),
  /** `link_state` (up, down). */
  linkState: z.string().max(32).optional(),
  /** `admin_state` (up, down). */
  adminState: z.string().max(32).optional(),
  /** `link_resets`: how many times link_state changed. */
  linkResets: count.optional(),
});

/**
 * An OVS bond as `ovs-appctl bond/show` and `lacp/show` print it (OVS 3.1):
 * its LACP status and each member's state.
 */
export const ShowOvsBond = z.strictObject({
  /** `lacp_status`: negotiated, configured (on, no agreement with the partner), off. */
  lacpStatus: z.string().max(32).optional(),
  /** The member `active member mac:` names (none: absent). */
  activeMember: z.string().max(256).optional(),
  members: z
    .array(
      z.strictObject({
        name,
        /** `member NAME: enabled|disabled`: whether it carries traffic. */
        enabled: z.boolean(),
        /** `may_enable:` (carrier up and, with LACP, the partner agrees). */
        mayEnable: z.boolean(),
        /** lacp/show `member: NAME: current attached` words (current, expired, defaulted; attached, detached). */
        lacpStatus: z.array(z.string().max(32)).max(8).optional(),
        /** lacp/show `actor state:` / `partner state:` words (IEEE 802.1AX: activity aggregation synchronized collecting distributing ...). */
        actorState: z.array(z.string().max(32)).max(16).optional(),
        partnerState: z.array(z.string().max(32)).max(16).optional(),
      }),
    )
    .max(64),
});

/** An OVS Port row: its VLAN (`tag` access, `trunks`), bond settings, interfaces. */
export const ShowOvsPort = z.strictObject({
  name,
  tag: z.number().int().optional(),
  trunks: z.array(z.number().int()).max(4096),
  bondMode: z.string().max(64).optional(),
  lacp: z.string().max(32).optional(),
  /** `external_ids:netfleet-owner`: the site that made it. */
  owner: z.string().max(256).optional(),
  interfaces: z.array(ShowOvsInterface).max(64),
  /** A bond's run state (ovs-appctl bond/show, lacp/show); absent when not a bond or not read. */
  bond: ShowOvsBond.optional(),
});

/** One OpenFlow rule with its counters (`ovs-ofctl dump-flows`, ovs-fields(7)). */
export const ShowFlow = z.strictObject({
  table: count,
  priority: count,
  /** Match fields as ovs-ofctl prints them, comma-joined (empty: matches everything). */
  match: z.string().max(2048),
  actions: z.string().max(2048),
  cookie: z.string().max(32).optional(),
  packets: count,
  bytes: count,
});

/** An OVS bridge, its ports, and its OpenFlow rules (when they could be read). */
export const ShowBridge = z.strictObject({
  name,
  datapath: z.string().max(64),
  failMode: z.string().max(32).optional(),
  owner: z.string().max(256).optional(),
  ports: z.array(ShowOvsPort).max(SHOW_LIMITS.ports),
  flows: z.array(ShowFlow).max(SHOW_LIMITS.flows).optional(),
});

/**
 * A VM's port on an OVS bridge (an Interface with `attached-mac`), with the
 * policy its OpenFlow rules hold: the source addresses the rules let it use
 * (priority 210, vm-port-policy.ts PRIORITY.own; 220 for an isolated port), whether it is isolated
 * (its profile, or rules of priority 220), and the packets those rules
 * passed and dropped.
 */
export const ShowVmPort = z.strictObject({
  bridge: name,
  port: name,
  ofport: z.number().int(),
  mac: z.string().max(64),
  profile: z.string().max(256).optional(),
  isolated: z.boolean(),
  /** Source IPv4 addresses its rules allow (IP and ARP), sorted; empty: none yet (no rules, or no lease). */
  addresses: z.array(z.string().max(64)).max(256),
  /** True when the bridge holds rules that match this port's in_port (netfleet's policy is in place). */
  hasRules: z.boolean(),
  /** Packets its allowing rules (to table 1) passed, and that its drop rule (priority 200) dropped. */
  allowedPackets: count,
  droppedPackets: count,
  /** The DHCP lease of its MAC, when this host knows one. */
  lease: z.strictObject({ network: z.string().max(64), ip: z.string().max(64), expires: count }).optional(),
  counters: LinkCounters.optional(),
});

/** A libvirt network (`virsh net-list --all`, `virsh net-dumpxml`). */
export const ShowNetwork = z.strictObject({
  name,
  active: z.boolean(),
  autostart: z.boolean(),
  persistent: z.boolean(),
  bridge: name.optional(),
  forwardMode: z.string().max(64).optional(),
  virtualport: z.string().max(64).optional(),
  owner: z.string().max(256).optional(),
  portgroups: z.array(z.strictObject({ name, default: z.boolean(), profileId: z.string().max(256).optional(), vlan: z.number().int().optional() })).max(256),
});

/** A DHCP lease: the backend's dnsmasq lease file, or a VM host's copy from its backend. */
export const ShowLease = z.strictObject({
  network: z.string().max(64),
  mac: z.string().max(64),
  ip: z.string().max(64),
  /** Epoch seconds; 0: never. */
  expires: count,
  hostname: z.string().max(256).optional(),
  /** `dnsmasq` (this host hands it out) or `from <host>` (a copy of that backend's lease). */
  source: z.string().max(128),
});

/** A set of the table `inet netfleet` and its elements (name sets: with seconds to expiry). */
export const ShowNftSet = z.strictObject({
  name,
  elements: z.array(z.strictObject({ value: z.string().max(512), expiresS: count.optional() })).max(SHOW_LIMITS.setElements),
});

/** A rule of the table `inet netfleet` that counts (`counter packets N bytes M`). */
export const ShowNftCounter = z.strictObject({ chain: name, rule: z.string().max(2048), packets: count, bytes: count });

/** The firewall table `inet netfleet`. */
export const ShowNft = z.strictObject({
  exists: z.boolean(),
  /** The structure hash in netfleet's mark comment; absent on a table netfleet did not write. */
  structure: z.string().max(128).optional(),
  sets: z.array(ShowNftSet).max(64),
  counters: z.array(ShowNftCounter).max(SHOW_LIMITS.counters),
});

/** Everything `show` reports of one host. Sections an agent could not read are absent, and `problems` says why. */
export const HostView = z.strictObject({
  host: dnsLabel,
  links: z.array(ShowLink).max(SHOW_LIMITS.links),
  /** Absent when OVS could not be read. */
  bridges: z.array(ShowBridge).max(SHOW_LIMITS.bridges).optional(),
  vmPorts: z.array(ShowVmPort).max(SHOW_LIMITS.ports),
  /** Absent when libvirt could not be read. */
  networks: z.array(ShowNetwork).max(SHOW_LIMITS.networks).optional(),
  leases: z.array(ShowLease).max(SHOW_LIMITS.leases),
  nft: ShowNft.optional(),
  /** The counters summary (protocol/counters.ts summariseCounters); absent from an agent older than counters. */
  counters: CountersSummary.optional(),
  /** What could not be read (`source`: the command or file), or was cut to SHOW_LIMITS. */
  problems: z.array(z.strictObject({ source: z.string().max(512), error: z.string().max(1000) })).max(SHOW_LIMITS.problems),
  at: timestamp,
});

/** `netfleet show HOST`: the controller asks that host's agent what it sees. Nothing is changed. */
export const ShowRequest = z.strictObject({
  kind: z.literal("show"),
  site: dnsLabel,
  host: dnsLabel,
  /** `counters`: answer with the counters summary only (ShowReply `counters`, no `view`), as `netfleet status` asks. Absent: the whole view. */
  scope: z.literal("counters").optional(),
});

/** The agent's answer: its view (ok), or why it has none (`error`); the revision and hash it runs. */
export const ShowReply = z.strictObject({
  kind: z.literal("show-result"),
  site: dnsLabel,
  host: dnsLabel,
  revision: count,
  hash: hash.nullable(),
  ok: z.boolean(),
  error: z.string().max(2000).optional(),
  view: HostView.optional(),
  /** The answer to scope `counters`: the summary against the agent's earlier read (a whole view carries it as `view.counters`). */
  counters: CountersSummary.optional(),
  at: timestamp,
});

export type LinkCounters = z.output<typeof LinkCounters>;
export type ShowLink = z.output<typeof ShowLink>;
export type ShowOvsInterface = z.output<typeof ShowOvsInterface>;
export type ShowOvsPort = z.output<typeof ShowOvsPort>;
export type ShowOvsBond = z.output<typeof ShowOvsBond>;
export type ShowFlow = z.output<typeof ShowFlow>;
export type ShowBridge = z.output<typeof ShowBridge>;
export type ShowVmPort = z.output<typeof ShowVmPort>;
export type ShowNetwork = z.output<typeof ShowNetwork>;
export type ShowLease = z.output<typeof ShowLease>;
export type ShowNftSet = z.output<typeof ShowNftSet>;
export type ShowNftCounter = z.output<typeof ShowNftCounter>;
export type ShowNft = z.output<typeof ShowNft>;
export type HostView = z.output<typeof HostView>;
export type ShowRequest = z.output<typeof ShowRequest>;
export type ShowReply = z.output<typeof ShowReply>;
