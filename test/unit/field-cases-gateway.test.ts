/**
 * The field cases of issue 12 (../shared/field-cases: F06, F07, F09, F10,
 * F13, F18), asserted at the planning level: what the compiled backend and
 * VM host assignments say. The lab tier proves the same with real dnsmasq
 * and nft (test/lab/gateway-*.test.ts).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProblem, InventoryError, loadInventory, type DnsmasqSpec, type HostAssignment, type NftTableSpec, type ResourceSpec } from "@netfleet/shared";
import { compileSite, dnsSetName } from "../../packages/controller/src/compile/compile.ts";

const root = join(import.meta.dirname, "field-cases");
const scratch = mkdtempSync(join(tmpdir(), "nf-field12-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function site(rel: string) {
  return loadInventory(join(root, rel), { cwd: join(root, rel) });
}
/** A copy of a field case with one file edited (each edit must apply). */
function variant(rel: string, name: string, file: string, edits: [string, string][]): string {
  const dir = join(scratch, name);
  cpSync(join(root, rel), dir, { recursive: true });
  let text = readFileSync(join(dir, file), "utf8");
  for (const [from, to] of edits) {
    expect(text, `${name}: ${from}`).toContain(from);
    text = text.replace(from, to);
  }
  writeFileSync(join(dir, file), text);
  return dir;
}
function problems(dir: string): string[] {
  try {
    loadInventory(dir, { cwd: dir });
  } catch (err) {
    if (err instanceof InventoryError) return err.problems.map(formatProblem);
    throw err;
  }
  return [];
}
const host = (all: HostAssignment[], name: string) => all.find((a) => a.host === name)!;
function resource<K extends ResourceSpec["kind"]>(a: HostAssignment, kind: K, name?: string): Extract<ResourceSpec, { kind: K }> {
  const r = a.resources.find((x) => x.kind === kind && (name === undefined || x.name === name));
  if (!r) throw new Error(`${a.host}: no ${kind}${name ? `[${name}]` : ""}`);
  return r as Extract<ResourceSpec, { kind: K }>;
}
const table = (all: HostAssignment[]): NftTableSpec => resource(all.find((a) => a.role === "backend")!, "nft-table");
const dnsmasq = (all: HostAssignment[], net: string): DnsmasqSpec => resource(all.find((a) => a.role === "backend")!, "dnsmasq", net);

describe("field cases of issue 12", () => {
  it("F06: the table names only our gateway interfaces; open egress never reaches management or link-local", () => {
    const all = compileSite(site("F06"));
    const t = table(all);
    // What the agent filters is keyed by these interfaces; the host's other forwarding (Docker's docker0) is no network of ours.
    expect(t.networks.map((n) => n.interface)).toEqual(["bond0.100"]);
    expect(t.externalInterfaces).toEqual(["eno3"]);
    expect(t.networks[0]).toMatchObject({ egress: "open", deny: ["10.10.0.0/24", "169.254.0.0/16"] });
    expect(readFileSync(join(root, "F06", "docker-like.nft"), "utf8")).toContain('iifname "docker0" accept');
  });

  it("F07: set entries outlive what dnsmasq and the VM cache: TTL capped at 300 s, set timeout 3600 s >= 2 x 300", () => {
    const all = compileSite(site("F07"));
    const d = dnsmasq(all, "app");
    const t = table(all);
    expect(d.maxTtl).toBe(300);
    expect(t.dnsSetTimeout).toBe(3600);
    expect(t.dnsSetTimeout).toBeGreaterThanOrEqual(2 * d.maxTtl);
    expect(d.allowNames).toEqual([
      { name: "cdn-pkg.example", set: dnsSetName("cdn-pkg.example") },
      { name: "static.example", set: dnsSetName("static.example") },
    ]);
    // a site that lets answers live an hour but drops set entries after an hour is refused, at the key
    const bad = variant("F07", "F07-ttl", "site.yaml", [["upstream_dns:", "dns_max_ttl: 3600\n  upstream_dns:"]]);
    expect(problems(bad)).toEqual([
      "site.yaml:6:16: site.dns_max_ttl: name_set_timeout 3600 s is less than 2 x dns_max_ttl (2 x 3600 s): an address may sit in dnsmasq's cache and then in the VM's for dns_max_ttl each, and would leave its name's set while still in use; set name_set_timeout to 7200 or more",
    ]);
    const fixed = variant("F07", "F07-ttl-ok", "site.yaml", [["upstream_dns:", "dns_max_ttl: 3600\n  name_set_timeout: 7200\n  upstream_dns:"]]);
    const t2 = table(compileSite(loadInventory(fixed)));
    expect(t2.dnsSetTimeout).toBe(7200);
  });

  it("F09: `*.githubusercontent.com` is accepted as written, `static.example` stays exact; each form has its own set", () => {
    const all = compileSite(site("F09"));
    const d = dnsmasq(all, "app");
    expect(d.allowNames).toEqual([
      { name: "*.githubusercontent.com", set: dnsSetName("*.githubusercontent.com") },
      { name: "static.example", set: dnsSetName("static.example") },
    ]);
    expect(dnsSetName("*.static.example")).not.toBe(dnsSetName("static.example"));
    expect(table(all).dnsSets.sort()).toEqual([dnsSetName("*.githubusercontent.com"), dnsSetName("static.example")].sort());
    expect(table(all).allow.filter((a) => a.set).map((a) => a.set)).toEqual([dnsSetName("*.githubusercontent.com"), dnsSetName("static.example")]);
  });

  it("F10: without mtu every network follows the 9000 bond; with mtu: 1500 the office VLAN stays 1500 and DHCP says so", () => {
    const before = compileSite(site("F10"));
    for (const h of ["backend", "hv1"]) {
      for (const vid of [300, 301]) expect(resource(host(before, h), "vlan-interface", `bond0.${vid}`).mtu, `${h} ${vid}`).toBe(9000);
    }
    expect(dnsmasq(before, "office").mtu).toBe(9000);

    const after = compileSite(site("F10/with-mtu"));
    for (const h of ["backend", "hv1"]) {
      expect(resource(host(after, h), "kernel-bond").mtu).toBe(9000);
      expect(resource(host(after, h), "vlan-interface", "bond0.300").mtu).toBe(9000);
      expect(resource(host(after, h), "vlan-interface", "bond0.301").mtu).toBe(1500);
    }
    expect(dnsmasq(after, "storage").mtu).toBe(9000);
    expect(dnsmasq(after, "office").mtu).toBe(1500);
  });

  it("F10: in ovs-trunk mode the VM bridge and the gateway's internal port carry the network's MTU; the NICs keep the uplink's", () => {
    const dir = variant("F10/with-mtu", "F10-trunk", "hosts.yaml", [
      ["uplink: { mode: kernel, members: [eno1, eno2], bond_mode: 802.3ad, mtu: 9000 }", "uplink: { mode: ovs-trunk, members: [eno1, eno2], bond_mode: balance-slb, mtu: 9000 }"],
      ["uplink: { mode: kernel, members: [eno1, eno2], bond_mode: 802.3ad, mtu: 9000 }", "uplink: { mode: ovs-trunk, members: [eno1, eno2], bond_mode: balance-slb, mtu: 9000 }"],
    ]);
    const all = compileSite(loadInventory(dir));
    const gwPorts = resource(host(all, "backend"), "ovs-bridge", "br-uplink").ports;
    expect(gwPorts.map((p) => `${p.name}:${p.mtu}`)).toEqual(["bond0:9000", "gw-storage:9000", "gw-office:1500"]);
    expect(resource(host(all, "hv1"), "ovs-bridge", "br-office").mtu).toBe(1500);
    expect(resource(host(all, "hv1"), "ovs-bridge", "br-storage").mtu).toBe(9000);
    expect(resource(host(all, "hv1"), "ovs-bridge", "br-uplink").ports[0]).toMatchObject({ name: "bond0", mtu: 9000 });
  });

  it("F10: a network MTU above a carrying host's uplink is refused at the key, naming the host", () => {
    const dir = variant("F10/with-mtu", "F10-big", "networks.yaml", [["    mtu: 1500", "    mtu: 9216"]]);
    expect(problems(dir)).toEqual([
      "networks.yaml:10:10: networks.office.mtu: mtu 9216 exceeds the uplink mtu 9000 of host backend (hosts.yaml:6:72), which carries office: a VLAN cannot be larger than the link under it",
      "networks.yaml:10:10: networks.office.mtu: mtu 9216 exceeds the uplink mtu 9000 of host hv1 (hosts.yaml:11:72), which carries office: a VLAN cannot be larger than the link under it",
    ]);
  });

  it("F13: the forward is compiled for the backend (the agent reaches it from outside and, hairpinned, from the VMs)", () => {
    const t = table(compileSite(site("F13")));
    expect(t.forwards).toEqual([{ proto: "tcp", listen: 8443, count: 1, vm: "192.168.10.11", port: 443, interface: "bond0.100", from: [] }]);
    // client1 is in the same network: its address is no deny entry of its own network
    expect(t.networks[0]!.deny).not.toContain("192.168.10.0/24");
  });

  it("F18: a VM with NICs on two networks that both offer a default route is refused, naming both places", () => {
    expect(problems(join(root, "F18"))).toEqual([
      "networks.yaml:17:7: networks.storage.vms.db1: VM db1 also has a NIC in network front (networks.yaml:9:7); both networks offer it a default route by DHCP and a VM gets one: set router: false on one of them",
    ]);
    const fixed = variant("F18", "F18-router", "networks.yaml", [["    vlan: 110\n", "    vlan: 110\n    router: false\n"]]);
    const all = compileSite(loadInventory(fixed));
    expect(dnsmasq(all, "front")).toMatchObject({ router: true, dhcp: { start: "192.168.10.100", end: "192.168.10.199" } });
    expect(dnsmasq(all, "storage")).toMatchObject({ router: false, dhcp: { start: "192.168.11.100", end: "192.168.11.199" } });
    // one VM, two NICs: a port on each bridge of hv1
    for (const net of ["front", "storage"]) expect(resource(host(all, "hv1"), "vm-port-policy", `br-${net}`).vms.map((v) => v.name)).toEqual(["db1"]);
  });

  it("F18 (no-dhcp): a network without DHCP compiles to a dnsmasq without a DHCP range (DNS only)", () => {
    const all = compileSite(site("F18/no-dhcp"));
    expect(dnsmasq(all, "storage").dhcp).toBeUndefined();
    expect(dnsmasq(all, "front").dhcp).toEqual({ start: "192.168.10.100", end: "192.168.10.199", leaseTime: "12h" });
  });
});
