import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadInventory } from "./load.ts";
import { effectivePolicies, effectivePolicy } from "./effective-policy.ts";
import type { Inventory, Vm } from "./model.ts";

const FIXTURE = join(import.meta.dirname, "__fixtures__", "profiles");

function vmOf(inv: Inventory, network: string, vm: string): Vm {
  const found = inv.networks.find((n) => n.name === network)?.vms.find((v) => v.name === vm);
  if (!found) throw new Error(`no ${network}/${vm}`);
  return found;
}

describe("network profiles", () => {
  const inv = loadInventory(FIXTURE);

  it("a network's default profile gives its VMs every key; bandwidth in bit/s and bits, burst default a tenth of the rate for ingress", () => {
    const www1 = vmOf(inv, "web", "www1");
    expect(www1).toMatchObject({
      profile: "frontend",
      isolated: true,
      allow: [{ to: "203.0.113.10", ports: [443], proto: "tcp" }],
      gateway_services: [{ proto: "tcp", first: 8080, last: 8080 }],
      bandwidth: { egress: { rate: 50_000_000, burst: 1_000_000 }, ingress: { rate: 50_000_000, burst: 5_000_000 } },
    });
    expect(www1.sources).toMatchObject({ isolated: { from: "network-profile", profile: "frontend" }, "bandwidth.ingress": { from: "network-profile", profile: "frontend" } });
  });

  it("a VM's own keys override its profile's key by key, bandwidth direction by direction", () => {
    const www2 = vmOf(inv, "web", "www2");
    expect(www2.isolated).toBe(false);
    expect(www2.bandwidth).toEqual({ egress: { rate: 100_000_000, burst: 2_000_000 }, ingress: { rate: 50_000_000, burst: 5_000_000 } });
    expect(www2.sources).toMatchObject({ isolated: { from: "vm" }, allow: { from: "network-profile", profile: "frontend" }, "bandwidth.egress": { from: "vm" }, "bandwidth.ingress": { from: "network-profile", profile: "frontend" } });
  });

  it("a VM naming a profile takes it instead of its network's; the profile's cluster groups are made in each network", () => {
    const plain = vmOf(inv, "web", "plain");
    expect(plain).toMatchObject({ profile: "compute", isolated: false, allow: [], groups: ["slurm"], bandwidth: { egress: { rate: 1e9, burst: 8e8 } } });
    expect(plain.gateway_services).toBeUndefined();
    expect(plain.sources).toMatchObject({ isolated: { from: "network" }, allow: { from: "default" }, cluster_groups: { from: "profile", profile: "compute" } });
    expect(inv.networks.find((n) => n.name === "batch")?.cluster_groups).toEqual({ slurm: ["node1", "node2"] });
    expect(inv.networks.find((n) => n.name === "web")?.cluster_groups).toEqual({ slurm: ["plain"] });
    const solo = vmOf(inv, "batch", "solo");
    expect(solo.profile).toBeUndefined();
    expect(solo.bandwidth).toBeUndefined();
    expect(solo.sources).toMatchObject({ isolated: { from: "network" }, "bandwidth.egress": { from: "default" } });
  });

  it("effectivePolicy: every key in order, with its value, text and source", () => {
    const p = effectivePolicy(inv, "batch", "node2");
    expect(p).toMatchObject({ vm: "node2", network: "batch", host: "hv2", profile: "compute" });
    expect(p?.entries.map((e) => [e.key, e.text, e.sourceText])).toEqual([
      ["isolated", "yes", "network batch"],
      ["cluster_groups", "slurm", "profile compute"],
      ["allow", "none (network batch: egress open)", "default"],
      ["gateway_services", "none", "default"],
      ["extra_addresses", "none", "default"],
      ["bandwidth.egress", "200Mbit/s burst 160Mbit", "VM"],
      ["bandwidth.ingress", "unlimited", "default"],
    ]);
    expect(p?.entries.find((e) => e.key === "bandwidth.egress")?.value).toEqual({ rate: 200_000_000, burst: 160_000_000 });
    expect(p?.entries.find((e) => e.key === "bandwidth.ingress")?.value).toBeNull();
    expect(effectivePolicy(inv, "web", "www1")?.entries.find((e) => e.key === "allow")).toMatchObject({ text: "203.0.113.10 tcp/443", sourceText: "network web's profile frontend" });
    // The network's own gateway services are named beside the VM's, which are the value.
    expect(effectivePolicy(inv, "web", "www1")?.entries.find((e) => e.key === "gateway_services")).toMatchObject({ value: [{ proto: "tcp", first: 8080, last: 8080 }], text: "tcp/8080 (+ network web's udp/123)" });
    expect(effectivePolicy(inv, "web", "node1")).toBeUndefined();
    expect(effectivePolicies(inv).map((x) => `${x.network}/${x.vm}`)).toEqual(["batch/node1", "batch/node2", "batch/solo", "web/plain", "web/www1", "web/www2"]);
  });

  it("loading twice gives the same model (the merge works on copies)", () => {
    expect(loadInventory(FIXTURE)).toEqual(inv);
  });
});
