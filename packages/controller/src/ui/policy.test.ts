import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { vmList, vmPolicy } from "./policy.ts";

const lab = loadInventory(fileURLToPath(new URL("../../../../inventories/lab", import.meta.url)));

describe("a VM's policy as the dashboard shows it (inventories/lab)", () => {
  it("vma1: allow list, extra address, not isolated by its network's default", () => {
    const [nic, ...rest] = vmPolicy(lab, "vma1");
    expect(rest).toEqual([]);
    expect(nic).toMatchObject({
      network: "secure",
      vlan: 1081,
      ip: "10.81.0.11",
      host: "hosta",
      egress: "allowlist",
      extraAddresses: ["10.81.0.50"],
      isolated: false,
      allow: [{ to: "198.51.100.10" }],
      forwards: [],
    });
    const entries = Object.fromEntries(nic!.effective!.entries.map((e) => [e.key, `${e.text} (${e.sourceText})`]));
    expect(entries).toMatchObject({ isolated: "no (network secure)", allow: "198.51.100.10 (VM)", extra_addresses: "10.81.0.50 (VM)" });
  });

  it("vma3: isolated by its own key, in cluster group batch", () => {
    const [nic] = vmPolicy(lab, "vma3");
    expect(nic!.isolated).toBe(true);
    expect(nic!.groups).toEqual(["batch"]);
    expect(nic!.effective!.entries.find((e) => e.key === "isolated")).toMatchObject({ value: true, source: { from: "vm" }, sourceText: "VM" });
  });

  it("vma2: the port-forward 2222 -> vma2:22 lands on it", () => {
    const [nic] = vmPolicy(lab, "vma2");
    expect(nic!.forwards).toEqual([expect.objectContaining({ listen: 2222, vm: "vma2", port: 22, proto: "tcp" })]);
    expect(nic!.egress).toBe("open");
  });

  it("an unknown VM has no policy; the list names every VM once per NIC", () => {
    expect(vmPolicy(lab, "nope")).toEqual([]);
    expect(vmList(lab).map((v) => v.name)).toEqual(["vma1", "vma2", "vma3", "vma4", "vmb1", "vmb2", "vmb3", "vmb4"]);
  });
});
