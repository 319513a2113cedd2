import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { buildTopology } from "../topology.ts";
import type { LabStatus, LabVm } from "../types.ts";
import { attackProbes } from "./attack.ts";
import { exclusiveBatches } from "./attack-run.ts";

const repoRoot = fileURLToPath(new URL("../../../..", import.meta.url));
const options = { inventoryDir: `${repoRoot}inventories/lab`, prefix: "nf", runDir: "/run/netfleet-lab/nf", repoRoot };
const inventory = loadInventory(options.inventoryDir);

/** What lab status would say of the lab inventory, with made-up leases for the DHCP VM and the strangers. */
function fakeStatus(): LabStatus {
  const t = buildTopology(inventory, options);
  let lease = 100;
  const vm = (v: (typeof t.vms)[number], kind: LabVm["kind"]): LabVm => ({
    name: v.name,
    host: v.host,
    network: v.network,
    namespace: v.namespace,
    interface: v.interface,
    hostPort: v.hostPort,
    mac: v.mac,
    kind,
    ip: v.ip ?? `${v.gateway.split(".").slice(0, 3).join(".")}.${lease++}`,
    state: "up",
  });
  return {
    up: true,
    prefix: "nf",
    runDir: options.runDir,
    hosts: [],
    vms: [...t.vms.map((v) => vm(v, "namespace")), ...t.strangers.map((v) => vm(v, "stranger"))],
    gateways: t.networks.map((n, i) => ({ network: n.name, vlan: n.vlan, ip: n.gateway, mac: `02:4e:46:00:04:${(0x39 + i).toString(16)}`, namespace: "nf-backend", interface: `gw-${n.name}` })),
  };
}

describe("attack rows of the lab", () => {
  const probes = attackProbes(inventory, fakeStatus());

  it("covers every kind the issue names, at least 25 rows", () => {
    expect(probes.length).toBeGreaterThanOrEqual(25);
    const kinds = new Set(probes.map((p) => p.check.replace(/ \(.*\)$/, "")));
    for (const k of ["ip spoofing", "arp claim", "mac spoofing", "rogue dhcp offer", "ipv6 router advertisement", "dhcpv6 advertise", "isolated to isolated", "cluster group member to member", "cluster group member to non-member", "unknown unicast flood to isolated", "extra address", "rarp announcement"]) {
      expect(kinds, k).toContain(k);
    }
    const from = (check: string) => new Set(probes.filter((p) => p.check === check).map((p) => p.from));
    expect(from("ip spoofing (static VM)")).toContain("vma1");
    expect(from("ip spoofing (DHCP VM)")).toContain("vmb4");
    expect(from("ip spoofing (unknown MAC)")).toContain("x-hosta");
  });

  it("gives every row that must be dropped a positive control, and every control something to look at", () => {
    for (const p of probes) {
      if (p.expect === "dropped") expect(p.controls.length, `${p.check} ${p.from} -> ${p.to}`).toBeGreaterThan(0);
      for (const c of p.controls) expect(c.look.at.length, `${p.check}: ${c.what}`).toBeGreaterThan(0);
      expect(p.look.at.length).toBeGreaterThan(0);
    }
  });

  it("keeps rows that run side by side apart: a UDP port of their own, addresses of the lab only", () => {
    const ports = probes.filter((p) => !p.exclusive).flatMap((p) => [...new Set([p.look.filter, ...p.controls.map((c) => c.look.filter)].flatMap((f) => [...f.matchAll(/dst port (\d+)/g)].map((m) => m[1])))]);
    // a port may appear in one row only (controls of that row share it)
    const byRow = probes.filter((p) => !p.exclusive).map((p) => new Set([p.look.filter, ...p.controls.map((c) => c.look.filter)].flatMap((f) => [...f.matchAll(/dst port (\d+)/g)].map((m) => m[1]))));
    for (const port of new Set(ports)) expect(byRow.filter((s) => s.has(port)).length, `port ${port}`).toBe(1);
    for (const p of probes) for (const f of [p.look.filter, ...p.controls.map((c) => c.look.filter)]) for (const ip of f.match(/\d+\.\d+\.\d+\.\d+/g) ?? []) expect(ip).toMatch(/^10\.81\.0\./);
  });

  it("batches exclusive rows only when they share no namespace or neighbour entry, and a row that may teach switches a foreign MAC runs alone", () => {
    const batches = exclusiveBatches(probes.filter((p) => p.exclusive));
    expect(batches.flat().length).toBe(probes.filter((p) => p.exclusive).length);
    for (const b of batches) {
      if (b.some((p) => p.restore)) expect(b.length).toBe(1);
      const seen = new Set<string>();
      for (const p of b) {
        const keys = new Set([p.sender.namespace, ...p.look.at.map((a) => a.namespace), ...p.controls.flatMap((c) => c.look.at.map((a) => a.namespace))]);
        for (const k of keys) {
          expect(seen.has(k), `${k} twice in one batch`).toBe(false);
        }
        for (const k of keys) seen.add(k);
      }
    }
  });
});
