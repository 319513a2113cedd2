import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadInventory, type DnsmasqSpec, type HostAssignment, type NftTableSpec } from "@netfleet/shared";
import { compileSite } from "./compile.ts";
import { dnsSetName } from "./gateway.ts";

const root = join(import.meta.dirname, "..", "..", "..", "..", "inventories");
const scratch = mkdtempSync(join(tmpdir(), "nf-gw-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;

/** A copy of inventories/<name> with text edits applied to one file (each must apply). */
function edited(name: string, file: string, edits: [string, string][]): string {
  const dir = join(scratch, `${name}-${n++}`);
  cpSync(join(root, name), dir, { recursive: true });
  let text = readFileSync(join(dir, file), "utf8");
  for (const [from, to] of edits) {
    expect(text).toContain(from);
    text = text.replace(from, to);
  }
  writeFileSync(join(dir, file), text);
  return dir;
}
const backendOf = (dir: string): HostAssignment => compileSite(loadInventory(dir)).find((a) => a.role === "backend")!;
const tableOf = (a: HostAssignment) => a.resources.find((r) => r.kind === "nft-table") as NftTableSpec;
const dnsmasqOf = (a: HostAssignment, net: string) => a.resources.find((r) => r.kind === "dnsmasq" && r.name === net) as DnsmasqSpec;

describe("gateway compile", () => {
  it("deny: management, link-local and every other network, plus the site's and the network's egress_deny, in address order", () => {
    const site = edited("reference", "site.yaml", [["  upstream_dns:", "  egress_deny: [198.18.0.0/15]\n  upstream_dns:"]]);
    writeFileSync(join(site, "networks.yaml"), readFileSync(join(site, "networks.yaml"), "utf8").replace("    egress: open             # dns follows: open\n", "    egress: open\n    egress_deny: [192.0.2.7, 198.18.0.0/15]\n"));
    const t = tableOf(backendOf(site));
    const deny = Object.fromEntries(t.networks.map((x) => [x.name, x.deny]));
    expect(deny.service).toEqual(["10.10.0.0/24", "169.254.0.0/16", "192.0.2.7", "192.168.123.0/24", "192.168.128.0/17", "198.18.0.0/15"]);
    expect(deny.datain).toEqual(["10.10.0.0/24", "169.254.0.0/16", "192.168.122.0/24", "192.168.128.0/17", "198.18.0.0/15"]);
    expect(deny.secure).toEqual(["10.10.0.0/24", "169.254.0.0/16", "192.168.122.0/24", "192.168.123.0/24", "198.18.0.0/15"]);
    // a network never denies itself
    for (const x of t.networks) expect(x.deny).not.toContain(x.cidr);
  });

  it("gateway_services become services on the gateway, one entry per port or range; nothing when unset", () => {
    const dir = edited("lab", "networks.yaml", [["    egress: open\n    vms:\n      vma2:", '    egress: open\n    gateway_services:\n      - { proto: tcp, ports: [8080, "9000-9010", 8080] }\n      - { proto: udp, ports: [5353] }\n    vms:\n      vma2:']]);
    const t = tableOf(backendOf(dir));
    expect(t.networks.find((x) => x.name === "service")!.services).toEqual([
      { proto: "tcp", ports: { first: 8080, last: 8080 } },
      { proto: "tcp", ports: { first: 9000, last: 9010 } },
      { proto: "udp", ports: { first: 5353, last: 5353 } },
    ]);
    expect(t.networks.find((x) => x.name === "secure")!.services).toEqual([]);
  });

  it("port_ranges: listen + host part -> address:port for every address but the gateway; from: carried", () => {
    const t = tableOf(backendOf(join(root, "reference")));
    // 192.168.128.0/17, gateway .1: host parts 2..32766 -> 30002..62766
    expect(t.forwards.find((f) => f.port === 22)).toEqual({ proto: "tcp", listen: 30002, count: 32765, vm: "192.168.128.2", port: 22, interface: "bond0.1081", from: ["203.0.113.0/28"] });
    // a gateway in the middle of the network splits the block around it
    const dir = edited("lab", "networks.yaml", [
      ["    cidr: 10.83.0.0/24\n    gateway: 10.83.0.1\n", "    cidr: 10.83.0.0/24\n    gateway: 10.83.0.50\n    port_ranges:\n      - { listen: 23000, port: 22, proto: udp }\n"],
    ]);
    const forwards = tableOf(backendOf(dir)).forwards.filter((f) => f.interface === "gw-datain");
    expect(forwards).toEqual([
      { proto: "udp", listen: 23001, count: 49, vm: "10.83.0.1", port: 22, interface: "gw-datain", from: [] },
      { proto: "udp", listen: 23051, count: 204, vm: "10.83.0.51", port: 22, interface: "gw-datain", from: [] },
    ]);
    // the single forward keeps its one VM, now with its sources
    const single = edited("lab", "networks.yaml", [["      - { listen: 2222, vm: vma2, port: 22 }", "      - { listen: 2222, vm: vma2, port: 22, from: [203.0.113.0/24, 198.51.100.9] }"]]);
    expect(tableOf(backendOf(single)).forwards).toEqual([{ proto: "tcp", listen: 2222, count: 1, vm: "10.82.0.12", port: 22, interface: "gw-service", from: ["203.0.113.0/24", "198.51.100.9"] }]);
  });

  it("a forward may shadow a reserved port only with force: true; reserved_ports replaces the default tcp 22", () => {
    const forced = edited("lab", "networks.yaml", [["      - { listen: 2222, vm: vma2, port: 22 }", "      - { listen: 22, vm: vma2, port: 22, force: true }"]]);
    expect(tableOf(backendOf(forced)).forwards.map((f) => f.listen)).toEqual([22]);
    const reserved = edited("lab", "hosts.yaml", [["    external_interface: wan0", "    external_interface: wan0\n    reserved_ports: [{ proto: tcp, ports: [2222] }]"]]);
    expect(() => loadInventory(reserved, { cwd: reserved })).toThrow(/^networks\.yaml:\d+:\d+: networks\.service\.port_forwards\[0\]\.listen: backend tcp port 2222 includes tcp 2222, reserved for the backend's own service \(reserved_ports at hosts\.yaml:21:5\); the forward would shadow it: pick another listen port or set force: true$/);
  });

  it("audit: nflog group = the VLAN id; audit: false leaves it out", () => {
    const dir = edited("lab", "networks.yaml", [["    cidr: 10.83.0.0/24\n", "    cidr: 10.83.0.0/24\n    audit: false\n"]]);
    const t = tableOf(backendOf(dir));
    expect(t.networks.map((x) => [x.name, x.auditGroup])).toEqual([["secure", 1081], ["service", 1082], ["datain", undefined]]);
  });

  it("external_interfaces: masquerade and forwards on each; external_interface alone still works", () => {
    const dir = edited("lab", "hosts.yaml", [["    external_interface: wan0", "    external_interfaces: [wan0, wan1]"]]);
    expect(tableOf(backendOf(dir)).externalInterfaces).toEqual(["wan0", "wan1"]);
    expect(tableOf(backendOf(join(root, "lab"))).externalInterfaces).toEqual(["wan0"]);
  });

  it("dns follows egress; the override keeps open DNS on an allowlist network and still fills the names' sets", () => {
    const lab = backendOf(join(root, "lab"));
    expect(["secure", "service", "datain"].map((x) => dnsmasqOf(lab, x).dns)).toEqual(["allowlist", "open", "open"]);
    const dir = edited("lab", "networks.yaml", [["    egress: allowlist                   # dns follows egress: allowlist\n", "    egress: allowlist\n    dns: open\n    dns_open_with_allowlist: true\n"]]);
    const d = dnsmasqOf(backendOf(dir), "secure");
    expect(d.dns).toBe("open");
    expect(d.allowNames).toEqual([{ name: "mirror.inet.test", set: dnsSetName("mirror.inet.test") }]);
  });

  it("dns_names and allow names keep their form: a plain name and its wildcard are two names with two sets", () => {
    const dir = edited("lab", "networks.yaml", [
      ["    dns_names: [mirror.inet.test]", '    dns_names: [mirror.inet.test, "*.docs.inet.test"]'],
      ["          - name: mirror.inet.test\n            ports: [80]", '          - name: mirror.inet.test\n            ports: [80]\n          - name: "*.mirror.inet.test"\n            ports: [443]'],
    ]);
    const a = backendOf(dir);
    expect(dnsmasqOf(a, "secure").allowNames).toEqual([
      { name: "*.docs.inet.test" },
      { name: "*.mirror.inet.test", set: dnsSetName("*.mirror.inet.test") },
      { name: "mirror.inet.test", set: dnsSetName("mirror.inet.test") },
    ]);
    expect(dnsSetName("*.mirror.inet.test")).not.toBe(dnsSetName("mirror.inet.test"));
    expect(tableOf(a).allow.filter((r) => r.vm === "10.81.0.21")).toEqual([
      { vm: "10.81.0.21", set: dnsSetName("mirror.inet.test"), proto: "tcp", ports: [80] },
      { vm: "10.81.0.21", set: dnsSetName("*.mirror.inet.test"), proto: "tcp", ports: [443] },
    ]);
  });

  it("site dns_max_ttl and name_set_timeout reach dnsmasq and the table; defaults 300 and 3600", () => {
    const lab = backendOf(join(root, "lab"));
    expect(dnsmasqOf(lab, "secure").maxTtl).toBe(300);
    expect(tableOf(lab).dnsSetTimeout).toBe(3600);
    const dir = edited("lab", "site.yaml", [["  upstream_dns:", "  dns_max_ttl: 20\n  name_set_timeout: 45\n  upstream_dns:"]]);
    const a = backendOf(dir);
    expect(["secure", "service", "datain"].map((x) => dnsmasqOf(a, x).maxTtl)).toEqual([20, 20, 20]);
    expect(tableOf(a).dnsSetTimeout).toBe(45);
  });

  it("dhcp: false and router: false reach dnsmasq: no range, no default route; the VMs there keep static leases", () => {
    const dir = edited("lab", "networks.yaml", [
      ["    dhcp: { start: 10.83.0.100, end: 10.83.0.199, lease_time: 1h }\n    egress: open\n    vms:\n      vmb3:\n        mac: 52:54:00:83:0b:03\n", "    dhcp: false\n    router: false\n    egress: open\n    vms:\n      vmb3:\n        mac: 52:54:00:83:0b:03\n        ip: 10.83.0.33\n"],
    ]);
    const d = dnsmasqOf(backendOf(dir), "datain");
    expect(d).not.toHaveProperty("dhcp");
    expect(d.router).toBe(false);
    expect(d.hosts).toEqual([{ name: "vmb3", mac: "52:54:00:83:0b:03", ip: "10.83.0.33" }]);
    expect(dnsmasqOf(backendOf(dir), "service")).toMatchObject({ router: true, dhcp: { start: "10.82.0.100" } });
  });
});
