import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  bridgeName,
  cidrContains,
  ipv4ToInt,
  isIpv4,
  isNatsUrl,
  parseIpv4Cidr,
  uplinkLacp,
  type Host,
  type Inventory,
  type Network,
} from "@netfleet/shared";
import { checkSocketPaths, libvirtPaths, ovsPaths, validateOptions, type LibvirtPaths, type OvsPaths } from "./paths.ts";
import type { LabOptions } from "./types.ts";

/**
 * Everything the lab creates, named and addressed: a pure function of the
 * validated inventory and the lab options, so up, down and status agree on
 * every name without asking the system.
 */
export interface Topology {
  prefix: string;
  runDir: string;
  site: string;
  /**
   * Hash of everything below except the VMs' TCP services (processes the lab
   * restarts at will, not parts it builds): a lab built from a different
   * topology is torn down first, and `netfleet-lab rollout` refuses a site of another one.
   */
  fingerprint: string;
  switchNs: string;
  switchBridge: string;
  switchOvs: OvsPaths;
  /** Linux bridge in the switch namespace for the management network. */
  mgmtBridge: string;
  /**
   * The controller machine: `netfleet serve` (and its nats-server) in the switch namespace,
   * on the site's first NATS address, which must lie in the management network.
   */
  controller: { namespace: string; address: string; prefix: number; port: number; url: string; stateDir: string };
  /** Every VLAN id of the site, trunked on the switch ports. */
  trunks: number[];
  inet: { namespace: string; hostIf: string; inetIf: string; hostAddress: string; inetAddresses: string[]; gateway: string; prefix: number; web: string[]; resolver: string; dir: string };
  hosts: TopoHost[];
  /** The site's networks: name, VLAN id, CIDR and gateway address (on the backend). */
  networks: TopoNetwork[];
  vms: TopoVm[];
  /**
   * Lab fixtures, not inventory VMs: one namespace per VM host plugged into
   * `br-secure` (or the host's first network) with an `attached-mac` the
   * inventory does not know, the way an unmanaged guest NIC appears. The
   * policy treats it as a DHCP VM of that network; the attack tier sends
   * from it.
   */
  strangers: TopoVm[];
  domains: TopoDomain[];
  /** Every namespace of the lab, switch first. */
  namespaces: string[];
}

/**
 * A host of the inventory as the lab builds it: one network namespace wired
 * to the switch by its uplink members (trunks) and a management link, with
 * its own OVS and (VM hosts) libvirtd, and where its agent keeps its files.
 */
export interface TopoHost {
  name: string;
  role: "vmhost" | "backend";
  index: number;
  namespace: string;
  /** Trunk links: host-side name (an uplink member, e.g. eth0) and its peer on the switch. */
  trunkLinks: { hostIf: string; switchIf: string }[];
  mgmtLink: { hostIf: string; switchIf: string };
  /**
   * Present when the host's uplink runs LACP (kernel 802.3ad, or an OVS
   * bond with `lacp` active or passive): the switch side of its trunk links
   * is then one OVS port `port` running LACP active, a bond of the switch
   * ends (balance-tcp) when there are two or more, like a switch's LAG
   * (port-channel) towards a host. Absent: each link is a plain trunk port.
   */
  switchLag?: SwitchLag;
  /** a.b.c.d/len on mgmt0, when the host has an address and the site a management network. */
  mgmtAddress?: string;
  /**
   * Set when the host's uplink mode is vxlan: its networks travel over
   * mgmt0, whose TX checksum offload the lab turns off. Between veths a
   * packet the backend sends into its vxlan device keeps its inner UDP/TCP
   * checksum partial (encapsulated checksum offload) all the way to the VM
   * host, where OVS's userspace datapath reads it from a packet socket as
   * raw bytes and the VM drops it; a real NIC (or the kernel for one that
   * lacks the offload) fills the checksum in on the way out.
   */
  overlay?: "vxlan";
  ovs: OvsPaths;
  libvirt?: LibvirtPaths;
  assignmentFile: string;
  /** The agent's own run dir (dnsmasq configs, pids) and its daemon's pidfile and log. */
  agentDir: string;
}

/** The switch side of a host's LACP uplink (see TopoHost.switchLag). */
export interface SwitchLag {
  /** OVS port name on the switch bridge, `h<index>-lag`. */
  port: string;
  /** The switch always asks (IEEE 802.1AX active), so a passive host still negotiates. */
  lacp: "active";
  /** bond_mode of the switch's bond: balance-tcp needs the negotiated LACP it sets up. */
  bondMode: "balance-tcp";
  /** other_config:lacp-time: fast, LACPDUs every second (a switch's `lacp rate fast`). */
  lacpTime: "fast";
}

/**
 * The switch side a host's uplink needs: a LAG when the host runs LACP on it
 * (uplinkLacp not off, and a bond there: kernel mode always, ovs-trunk with
 * two or more members), else undefined. Pure.
 */
export function switchLagOf(h: Pick<Host, "uplink">, index: number): SwitchLag | undefined {
  const up = h.uplink;
  if (uplinkLacp(up) === "off") return undefined;
  if (up.mode !== "kernel" && up.members.length < 2) return undefined;
  return { port: `h${index}-lag`, lacp: "active", bondMode: "balance-tcp", lacpTime: "fast" };
}

/**
 * A VM of the inventory (or a stranger) as the lab builds it: a network
 * namespace whose `interface` is a veth plugged into its host's network
 * bridge `bridge` as OVS port `hostPort`.
 */
export interface TopoVm {
  name: string;
  host: string;
  hostNs: string;
  network: string;
  bridge: string;
  namespace: string;
  interface: string;
  hostPort: string;
  mac: string;
  /** The inventory's static lease, when it has one; otherwise the VM gets one from the DHCP range. */
  ip?: string;
  gateway: string;
  /** What the VM's DHCP client recorded of its lease (JSON). */
  leaseFile: string;
  /** TCP services the VM runs (port-forward targets), as IP:PORT. */
  services: string[];
  /**
   * The network's MTU when it is not 1500 (a vxlan site's 1450): set on the
   * VM's interface, as a guest applies DHCP option 26. Absent: 1500.
   */
  mtu?: number;
}

/** A network of the inventory as the lab needs it: VLAN, CIDR, gateway address and the VM bridge's name on each host. */
export interface TopoNetwork {
  name: string;
  vlan: number;
  cidr: string;
  gateway: string;
  bridge: string;
}

/**
 * A libvirt domain the lab defines (paused, never booted) on a VM host, on a
 * libvirt network's `portgroup`, with a MAC the inventory does not hold: the
 * agent must see it and leave it alone.
 */
export interface TopoDomain {
  name: string;
  host: string;
  hostNs: string;
  network: string;
  portgroup: string;
  mac: string;
}

/** A locally chosen MAC for the stranger namespace of host number `index` (not in any inventory of ours). */
export function strangerMac(index: number): string {
  const n = index + 1;
  return `52:54:00:fd:${((n >> 8) & 0xff).toString(16).padStart(2, "0")}:${(n & 0xff).toString(16).padStart(2, "0")}`;
}

/** The backend runs no VMs: no libvirtd there (the agent finds nothing of ours where libvirtd does not run). */
export const LIBVIRTD_ON_BACKEND = false;

/**
 * The lab's "internet" (namespace `<prefix>-inet`): the backend's external
 * link `hostIf` (its address `hostAddress`/`prefix`, default route via
 * `gateway`) to `inetIf`, addresses from the documentation ranges (RFC 5737).
 */
export const INET = {
  hostIf: "wan0",
  inetIf: "inet0",
  hostAddress: "203.0.113.1",
  gateway: "203.0.113.254",
  /** The site's upstream resolver (.53), on the backend's external subnet like an ISP's. */
  extra: ["203.0.113.53"],
  /**
   * Web servers beyond the internet router (on the inet namespace's `lo`, /32),
   * not on the backend's external subnet: open egress never reaches that
   * subnet (issue 12), the way a real gateway's neighbours are not the internet.
   */
  web: ["198.51.100.10", "198.51.100.20"],
  resolver: "203.0.113.53",
  prefix: 24,
};

/** The host-side OVS port of a namespace VM: `v-<vm>`, shortened with a hash when longer than 15 bytes. */
export function vmPortName(vm: string): string {
  const name = `v-${vm}`;
  if (name.length <= 15) return name;
  return `v-${vm.slice(0, 8)}-${createHash("sha256").update(vm).digest("hex").slice(0, 4)}`;
}

/** A locally chosen MAC for the paused domain of host number `index`. */
export function domainMac(index: number): string {
  const n = index + 1;
  return `52:54:00:fe:${((n >> 8) & 0xff).toString(16).padStart(2, "0")}:${(n & 0xff).toString(16).padStart(2, "0")}`;
}

/**
 * Everything the lab will create for `inventory`, worked out before anything
 * runs: namespaces, links, bridges, VMs, strangers, paused domains, the
 * controller's address and the paths under `o.runDir`. Pure (reads no file,
 * runs nothing); `fingerprint` changes when any of it changes.
 * @throws Error when the inventory does not fit the lab (a name that clashes
 * with a lab part, a VM port name used twice, site.nats[0] not a plain
 * nats:// address of its own on the management network, a MAC clash) or the
 * options are bad.
 */
export function buildTopology(inventory: Inventory, o: LabOptions): Topology {
  validateOptions(o);
  const ns = (name: string) => `${o.prefix}-${name}`;
  const runDir = o.runDir;
  const hosts: TopoHost[] = [];
  const mgmt = inventory.site.management ? parseIpv4Cidr(inventory.site.management) : undefined;
  if (typeof mgmt === "string") throw new Error(`site.management: ${mgmt}`);
  // backend first: it is configured first and everything else depends on its gateways
  const ordered = [...inventory.hosts].sort((a, b) => Number(a.role !== "backend") - Number(b.role !== "backend") || a.name.localeCompare(b.name));
  ordered.forEach((h: Host, index) => {
    const members = h.uplink.members;
    // A vxlan host has no trunk: its networks travel over mgmt0, the management link.
    if (members.length === 0 && h.uplink.mode !== "vxlan") throw new Error(`host ${h.name}: the lab needs uplink members (the trunk links to the switch)`);
    const hostDir = join(runDir, "hosts", h.name);
    const th: TopoHost = {
      name: h.name,
      role: h.role,
      index,
      namespace: ns(h.name),
      trunkLinks: members.map((m, j) => ({ hostIf: m, switchIf: `h${index}-e${j}` })),
      mgmtLink: { hostIf: "mgmt0", switchIf: `h${index}-m` },
      ovs: ovsPaths(join(hostDir, "ovs")),
      assignmentFile: join(runDir, "assignments", `${h.name}.json`),
      agentDir: join(hostDir, "agent"),
    };
    const lag = switchLagOf(h, index);
    if (lag) th.switchLag = lag;
    if (h.address && mgmt) th.mgmtAddress = `${h.address}/${mgmt.prefix}`;
    if (h.uplink.mode === "vxlan") th.overlay = "vxlan";
    if (h.role === "vmhost" || LIBVIRTD_ON_BACKEND) th.libvirt = libvirtPaths(join(hostDir, "libvirt"));
    if (h.role === "backend" && h.external_interface && h.external_interface !== INET.hostIf) {
      throw new Error(`host ${h.name}: the lab wires the backend's internet link as ${INET.hostIf}, the inventory says ${h.external_interface}`);
    }
    hosts.push(th);
  });
  const byName = new Map(hosts.map((h) => [h.name, h]));

  const vms: TopoVm[] = [];
  const networks = [...inventory.networks].sort((a, b) => a.name.localeCompare(b.name));
  for (const n of networks) {
    for (const vm of [...n.vms].sort((a, b) => a.name.localeCompare(b.name))) {
      if (!vm.host) continue;
      const host = byName.get(vm.host);
      if (!host) throw new Error(`VM ${vm.name}: host ${vm.host} is not in the inventory`);
      if (host.role !== "vmhost") throw new Error(`VM ${vm.name}: host ${vm.host} is not a vmhost`);
      const invHost = inventory.hosts.find((h) => h.name === vm.host)!;
      if (!invHost.networks.includes(n.name)) throw new Error(`VM ${vm.name}: host ${vm.host} does not carry network ${n.name}`);
      vms.push({
        name: vm.name,
        host: host.name,
        hostNs: host.namespace,
        network: n.name,
        bridge: bridgeName(n.name),
        namespace: ns(vm.name),
        interface: "eth0",
        hostPort: vmPortName(vm.name),
        mac: vm.mac.toLowerCase(),
        ...(vm.ip ? { ip: vm.ip } : {}),
        gateway: n.gateway,
        leaseFile: join(runDir, "vms", `${vm.name}.lease.json`),
        services: [...new Set(n.port_forwards.filter((pf) => pf.vm === vm.name && pf.proto === "tcp").map((pf) => `0.0.0.0:${pf.port}`))],
        ...(n.mtu !== 1500 ? { mtu: n.mtu } : {}),
      });
    }
  }
  vms.sort((a, b) => a.name.localeCompare(b.name));

  const inventoryMacs = new Set(inventory.networks.flatMap((n) => n.vms.map((v) => v.mac.toLowerCase())));
  const domains: TopoDomain[] = [];
  for (const h of hosts) {
    if (h.role !== "vmhost") continue;
    const invHost = inventory.hosts.find((x) => x.name === h.name)!;
    const network = invHost.networks.includes("secure") ? "secure" : [...invHost.networks].sort()[0];
    if (!network) continue;
    const mac = domainMac(h.index);
    if (inventoryMacs.has(mac)) throw new Error(`lab domain MAC ${mac} of host ${h.name} is used by a VM in the inventory`);
    domains.push({ name: `dom-${h.name}`, host: h.name, hostNs: h.namespace, network, portgroup: "isolated", mac });
  }

  const strangers: TopoVm[] = [];
  for (const h of hosts) {
    if (h.role !== "vmhost") continue;
    const invHost = inventory.hosts.find((x) => x.name === h.name)!;
    const net = invHost.networks.includes("secure") ? "secure" : [...invHost.networks].sort()[0];
    const n = inventory.networks.find((x) => x.name === net);
    if (!n) continue;
    const mac = strangerMac(h.index);
    if (inventoryMacs.has(mac)) throw new Error(`lab stranger MAC ${mac} of host ${h.name} is used by a VM in the inventory`);
    const name = `x-${h.name}`;
    strangers.push({
      name,
      host: h.name,
      hostNs: h.namespace,
      network: n.name,
      bridge: bridgeName(n.name),
      namespace: ns(name),
      interface: "eth0",
      hostPort: vmPortName(name),
      mac,
      gateway: n.gateway,
      leaseFile: join(runDir, "vms", `${name}.lease.json`),
      services: [],
      ...(n.mtu !== 1500 ? { mtu: n.mtu } : {}),
    });
  }

  const switchNs = ns("sw");
  const inetNs = ns("inet");
  const namespaces = [switchNs, inetNs, ...hosts.map((h) => h.namespace), ...vms.map((v) => v.namespace), ...strangers.map((v) => v.namespace)];
  const seen = new Set<string>();
  for (const n of namespaces) {
    if (seen.has(n)) throw new Error(`lab namespace ${n} would be used twice (a host or VM named like a lab part: sw, inet, or a host/VM name clash)`);
    seen.add(n);
  }
  const ports = new Set<string>();
  for (const v of [...vms, ...strangers]) {
    const key = `${v.host}/${v.hostPort}`;
    if (ports.has(key)) throw new Error(`VM port name ${v.hostPort} clashes on host ${v.host}`);
    ports.add(key);
  }

  const natsUrl = inventory.site.nats[0] ?? "";
  // The lab's controller listens on a plain nats:// address it owns on the management network, so a name or tls:// has no place here.
  const url = isNatsUrl(natsUrl) ? new URL(natsUrl) : undefined;
  const natsHost = url?.protocol === "nats:" && isIpv4(url.hostname) ? url.hostname : undefined;
  if (!url || natsHost === undefined || !mgmt || !cidrContains(mgmt, ipv4ToInt(natsHost))) {
    throw new Error(`the lab puts the controller on the management network: site.nats[0] must be nats://<address in ${inventory.site.management ?? "site.management"}>:<port>, not ${JSON.stringify(natsUrl)}`);
  }
  if (hosts.some((h) => h.mgmtAddress?.split("/")[0] === natsHost)) throw new Error(`site.nats[0] ${natsUrl}: that address belongs to a host; the lab's controller needs its own`);

  const topo: Omit<Topology, "fingerprint"> = {
    prefix: o.prefix,
    runDir,
    site: inventory.site.name,
    switchNs,
    switchBridge: "sw0",
    switchOvs: ovsPaths(join(runDir, "switch", "ovs")),
    mgmtBridge: "mgmt0",
    controller: { namespace: switchNs, address: natsHost, prefix: mgmt.prefix, port: Number(url.port), url: natsUrl, stateDir: join(runDir, "controller") },
    trunks: inventory.networks.map((n) => n.vlan).sort((a, b) => a - b),
    inet: {
      namespace: inetNs,
      hostIf: INET.hostIf,
      inetIf: INET.inetIf,
      hostAddress: INET.hostAddress,
      inetAddresses: [INET.gateway, ...INET.extra],
      gateway: INET.gateway,
      prefix: INET.prefix,
      web: INET.web,
      resolver: INET.resolver,
      dir: join(runDir, "inet"),
    },
    hosts,
    networks: networks.map((n) => ({ name: n.name, vlan: n.vlan, cidr: n.cidr, gateway: n.gateway, bridge: bridgeName(n.name) })),
    vms,
    strangers,
    domains,
    namespaces,
  };
  checkSocketPaths(topo);
  return { ...topo, fingerprint: topologyFingerprint(topo) };
}

/** The fingerprint of a topology (see Topology.fingerprint): sha256 of its JSON without the VMs' services, 16 hex digits. */
function topologyFingerprint(t: Omit<Topology, "fingerprint">): string {
  const shape = { ...t, vms: t.vms.map(({ services: _, ...vm }) => vm) };
  return createHash("sha256").update(JSON.stringify(shape)).digest("hex").slice(0, 16);
}

