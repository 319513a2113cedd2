import { netnsExec, type LabExec } from "./exec.ts";
import type { Topology, TopoVm } from "./topology.ts";
import { namespaceVms } from "./vms.ts";

/** Link names per namespace, one `ip -json link show` each. */
async function linkNames(x: LabExec, namespaces: string[]): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  await Promise.all(
    namespaces.map(async (ns) => {
      const r = await x.read(["ip", "-n", ns, "-json", "link", "show"]);
      out.set(ns, new Set((JSON.parse(r.stdout || "[]") as { ifname: string }[]).map((l) => l.ifname)));
    }),
  );
  return out;
}

function ipBatch(lines: string[][]): string {
  return lines.map((l) => l.join(" ")).join("\n") + "\n";
}

/** Runs `ip [-n NS] -batch -` when there is anything to do. */
async function runBatch(x: LabExec, ns: string | undefined, lines: string[][]): Promise<void> {
  if (lines.length === 0) return;
  await x.run(["ip", ...(ns ? ["-n", ns] : []), "-batch", "-"], ipBatch(lines));
}

/**
 * Creates the missing veths (one `ip -batch` in the root namespace), then
 * sets every link up and addressed. Returns the VMs whose link was created.
 */
export async function buildLinks(x: LabExec, t: Topology): Promise<{ newVmLinks: Set<string>; renewedNamespaces: Set<string> }> {
  const sw = t.switchNs;
  const backend = t.hosts.find((h) => h.role === "backend");
  const have = await linkNames(x, t.namespaces);
  const has = (ns: string, name: string) => have.get(ns)?.has(name) ?? false;
  const create: string[][] = [];
  const renewedNamespaces = new Set<string>();
  const veth = (nsA: string, a: string, nsB: string, b: string, bOpts: string[] = []) => {
    if (has(nsA, a) && has(nsB, b)) return;
    renewedNamespaces.add(nsA).add(nsB);
    // a half pair cannot exist for a veth; whatever holds the name is not ours to keep
    if (has(nsA, a)) create.push(["-n", nsA, "link", "del", "dev", a]);
    if (has(nsB, b)) create.push(["-n", nsB, "link", "del", "dev", b]);
    create.push(["link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, ...bOpts, "netns", nsB]);
  };
  for (const h of t.hosts) {
    for (const l of h.trunkLinks) veth(h.namespace, l.hostIf, sw, l.switchIf);
    veth(h.namespace, h.mgmtLink.hostIf, sw, h.mgmtLink.switchIf);
  }
  if (backend) veth(backend.namespace, t.inet.hostIf, t.inet.namespace, t.inet.inetIf);
  const newVmLinks = new Set<string>();
  for (const v of namespaceVms(t)) {
    if (!has(v.hostNs, v.hostPort) || !has(v.namespace, v.interface)) newVmLinks.add(v.name);
    veth(v.hostNs, v.hostPort, v.namespace, v.interface, ["address", v.mac]);
  }
  // `ip -batch` takes `-n` only as a global option: run deletions through per-namespace calls
  const deletions = create.filter((l) => l[0] === "-n");
  for (const d of deletions) await x.run(["ip", ...d]);
  await runBatch(x, undefined, create.filter((l) => l[0] !== "-n"));

  const jobs: Promise<void>[] = [];
  const swLines: string[][] = [];
  if (!has(sw, t.mgmtBridge)) swLines.push(["link", "add", t.mgmtBridge, "type", "bridge", "stp_state", "0"]);
  swLines.push(["link", "set", "dev", t.mgmtBridge, "up"]);
  swLines.push(["address", "replace", `${t.controller.address}/${t.controller.prefix}`, "dev", t.mgmtBridge]);
  for (const h of t.hosts) {
    for (const l of h.trunkLinks) swLines.push(["link", "set", "dev", l.switchIf, "up"]);
    swLines.push(["link", "set", "dev", h.mgmtLink.switchIf, "master", t.mgmtBridge], ["link", "set", "dev", h.mgmtLink.switchIf, "up"]);
    const lines: string[][] = h.trunkLinks.map((l) => ["link", "set", "dev", l.hostIf, "up"]);
    lines.push(["link", "set", "dev", h.mgmtLink.hostIf, "up"]);
    if (h.mgmtAddress) lines.push(["address", "replace", h.mgmtAddress, "dev", h.mgmtLink.hostIf]);
    if (h === backend) {
      lines.push(["link", "set", "dev", t.inet.hostIf, "up"]);
      lines.push(["address", "replace", `${t.inet.hostAddress}/${t.inet.prefix}`, "dev", t.inet.hostIf]);
      lines.push(["route", "replace", "default", "via", t.inet.gateway, "dev", t.inet.hostIf]);
    }
    for (const v of namespaceVms(t).filter((v) => v.host === h.name)) lines.push(["link", "set", "dev", v.hostPort, "up"]);
    jobs.push(runBatch(x, h.namespace, lines).then(() => (h.overlay ? x.run(netnsExec(h.namespace, ["ethtool", "-K", h.mgmtLink.hostIf, "tx", "off"])).then(() => undefined) : undefined)));
  }
  jobs.push(runBatch(x, sw, swLines));
  jobs.push(
    runBatch(x, t.inet.namespace, [
      ["link", "set", "dev", t.inet.inetIf, "up"],
      ["link", "set", "dev", "lo", "up"],
      ...t.inet.inetAddresses.map((a) => ["address", "replace", `${a}/${t.inet.prefix}`, "dev", t.inet.inetIf]),
      // the web servers sit beyond the router: reached through the backend's default route
      ...t.inet.web.map((a) => ["address", "replace", `${a}/32`, "dev", "lo"]),
    ]),
  );
  for (const v of namespaceVms(t)) jobs.push(configureVm(x, v));
  const settled = await Promise.allSettled(jobs);
  for (const s of settled) if (s.status === "rejected") throw s.reason;
  return { newVmLinks, renewedNamespaces };
}

/**
 * The VM side: MAC, link up, TX checksum offload off (the netdev datapath
 * drops TCP/UDP with partial checksums from a veth). The address comes
 * later, by DHCP from the backend.
 */
async function configureVm(x: LabExec, v: TopoVm): Promise<void> {
  await runBatch(x, v.namespace, [
    ["link", "set", "dev", v.interface, "address", v.mac],
    ...(v.mtu !== undefined ? [["link", "set", "dev", v.interface, "mtu", String(v.mtu)]] : []),
    ["link", "set", "dev", v.interface, "up"],
  ]);
  await x.run(netnsExec(v.namespace, ["ethtool", "-K", v.interface, "tx", "off"]));
}
