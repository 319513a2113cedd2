/**
 * The field cases of issue 11 (../shared/field-cases, reduced from operators'
 * reports), asserted at the planning level: what the compiled assignment and
 * the VM port rules say for each. The lab and kernel tiers prove the same
 * with real frames.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProblem, InventoryError, loadInventory, type VmPortPolicySpec } from "@netfleet/shared";
import { compileSite } from "../../packages/controller/src/compile/compile.ts";
import { describeFlows, desiredFlows, type VmPort } from "../../packages/agent/src/resources/vm-port-policy.ts";

const root = join(import.meta.dirname, "field-cases");
const scratch = mkdtempSync(join(tmpdir(), "nf-field-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function site(rel: string) {
  return loadInventory(join(root, rel), { cwd: join(root, rel) });
}
function policy(rel: string, host: string, network: string): VmPortPolicySpec {
  const a = compileSite(site(rel)).find((x) => x.host === host)!;
  const p = a.resources.find((r) => r.kind === "vm-port-policy" && r.network === network);
  if (p?.kind !== "vm-port-policy") throw new Error(`${rel}: no vm-port-policy for ${network} on ${host}`);
  return p;
}
const port = (ofport: number, mac: string): VmPort => ({ port: `vnet${ofport}`, ofport, mac });
const own = (flows: string[], ofport: number) => flows.filter((f) => f.startsWith("210 ") && f.includes(`in_port=${ofport},`) && /nw_src=|arp_spa=/.test(f));

describe("field cases of issue 11", () => {
  it("F02: VM bridges fail closed (secure fail mode; nothing but the floor before a port's rules)", () => {
    const a = compileSite(site("F02")).find((x) => x.role === "vmhost")!;
    const bridges = a.resources.filter((r) => r.kind === "ovs-bridge" && r.name.startsWith("br-") && r.name !== "br-uplink");
    expect(bridges.length).toBeGreaterThan(0);
    for (const b of bridges) expect(b, b.name).toMatchObject({ failMode: "secure" });
    const p = policy("F02", a.host, "app");
    expect(describeFlows(desiredFlows(p, { vmPorts: [], uplinkOfport: 1 }))).toEqual([
      "0  drop",
      "100 in_port=1 goto_table:1",
      "1:0  output:1",
      "1:50 dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 output:1",
    ]);
  });

  it("F03: every portgroup offered works: default and isolated; no vlan-<vid> (it would double-tag)", () => {
    const a = compileSite(site("F03")).find((x) => x.role === "vmhost")!;
    const net = a.resources.find((r) => r.kind === "libvirt-network");
    expect(net?.kind === "libvirt-network" && net.portgroups).toEqual([
      { name: "default", default: true },
      { name: "isolated", default: false, profileId: "netfleet-isolated" },
    ]);
  });

  it("F04: a DHCP VM may use only its lease; never the gateway's or another VM's address", () => {
    const p = policy("F04", "hv1", "app");
    const vm2 = port(3, "52:54:00:00:10:02");
    const before = describeFlows(desiredFlows(p, { vmPorts: [port(2, "52:54:00:00:10:01"), vm2], uplinkOfport: 1 }));
    expect(own(before, 3)).toEqual([]);
    const leases = [
      { mac: "52:54:00:00:10:02", ip: "192.168.10.150", expires: 0 },
      { mac: "52:54:00:00:10:02", ip: "192.168.10.1", expires: 0 }, // a lease file claiming the gateway changes nothing
    ];
    const after = describeFlows(desiredFlows(p, { vmPorts: [port(2, "52:54:00:00:10:01"), vm2], uplinkOfport: 1, leases }));
    expect(own(after, 3)).toEqual([
      "210 ip,in_port=3,dl_src=52:54:00:00:10:02,nw_src=192.168.10.150 goto_table:1",
      "210 arp,in_port=3,dl_src=52:54:00:00:10:02,arp_sha=52:54:00:00:10:02,arp_spa=192.168.10.150 goto_table:1",
    ]);
    expect(own(after, 2).every((f) => f.includes("192.168.10.11"))).toBe(true);
  });

  it("F05 (with-vip): extra_ips is named for what it is; with extra_addresses both VMs may hold the virtual IP, ARP included", () => {
    let problems: string[] = [];
    try {
      site("F05/with-vip");
    } catch (err) {
      if (!(err instanceof InventoryError)) throw err;
      problems = err.problems.map(formatProblem);
    }
    expect(problems[0]).toMatch(/^networks\.yaml:\d+:\d+: networks\.app\.vms\.lb1\.extra_ips: unknown key "extra_ips" \(did you mean "extra_addresses"\?\)$/);
    const dir = join(scratch, "F05");
    cpSync(join(root, "F05", "with-vip"), dir, { recursive: true });
    const file = join(dir, "networks.yaml");
    writeFileSync(file, readFileSync(file, "utf8").replaceAll("extra_ips:", "extra_addresses:"));
    const inv = loadInventory(dir, { cwd: dir });
    const a = compileSite(inv).find((x) => x.host === "hv1")!;
    const p = a.resources.find((r) => r.kind === "vm-port-policy");
    if (p?.kind !== "vm-port-policy") throw new Error("no policy");
    const flows = describeFlows(desiredFlows(p, { vmPorts: [port(2, "52:54:00:00:10:01"), port(3, "52:54:00:00:10:03")], uplinkOfport: 1 }));
    for (const [ofport, mac] of [[2, "52:54:00:00:10:01"], [3, "52:54:00:00:10:03"]] as const) {
      expect(flows).toContain(`210 ip,in_port=${ofport},dl_src=${mac},nw_src=192.168.10.50 goto_table:1`);
      expect(flows).toContain(`210 arp,in_port=${ofport},dl_src=${mac},arp_sha=${mac},arp_spa=192.168.10.50 goto_table:1`);
    }
  });

  it("F14: a running VM's static ip changes: the old address works while its lease lasts, the new one at once", () => {
    const after = policy("F14/after", "hv1", "app");
    const flows = describeFlows(desiredFlows(after, { vmPorts: [port(2, "52:54:00:00:10:01")], uplinkOfport: 1, leases: [{ mac: "52:54:00:00:10:01", ip: "192.168.10.11", expires: 0 }] }));
    expect(own(flows, 2).filter((f) => f.startsWith("210 ip"))).toEqual([
      "210 ip,in_port=2,dl_src=52:54:00:00:10:01,nw_src=192.168.10.11 goto_table:1",
      "210 ip,in_port=2,dl_src=52:54:00:00:10:01,nw_src=192.168.10.15 goto_table:1",
    ]);
    // the renew from the old address (unicast to the gateway) passes
    expect(flows).toContain("290 udp,in_port=2,dl_src=52:54:00:00:10:01,dl_dst=02:4e:46:00:00:64,tp_src=68,tp_dst=67 output:1");
  });
});
