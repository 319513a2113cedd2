/**
 * What `netfleet-lab rollout` refuses: a site folder whose topology differs
 * from the lab's as built. Edited copies of inventories/lab: a port-forward
 * and an allow-list entry change nothing the lab builds; a VM's address, a
 * new VM and a network's VLAN each are named.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { describe, expect, it, onTestFinished } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { buildTopology } from "./topology.ts";
import { topologyChanges } from "./topology-diff.ts";

const lab = fileURLToPath(new URL("../../../inventories/lab", import.meta.url));
const options = { inventoryDir: lab, prefix: "nf", runDir: "/run/netfleet-lab/nf" };
const built = buildTopology(loadInventory(lab), options);

/** The topology of a copy of inventories/lab with `edit` applied to its networks.yaml (the copy is removed when the test finishes). */
function edited(edit: (doc: ReturnType<typeof parseDocument>) => void) {
  const dir = mkdtempSync(join(tmpdir(), "nf-topodiff-"));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(lab, dir, { recursive: true });
  const file = join(dir, "networks.yaml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  edit(doc);
  writeFileSync(file, doc.toString());
  return buildTopology(loadInventory(dir), { ...options, inventoryDir: dir });
}

describe("topologyChanges", () => {
  it("finds none for a new port-forward and allow-list entry (the services differ, the fingerprint does not)", () => {
    const next = edited((doc) => {
      doc.setIn(["networks", "service", "port_forwards"], [{ listen: 2222, vm: "vma2", port: 22 }, { listen: 8080, vm: "vma2", port: 8080 }]);
      doc.setIn(["networks", "secure", "vms", "vma1", "allow"], [{ to: "198.51.100.10" }, { to: "198.51.100.20" }]);
    });
    expect(next.vms.find((v) => v.name === "vma2")!.services).toEqual(["0.0.0.0:22", "0.0.0.0:8080"]);
    expect(next.fingerprint).toBe(built.fingerprint);
    expect(topologyChanges(built, next)).toEqual([]);
  });

  it("names a VM's new address, a new VM and a network's new VLAN", () => {
    const next = edited((doc) => {
      doc.setIn(["networks", "secure", "vms", "vma1", "ip"], "10.81.0.12");
      doc.setIn(["networks", "service", "vms", "vma5"], { mac: "52:54:00:82:0a:05", ip: "10.82.0.15", host: "hosta" });
      doc.setIn(["networks", "datain", "vlan"], 1090);
    });
    expect(topologyChanges(built, next)).toEqual(["network datain: vlan 1083 → 1090", "VM vma1: ip 10.81.0.11 → 10.81.0.12", "VM vma5 added", "trunks changed"]);
  });
});
