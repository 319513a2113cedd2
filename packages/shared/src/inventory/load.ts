import { relative } from "node:path";
import { formatProblem, InventoryError, quoteToken, type InputProblem } from "../errors.ts";
import { DNS_LABEL, isUnicastMac, NETWORK_NAME } from "../names.ts";
import { cidrContains, cidrsOverlap, ipv4ToInt, parseIpv4Cidr, type Ipv4Cidr } from "../ipv4.ts";
import { dotted, SourceFile, type DocPath } from "./source.ts";
import { InventoryFile, UplinkSpec, type GroupSpec, type HostSpec, type NetworkSpec, type InventoryFile as InventoryFileT, type PortSet as PortSetT } from "./schema.ts";
import { zodProblems } from "./problems.ts";
import { listInventoryFiles, readInventoryFile } from "./files.ts";
import { resolvePortSets } from "./ports.ts";
import { checkGateway } from "./check-gateway.ts";
import { checkExternalInterfaces, checkUplink, checkVmPlacement } from "./check-hosts.ts";
import { checkNetworkSpace, checkSiteServers } from "./check-addresses.ts";
import { checkInterfaceNames } from "./check-names.ts";
import { checkUplinkModes } from "./check-uplink.ts";
import type { Host, Inventory, Network, Vm } from "./model.ts";

export interface Ref {
  file: SourceFile;
  path: DocPath;
}

export interface Located<T> {
  name: string;
  value: T;
  ref: Ref;
  /** Where each merged setting came from (hosts: `uplink.mtu`, `reserved_ports`, ...). */
  origin?: Map<string, Ref>;
}

/**
 * Reads every `*.yaml`/`*.yml` file of a site folder, validates it against
 * the schema and the site-wide rules, and returns the merged inventory.
 * Throws `InventoryError` with every problem found, each naming its
 * file, line, column and path.
 */
export function loadInventory(dir: string, options: { cwd?: string } = {}): Inventory {
  const cwd = options.cwd ?? process.cwd();
  const show = (p: string) => relative(cwd, p) || ".";
  const problems: InputProblem[] = [];
  const files = listInventoryFiles(dir, show, problems);
  if (problems.length > 0) throw new InventoryError(problems);

  const parsed: { file: SourceFile; data: InventoryFileT }[] = [];
  for (const path of files) {
    const text = readInventoryFile(path, show, problems);
    if (text === undefined) continue;
    const { file, value, problems: yamlProblems } = SourceFile.parse(show(path), text);
    if (yamlProblems.length > 0) {
      problems.push(...yamlProblems);
      continue;
    }
    if (value === null || value === undefined) continue;
    const result = InventoryFile.safeParse(value);
    if (!result.success) {
      problems.push(...zodProblems(file, [], result.error));
      continue;
    }
    parsed.push({ file, data: result.data });
  }
  if (problems.length > 0) throw new InventoryError(problems);

  const checker = new SiteChecker(show(dir), parsed);
  const inventory = checker.build(dir);
  if (checker.problems.length > 0 || !inventory) throw new InventoryError(sortProblems(checker.problems));
  return inventory;
}

function sortProblems(problems: InputProblem[]): InputProblem[] {
  const unique = [...new Map(problems.map((p) => [formatProblem(p), p])).values()];
  return unique.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
}

/** Site-wide rules that a per-file schema cannot see. */
class SiteChecker {
  readonly problems: InputProblem[] = [];
  private readonly dirName: string;
  private readonly parsed: { file: SourceFile; data: InventoryFileT }[];

  constructor(dirName: string, parsed: { file: SourceFile; data: InventoryFileT }[]) {
    this.dirName = dirName;
    this.parsed = parsed;
  }

  report(ref: Ref, message: string, options: { key?: boolean } = {}): void {
    this.problems.push(ref.file.problem(ref.path, message, options));
  }

  at(ref: Ref, ...more: (string | number)[]): Ref {
    return { file: ref.file, path: [...ref.path, ...more] };
  }

  /** `file:line:col` of a key. */
  where(ref: Ref): string {
    const pos = ref.file.position(ref.path, true);
    return `${ref.file.name}:${pos.line}:${pos.col}`;
  }

  /** Entries of one section across all files; a name defined twice is a problem. */
  private collect<T>(section: "networks" | "groups" | "hosts", nameRule: RegExp, nameHelp: string): Located<T>[] {
    const seen = new Map<string, Located<T>>();
    for (const { file, data } of this.parsed) {
      const entries = (data[section] ?? {}) as Record<string, T>;
      for (const [name, value] of Object.entries(entries)) {
        const ref: Ref = { file, path: [section, name] };
        if (!nameRule.test(name)) {
          this.report(ref, `invalid name ${quoteToken(name)}: ${nameHelp}`, { key: true });
          continue;
        }
        const first = seen.get(name);
        if (first) {
          this.report(ref, `${section.slice(0, -1)} ${quoteToken(name)} is already defined at ${this.where(first.ref)}`, { key: true });
          continue;
        }
        seen.set(name, { name, value, ref });
      }
    }
    return [...seen.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  build(dir: string): Inventory | undefined {
    const siteEntries = this.parsed.filter((p) => p.data.site !== undefined);
    if (siteEntries.length === 0) {
      this.problems.push({ file: this.dirName, line: 1, col: 1, path: "site", message: "no file of this folder defines `site`" });
    }
    for (const extra of siteEntries.slice(1)) {
      this.report({ file: extra.file, path: ["site"] }, `site is already defined at ${this.where({ file: siteEntries[0]!.file, path: ["site"] })}`, { key: true });
    }
    const siteRef: Ref | undefined = siteEntries[0] ? { file: siteEntries[0].file, path: ["site"] } : undefined;
    const site = siteEntries[0]?.data.site;

    const networks = this.collect<NetworkSpec>("networks", NETWORK_NAME, "1-12 of a-z 0-9 -, starting with a letter (it becomes br-<name>)");
    const groups = this.collect<GroupSpec>("groups", DNS_LABEL, "a lowercase DNS label");
    const hostEntries = this.collect<HostSpec>("hosts", DNS_LABEL, "a lowercase DNS label");

    const management = site?.management ? (parseIpv4Cidr(site.management) as Ipv4Cidr) : undefined;
    const resolvedNetworks = this.checkNetworks(networks, management, siteRef, site?.allow_vlan_1 ?? false);
    const hosts = this.resolveHosts(hostEntries, groups, networks, management, siteRef);
    checkVmPlacement(this, networks, hosts, new Set(hostEntries.map((h) => h.name)));
    checkInterfaceNames(this, networks, hosts);
    checkUplinkModes(this, hosts, { management: site?.management, siteRef });
    if (site && siteRef) checkSiteServers(this, { site, siteRef, networks });
    if (site && siteRef) checkGateway(this, { site, siteRef, networks, resolved: resolvedNetworks, hosts });

    if (!site || this.problems.length > 0) return undefined;
    return { dir, site, networks: resolvedNetworks, hosts: hosts.map((h) => h.value) };
  }

  private checkNetworks(networks: Located<NetworkSpec>[], management: Ipv4Cidr | undefined, siteRef: Ref | undefined, allowVlan1: boolean): Network[] {
    const vlans = new Map<number, Ref>();
    const cidrs: { cidr: Ipv4Cidr; ref: Ref; name: string }[] = [];
    const macs = new Map<string, Ref>();
    const out: Network[] = [];

    for (const { name, value: net, ref } of networks) {
      const firstVlan = vlans.get(net.vlan);
      if (firstVlan) this.report(this.at(ref, "vlan"), `VLAN ${net.vlan} is already used by ${dotted(firstVlan.path.slice(0, 2))} at ${this.where(firstVlan)}`);
      else vlans.set(net.vlan, this.at(ref, "vlan"));

      const cidr = parseIpv4Cidr(net.cidr) as Ipv4Cidr;
      for (const other of cidrs) {
        if (cidrsOverlap(cidr, other.cidr)) this.report(this.at(ref, "cidr"), `${net.cidr} overlaps network ${other.name} (${other.cidr.text})`);
      }
      if (management && cidrsOverlap(cidr, management)) {
        this.report(this.at(ref, "cidr"), `${net.cidr} overlaps the management network ${management.text}${siteRef ? ` (${this.where(this.at(siteRef, "management"))})` : ""}`);
      }
      cidrs.push({ cidr, ref: this.at(ref, "cidr"), name });
      checkNetworkSpace(this, { ref, cidr, vlan: net.vlan, allowVlan1, siteRef });

      const inside = (addr: string) => cidrContains(cidr, ipv4ToInt(addr));
      const usable = (addr: string) => {
        const n = ipv4ToInt(addr);
        return cidr.prefix >= 31 || (n !== cidr.first && n !== cidr.last);
      };
      const dhcp = net.dhcp === false ? undefined : net.dhcp;
      const start = dhcp ? ipv4ToInt(dhcp.start) : 0;
      const end = dhcp ? ipv4ToInt(dhcp.end) : -1;
      const inRange = (addr: string) => {
        const n = ipv4ToInt(addr);
        return n >= start && n <= end;
      };
      const range = dhcp ? `${dhcp.start}-${dhcp.end}` : "";
      const gw = net.gateway;
      if (!inside(gw)) this.report(this.at(ref, "gateway"), `gateway ${gw} is outside ${net.cidr}`);
      else if (!usable(gw)) this.report(this.at(ref, "gateway"), `gateway ${gw} is the network or broadcast address of ${net.cidr}`);
      let rangeOk = dhcp !== undefined;
      for (const end_ of dhcp ? (["start", "end"] as const) : []) {
        const addr = dhcp![end_];
        if (!inside(addr)) {
          this.report(this.at(ref, "dhcp", end_), `DHCP range ${end_} ${addr} is outside ${net.cidr}`);
          rangeOk = false;
        } else if (!usable(addr)) {
          this.report(this.at(ref, "dhcp", end_), `DHCP range ${end_} ${addr} is the network or broadcast address of ${net.cidr}`);
          rangeOk = false;
        }
      }
      if (rangeOk && start > end) {
        this.report(this.at(ref, "dhcp", "end"), `DHCP range ends (${dhcp!.end}) before it starts (${dhcp!.start})`);
        rangeOk = false;
      }
      if (rangeOk && inside(gw) && inRange(gw)) this.report(this.at(ref, "gateway"), `gateway ${gw} is inside the DHCP range ${range}`);

      const ips = new Map<string, Ref>();
      const vms: Vm[] = [];
      for (const [vmName, vm] of Object.entries(net.vms).sort(([a], [b]) => (a < b ? -1 : 1))) {
        const vmRef = this.at(ref, "vms", vmName);
        const mac = vm.mac.toLowerCase();
        if (!isUnicastMac(mac)) this.report(this.at(vmRef, "mac"), `${vm.mac} is a multicast MAC address; a VM needs a unicast one`);
        const firstMac = macs.get(mac);
        if (firstMac) this.report(this.at(vmRef, "mac"), `MAC ${mac} is already used at ${this.where(firstMac)}`);
        else macs.set(mac, this.at(vmRef, "mac"));
        if (vm.ip !== undefined) {
          const ipRef = this.at(vmRef, "ip");
          if (!inside(vm.ip)) this.report(ipRef, `static lease ${vm.ip} is outside ${net.cidr}`);
          else if (!usable(vm.ip)) this.report(ipRef, `static lease ${vm.ip} is the network or broadcast address of ${net.cidr}`);
          else if (vm.ip === gw) this.report(ipRef, `static lease ${vm.ip} is the gateway address`);
          else if (rangeOk && inRange(vm.ip)) this.report(ipRef, `static lease ${vm.ip} is inside the DHCP range ${range}`);
          const firstIp = ips.get(vm.ip);
          if (firstIp) this.report(ipRef, `address ${vm.ip} is already leased at ${this.where(firstIp)}`);
          else ips.set(vm.ip, ipRef);
        } else if (!dhcp) {
          this.report(vmRef, `network ${name} has no DHCP: VM ${vmName} needs a static ip`, { key: true });
        }
        if (vm.allow.length > 0 && net.egress !== "allowlist") {
          this.report(this.at(vmRef, "allow"), `allow lists apply only to networks with egress: allowlist (${name} is ${net.egress})`, { key: true });
        } else if (vm.allow.length > 0 && vm.ip === undefined) {
          this.report(this.at(vmRef, "allow"), `the firewall matches allow lists by address: VM ${vmName} needs a static ip`, { key: true });
        }
        vm.extra_addresses.forEach((extra, i) => {
          const exRef = this.at(vmRef, "extra_addresses", i);
          if (!inside(extra)) this.report(exRef, `extra address ${extra} is outside ${net.cidr}`);
          else if (!usable(extra)) this.report(exRef, `extra address ${extra} is the network or broadcast address of ${net.cidr}`);
          else if (extra === gw) this.report(exRef, `extra address ${extra} is the gateway address: no VM may claim it`);
          else if (rangeOk && inRange(extra)) this.report(exRef, `extra address ${extra} is inside the DHCP range ${range}, where dnsmasq may lease it to another VM`);
          else if (extra === vm.ip) this.report(exRef, `extra address ${extra} is this VM's own ip`);
        });
        vms.push({ name: vmName, network: name, mac, ip: vm.ip, host: vm.host, isolated: vm.isolated ?? net.isolated_ports, allow: vm.allow, extra_addresses: [...new Set(vm.extra_addresses)].sort(), groups: [] });
      }
      // A virtual IP may be shared by several VMs (that is its point); it may not be another VM's static lease.
      for (const [vmName, vm] of Object.entries(net.vms)) {
        vm.extra_addresses.forEach((extra, i) => {
          const owner = ips.get(extra);
          if (owner && extra !== vm.ip) this.report(this.at(ref, "vms", vmName, "extra_addresses", i), `extra address ${extra} is a static lease at ${this.where(owner)}`);
        });
      }
      const clusterGroups: Record<string, string[]> = {};
      for (const [group, members] of Object.entries(net.cluster_groups).sort(([a], [b]) => (a < b ? -1 : 1))) {
        const seen = new Set<string>();
        members.forEach((member, i) => {
          const at = this.at(ref, "cluster_groups", group, i);
          if (!net.vms[member]) this.report(at, `no VM ${quoteToken(member)} in network ${name}`);
          else if (seen.has(member)) this.report(at, `VM ${member} is listed twice in cluster group ${group}`);
          seen.add(member);
        });
        clusterGroups[group] = [...seen].filter((m) => net.vms[m]).sort();
        for (const vm of vms) if (seen.has(vm.name)) vm.groups.push(group);
      }

      net.port_forwards.forEach((pf, i) => {
        const pfRef = this.at(ref, "port_forwards", i);
        const target = net.vms[pf.vm];
        if (!target) this.report(this.at(pfRef, "vm"), `no VM ${quoteToken(pf.vm)} in network ${name}`);
        else if (target.ip === undefined) this.report(this.at(pfRef, "vm"), `VM ${pf.vm} has no static ip: a port_forwards entry needs one (port_ranges reach every address, DHCP VMs too)`);
      });

      const dns = net.dns ?? net.egress;
      if (net.egress === "allowlist" && dns === "open" && !net.dns_open_with_allowlist) {
        this.report(this.at(ref, "dns"), `dns: open on an egress: allowlist network lets every name resolve, so DNS itself leads out (a DNS tunnel); leave dns out (it follows egress) or set dns_open_with_allowlist: true`);
      } else if (net.dns_open_with_allowlist && !(net.egress === "allowlist" && dns === "open")) {
        this.report(this.at(ref, "dns_open_with_allowlist"), `dns_open_with_allowlist applies only to a network with egress: allowlist and dns: open (${name} has egress: ${net.egress}, dns: ${dns})`, { key: true });
      }

      out.push({
        name,
        vlan: net.vlan,
        cidr: net.cidr,
        prefix: cidr.prefix,
        gateway: gw,
        mtu: net.mtu ?? 0, // resolved with the hosts (checkGateway)
        ...(dhcp ? { dhcp } : {}),
        router: net.router,
        egress: net.egress,
        dns,
        egress_deny: net.egress_deny,
        gateway_services: resolvePortSets(net.gateway_services),
        audit: net.audit,
        isolated_ports: net.isolated_ports,
        dns_names: net.dns_names,
        vms,
        port_forwards: net.port_forwards,
        port_ranges: net.port_ranges,
        cluster_groups: clusterGroups,
      });
    }
    return out;
  }

  private resolveHosts(
    hosts: Located<HostSpec>[],
    groups: Located<GroupSpec>[],
    networks: Located<NetworkSpec>[],
    management: Ipv4Cidr | undefined,
    siteRef: Ref | undefined,
  ): Located<Host>[] {
    const groupByName = new Map(groups.map((g) => [g.name, g]));
    const networkNames = networks.map((n) => n.name);
    const out: Located<Host>[] = [];
    const addresses = new Map<string, Ref>();
    const macs = new Map<string, Ref>();

    for (const group of groups) {
      group.value.networks?.forEach((n, i) => {
        if (!networkNames.includes(n)) this.report(this.at(group.ref, "networks", i), `no network ${quoteToken(n)} in this site`);
      });
    }

    for (const { name, value: spec, ref } of hosts) {
      // Later sources win: groups in the order listed, then the host itself.
      // Each setting remembers where it came from, so errors point at it.
      const origin = new Map<string, Ref>();
      const merged: Record<string, unknown> = {};
      const uplink: Record<string, unknown> = {};
      const labels: Record<string, string> = {};
      const sources: { settings: GroupSpec; ref: Ref }[] = [];
      (spec.groups ?? []).forEach((g, i) => {
        const group = groupByName.get(g);
        if (!group) this.report(this.at(ref, "groups", i), `no group ${quoteToken(g)} in this site`);
        else sources.push({ settings: group.value, ref: group.ref });
      });
      sources.push({ settings: spec, ref });
      for (const { settings, ref: src } of sources) {
        for (const [key, value] of Object.entries(settings)) {
          if (value === undefined || key === "groups") continue;
          if (key === "uplink") {
            for (const [k, v] of Object.entries(value as object)) {
              uplink[k] = v;
              origin.set(`uplink.${k}`, this.at(src, "uplink", k));
            }
            origin.set("uplink", this.at(src, "uplink"));
          } else if (key === "labels") {
            Object.assign(labels, value);
          } else {
            merged[key] = value;
            origin.set(key, this.at(src, key));
          }
        }
      }

      const role = merged.role as Host["role"] | undefined;
      if (!role) {
        this.report(ref, `host ${name} has no role (set role: vmhost or backend on the host or one of its groups)`, { key: true });
        continue;
      }
      const upl = UplinkSpec.safeParse(uplink);
      if (!upl.success) {
        for (const issue of upl.error.issues) {
          const field = String(issue.path[0] ?? "");
          const fieldRef = origin.get(`uplink.${field}`);
          if (fieldRef) this.report(fieldRef, issue.message.replace(/^Invalid input: /, ""));
          else this.report(ref, `uplink.${field} is required (set it on the host or one of its groups)`, { key: true });
        }
        continue;
      }
      const up = upl.data;
      const networksRef = origin.get("networks");
      let hostNetworks = merged.networks as string[] | undefined;
      if (hostNetworks && networksRef) {
        hostNetworks.forEach((n, i) => {
          if (!networkNames.includes(n)) this.report(this.at(networksRef, i), `no network ${quoteToken(n)} in this site`);
        });
        const dup = hostNetworks.findIndex((n, i) => hostNetworks!.indexOf(n) !== i);
        if (dup >= 0) this.report(this.at(networksRef, dup), `network ${hostNetworks[dup]} is listed twice`);
      }
      if (role === "backend") {
        if (hostNetworks && networksRef) {
          const missing = networkNames.filter((n) => !hostNetworks!.includes(n));
          if (missing.length > 0) this.report(networksRef, `a backend is the gateway of every network; missing ${missing.join(", ")}`);
        }
        hostNetworks = networkNames;
        checkExternalInterfaces(this, { name, ref, merged, origin, up });
      } else {
        if (!hostNetworks || hostNetworks.length === 0) {
          this.report(networksRef ?? ref, `vmhost ${name} carries no networks (set networks: on the host or one of its groups)`, { key: !networksRef });
          hostNetworks = [];
        }
        for (const key of ["external_interface", "external_interfaces", "reserved_ports"]) {
          if (merged[key] !== undefined) this.report(origin.get(key)!, `${key} applies only to a backend`);
        }
      }

      checkUplink(this, up, origin, hostNetworks.map((n) => networks.find((x) => x.name === n)?.value.vlan));

      const address = merged.address as string | undefined;
      if (address !== undefined) {
        const at = origin.get("address")!;
        if (management && !cidrContains(management, ipv4ToInt(address))) {
          this.report(at, `management address ${address} is outside the management network ${management.text}`);
        }
        const first = addresses.get(address);
        if (first) this.report(at, `address ${address} is already used by host ${String(first.path[1])} at ${this.where(first)}`);
        else addresses.set(address, at);
      }
      const mac = (merged.mac as string | undefined)?.toLowerCase();
      if (mac !== undefined) {
        const first = macs.get(mac);
        if (first) this.report(origin.get("mac")!, `MAC ${mac} is already used by host ${String(first.path[1])}`);
        else macs.set(mac, origin.get("mac")!);
      }

      out.push({
        name,
        ref,
        value: {
          name,
          role,
          address,
          mac,
          groups: spec.groups ?? [],
          labels: Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1))),
          networks: [...hostNetworks].sort(),
          uplink: up,
          external_interface: (merged.external_interface as string | undefined) ?? (merged.external_interfaces as string[] | undefined)?.[0],
          external_interfaces: role === "backend" ? ((merged.external_interfaces as string[] | undefined) ?? (merged.external_interface !== undefined ? [merged.external_interface as string] : [])) : [],
          reserved_ports: role === "backend" ? resolvePortSets((merged.reserved_ports as PortSetT[] | undefined) ?? [{ proto: "tcp", ports: [22] }]) : [],
        },
        origin,
      });
    }

    const backends = out.filter((h) => h.value.role === "backend");
    if (hosts.length > 0 && backends.length === 0 && this.problems.length === 0) {
      this.report(hosts[0]!.ref, "the site has no backend host; exactly one host must have role: backend", { key: true });
    }
    for (const extra of backends.slice(1)) {
      this.report(extra.ref, `a site has exactly one backend; ${backends[0]!.name} is already the backend`, { key: true });
    }
    if (hosts.length === 0) {
      this.problems.push({ file: this.dirName, line: 1, col: 1, path: "hosts", message: "the site has no hosts" });
    }
    return out;
  }

}

