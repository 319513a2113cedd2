/**
 * `netfleet graph`'s picture of the reference and lab sites, in every
 * format, read back by a reader of that format (__fixtures__/pictures.ts:
 * Graphviz's own parser for DOT, an XML parser for the SVG Graphviz drew, a
 * strict reader for Mermaid): every host, NIC, bond, VLAN interface, trunk
 * bridge, patch or gateway port, network bridge, VM, network, the gateway,
 * the exits and the outside is there with its label, and every link.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bridgeName, gatewayPortName, loadInventory, vlanInterfaceName, vxlanInterfaceName, type Inventory } from "@netfleet/shared";
import { readDot, readMermaid, readSvg, type ReadPicture } from "./__fixtures__/pictures.ts";
import { buildGraph, domId, graphId, mermaidId, renderDot, renderMermaid, renderSvg, type GraphModel } from "./index.ts";

const REPO = new URL("../../../..", import.meta.url).pathname;
/** The shipped sites, the lab's VXLAN site, and the lab with sFlow, IPFIX and three mirrors (__fixtures__/sites/flows). */
const SITES = {
  reference: join(REPO, "inventories", "reference"),
  lab: join(REPO, "inventories", "lab"),
  vxlan: join(REPO, "test", "lab", "sites", "vxlan"),
  flows: join(import.meta.dirname, "__fixtures__", "sites", "flows"),
};

/** The element ids the picture of `inv` must hold, derived from the inventory by compile's names. */
function expectedIds(inv: Inventory): string[] {
  const vxlan = inv.hosts.filter((h) => h.uplink.mode === "vxlan");
  const ids: string[] = [...(vxlan.length < inv.hosts.length ? [graphId.switch] : []), ...(vxlan.length ? [graphId.underlay] : [])];
  for (const n of inv.networks) ids.push(graphId.network(n.name));
  for (const m of inv.mirrors ?? []) if (!("vm" in m.destination)) ids.push(graphId.mirrorTarget(m.name));
  for (const c of inv.site.sflow?.collectors ?? []) ids.push(graphId.collector("sflow", c.includes(":") ? c : `${c}:6343`));
  for (const c of inv.site.ipfix?.collectors ?? []) ids.push(graphId.collector("ipfix", c.includes(":") ? c : `${c}:4739`));
  for (const h of inv.hosts) {
    const on = (kind: string, name: string) => graphId.onHost(h.name, kind, name);
    const up = h.uplink;
    const carried = inv.networks.filter((n) => h.role === "backend" || h.networks.includes(n.name));
    ids.push(graphId.host(h.name), ...up.members.map((m) => on("nic", m)));
    if (up.mode === "vxlan") ids.push(on("underlay", "vtep"), ...carried.map((n) => on("vxlan", vxlanInterfaceName(n.name))));
    else if (up.mode === "kernel" || up.members.length >= 2) ids.push(on("bond", up.bond));
    if (up.mode === "kernel") ids.push(...carried.map((n) => on("vlan", vlanInterfaceName(up.bond, n.vlan))));
    else if (up.mode === "ovs-trunk") ids.push(on("trunk", up.trunk_bridge), ...carried.map((n) => (h.role === "backend" ? on("gw", gatewayPortName(n.name)) : on("patch", n.name))));
    if (h.role === "backend") {
      ids.push(on("gateway", "gateway"), graphId.outside, ...(h.external_interfaces ?? []).map((x) => on("exit", x)));
    } else {
      ids.push(...carried.map((n) => on("bridge", bridgeName(n.name))));
      for (const n of carried) ids.push(...n.vms.filter((v) => v.host === h.name).map((v) => graphId.vm(n.name, v.name)));
    }
  }
  return ids.sort();
}

/** Every element of `model` read back: names (model ids, or the domIds for Mermaid), label lines, the host box, and every link. */
function expectSame(model: GraphModel, read: ReadPicture, name: (id: string) => string): void {
  const hosts = new Set(model.hosts.map((h) => h.id));
  const nodes = model.elements.filter((e) => !hosts.has(e.id));
  expect([...read.nodes.keys()].sort()).toEqual(nodes.map((e) => name(e.id)).sort());
  expect([...read.boxes.keys()].sort()).toEqual(model.hosts.map((h) => name(h.id)).sort());
  for (const e of nodes) {
    const node = read.nodes.get(name(e.id))!;
    expect(node.label, e.id).toEqual(e.label);
    if (e.host !== undefined && node.box !== undefined) expect(node.box).toBe(name(graphId.host(e.host)));
  }
  for (const h of model.hosts) expect(read.boxes.get(name(h.id))!.label).toEqual(model.elements.find((e) => e.id === h.id)!.label);
  const key = (l: { from: string; to: string; label?: string; dashed: boolean; arrow: boolean }) => `${l.from} -- ${l.to} ${l.label ?? ""} ${l.dashed} ${l.arrow}`;
  expect(read.links.map(key).sort()).toEqual(
    model.links.map((l) => key({ from: name(l.from), to: name(l.to), ...(l.label ? { label: l.label } : {}), dashed: l.style === "dashed" || l.style === "dotted", arrow: l.arrow === true })).sort(),
  );
}

describe.each(Object.entries(SITES))("the %s site", (_, dir) => {
  const inventory = loadInventory(dir);
  const model = buildGraph(inventory);

  it("the model holds every host, uplink part, VLAN, bridge, network, VM, the gateway and the exit, each once", () => {
    const ids = model.elements.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(expectedIds(inventory));
    const vms = inventory.networks.flatMap((n) => n.vms.map((v) => graphId.vm(n.name, v.name)));
    expect(vms.every((id) => ids.includes(id))).toBe(true);
    // Every link joins two elements; every VM hangs off its host's bridge of its network.
    for (const l of model.links) expect(ids.includes(l.from) && ids.includes(l.to), `${l.from} -- ${l.to}`).toBe(true);
    for (const n of inventory.networks)
      for (const v of n.vms) expect(model.links).toContainEqual({ from: graphId.onHost(v.host!, "bridge", bridgeName(n.name)), to: graphId.vm(n.name, v.name) });
  });

  it("dot: Graphviz reads every element, host box and link back with its label", () => {
    expectSame(model, readDot(renderDot(model)), (id) => id);
  });

  it("svg: Graphviz draws every element as a <g> with its id, class and text, every link as an edge", async () => {
    const svg = await renderSvg(model);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).not.toMatch(/<!DOCTYPE|<\?xml|<script|href=/);
    const read = readSvg(svg);
    expectSame(model, read, (id) => id);
    for (const e of model.elements) {
      const got = model.hosts.some((h) => h.id === e.id) ? read.boxes.get(e.id)! : read.nodes.get(e.id)!;
      expect(got.id).toBe(domId(e.id));
      expect(got.class!.split(" ")).toContain(`nf-${e.kind}`);
    }
  });

  it("mermaid: every node, host subgraph and link, the labels decoded back", () => {
    const text = renderMermaid(model);
    const read = readMermaid(text);
    expectSame(model, read, mermaidId);
    for (const e of model.elements.filter((x) => x.kind !== "host")) expect(read.classes.get(mermaidId(e.id))).toBe(`kind_${e.kind.replace(/-/g, "_")}`);
  });
});

describe("labels", () => {
  const inventory = loadInventory(join(REPO, "inventories", "reference"));
  const model = buildGraph(inventory);
  const label = (id: string) => model.elements.find((e) => e.id === id)!.label;

  it("say the uplink's mode, bond mode, LACP and MTU, the VLANs, the VMs' addresses and isolation", () => {
    expect(label("hv1/bond:bond0")).toEqual(["bond0", "Linux bond, 802.3ad, LACP active", "miimon 100 ms, MTU 9000"]);
    expect(label("hv3/bond:bond0")).toEqual(["bond0", "OVS bond, active-backup", "trunks 1081, 1082, 1083, MTU 9000"]);
    expect(label("hv3/patch:secure")).toEqual(["pu-secure - pb-secure", "patch ports, tag 1081"]);
    expect(label("backend/vlan:bond0.1081")).toEqual(["bond0.1081", "802.1Q VLAN 1081, MTU 9000", "gateway 192.168.128.1/17"]);
    expect(label("vm:secure/analyst-01")).toEqual(["analyst-01", "52:54:00:81:00:01", "192.168.128.11", "isolated"]);
    expect(label("vm:datain/fetch-01")).toEqual(["fetch-01", "52:54:00:83:00:01", "DHCP"]);
    expect(label("net:secure").slice(0, 2)).toEqual(["secure", "VLAN 1081, 192.168.128.0/17"]);
    expect(label("host:hv3")).toEqual(["hv3", "vmhost, 10.10.0.13", "rack=b"]);
    expect(label("backend/exit:eno3")).toEqual(["eno3", "exit: masquerade, port forwards"]);
  });

  it("hostile text in a label (quotes, backslashes, escString sequences, markup, Mermaid syntax, a newline) is drawn as text in every format", async () => {
    const hostile = `a"b\\N\\G\\ <script>x</script> ]]|#quot; end --- }} \`md\` &amp; \u001b[31m`;
    const host = model.elements.find((e) => e.id === "host:hv1")!;
    const vm = model.elements.find((e) => e.id === "vm:secure/analyst-01")!;
    const bent: GraphModel = {
      ...model,
      elements: model.elements.map((e) => (e === host ? { ...e, label: [...e.label, hostile] } : e === vm ? { ...e, label: [hostile, "second line"] } : e)),
      links: model.links.map((l, i) => (i === 0 ? { ...l, label: hostile } : l)),
    };
    const shown = hostile.replace("\u001b", " ");
    for (const read of [readDot(renderDot(bent)), readSvg(await renderSvg(bent))]) {
      expect(read.nodes.get(vm.id)!.label).toEqual([shown, "second line"]);
      expect(read.boxes.get(host.id)!.label.at(-1)).toBe(shown);
      expect(read.links.some((l) => l.label === shown)).toBe(true);
    }
    const mermaid = readMermaid(renderMermaid(bent));
    expect(mermaid.nodes.get(mermaidId(vm.id))!.label).toEqual([shown, "second line"]);
    expect(mermaid.boxes.get(mermaidId(host.id))!.label.at(-1)).toBe(shown);
    expect(mermaid.links.some((l) => l.label === shown)).toBe(true);
  });

  it("VXLAN: each host's endpoint on the underlay and its vx-<network> devices with the VNI; the networks' VNIs", () => {
    const vx = buildGraph(loadInventory(SITES.vxlan));
    const at = (id: string) => vx.elements.find((e) => e.id === id)!.label;
    expect(at("hosta/underlay:vtep")).toEqual(["VXLAN endpoint", "10.99.0.1, UDP 4789", "via the route to each peer, MTU 1500"]);
    expect(at("hosta/vxlan:vx-secure")).toEqual(["vx-secure", "VXLAN VNI 5081, MTU 1450"]);
    expect(at("backend/vxlan:vx-secure")).toEqual(["vx-secure", "VXLAN VNI 5081, MTU 1450", "gateway 10.81.0.1/24"]);
    expect(at("underlay")[0]).toBe("underlay");
    expect(vx.elements.some((e) => e.id === graphId.switch)).toBe(false);
    expect(vx.links).toContainEqual({ from: "hosta/underlay:vtep", to: "hosta/vxlan:vx-secure", label: "VNI 5081" });
    expect(vx.links).toContainEqual({ from: "net:secure", to: "hosta/vxlan:vx-secure", label: "VLAN 1081 / VNI 5081", style: "dashed" });
  });

  it("mirrors: arrows from the sources to the capture VM or the GRE/ERSPAN target; collectors: an arrow from every vmhost bridge", () => {
    const flows = buildGraph(loadInventory(SITES.flows));
    const mirrorLinks = flows.links.filter((l) => l.label?.startsWith("mirror "));
    expect(mirrorLinks).toEqual([
      { from: "vm:secure/vmb1", to: "mirror:ids", label: "mirror ids (both)", style: "dotted", arrow: true },
      { from: "vm:secure/vmb2", to: "mirror:ids", label: "mirror ids (both)", style: "dotted", arrow: true },
      { from: "vm:secure/vma1", to: "vm:secure/vma3", label: "mirror tap (egress)", style: "dotted", arrow: true },
      { from: "net:service", to: "mirror:wire", label: "mirror wire (both)", style: "dotted", arrow: true },
    ]);
    const at = (id: string) => flows.elements.find((e) => e.id === id)!.label;
    expect(at("mirror:wire")).toEqual(["mirror wire", "GRE to 198.51.100.7", "key 42", "port mr-wire"]);
    expect(at("mirror:ids")).toEqual(["mirror ids", "ERSPAN type III to 198.51.100.8", "session 1", "port mr-ids"]);
    expect(at("collector:sflow/10.99.0.250:6343")).toEqual(["sFlow collector", "10.99.0.250:6343", "1 in 400 packets, counters every 30 s"]);
    expect(at("collector:ipfix/10.99.0.250:4739")).toEqual(["IPFIX collector", "10.99.0.250:4739", "1 in 100 packets"]);
    // Each of the 2 vmhosts' 3 VM bridges and its trunk bridge export to each of the 3 collectors; the backend nothing.
    const toCollectors = flows.links.filter((l) => l.to.startsWith("collector:"));
    expect(toCollectors).toHaveLength(24);
    expect(toCollectors.every((l) => /^host[ab]\/(bridge:br-|trunk:br-uplink$)/.test(l.from) && l.style === "dotted" && l.arrow)).toBe(true);
    expect(toCollectors.filter((l) => l.from === "hosta/trunk:br-uplink").map((l) => l.to)).toEqual(["collector:sflow/10.99.0.250:6343", "collector:sflow/10.99.0.251:9999", "collector:ipfix/10.99.0.250:4739"]);
  });

  it("domId and mermaidId are injective, DOM-safe, and mermaidId has no - (Mermaid reads --, -. and -> as links)", () => {
    const ids = ["a:b", "a_3a_b", "a-b", "a_b", "a.b", "hv1/nic:eth0", "net:xn--a", "a->b"];
    const dom = ids.map(domId);
    expect(new Set(dom).size).toBe(ids.length);
    for (const d of dom) expect(d).toMatch(/^nf-[A-Za-z0-9_-]+$/);
    const mer = ids.map(mermaidId);
    expect(new Set(mer).size).toBe(ids.length);
    for (const m of mer) expect(m).toMatch(/^n_[A-Za-z0-9_]+$/);
  });
});
