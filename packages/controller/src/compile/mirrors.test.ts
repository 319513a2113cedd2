import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeAssignment, formatProblem, InventoryError, loadInventory } from "@netfleet/shared";
import { compileSite } from "./compile.ts";

// The bad-inventories baseline (gw backend, hv1 vmhost; alpha: vm1, beta: vm2) with a second VM host hv2
// carrying alpha, and VMs cap (hv1) and far (hv2) on alpha.
const baseline = join(import.meta.dirname, "..", "..", "..", "..", "test", "unit", "bad-inventories", "_baseline");
const dirs: string[] = [];
function site(mirrors: string): string {
  const dir = mkdtempSync(join(tmpdir(), "nf-mirrors-"));
  dirs.push(dir);
  cpSync(baseline, dir, { recursive: true });
  writeFileSync(
    join(dir, "more.yaml"),
    [
      "hosts:",
      "  hv2:",
      "    role: vmhost",
      "    address: 10.0.0.12",
      "    networks: [alpha]",
      "    uplink: { mode: kernel, members: [eth0, eth1] }",
    ].join("\n") + "\n",
  );
  // VMs join alpha in the baseline's own networks file (a network is defined once).
  const nets = join(dir, "networks.yaml");
  const text = readFileSync(nets, "utf8");
  writeFileSync(nets, text.replace("    port_forwards:", "      cap: { mac: '52:54:00:01:00:02', ip: 10.1.0.12, host: hv1 }\n      far: { mac: '52:54:00:01:00:03', ip: 10.1.0.13, host: hv2 }\n    port_forwards:"));
  writeFileSync(join(dir, "mirrors.yaml"), mirrors);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function problems(dir: string): string[] {
  try {
    loadInventory(dir, { cwd: dir });
  } catch (err) {
    if (err instanceof InventoryError) return err.problems.map(formatProblem);
    throw err;
  }
  return [];
}

describe("mirrors: inventory to ovs-mirror resources", () => {
  it("a capture-VM mirror goes to every vmhost of its network, before the prune, which keeps it; the backend gets none", () => {
    const inv = loadInventory(site("mirrors:\n  tap:\n    network: alpha\n    vms: [vm1]\n    direction: egress\n    destination: { vm: cap }\n"));
    expect(inv.mirrors).toEqual([{ name: "tap", network: "alpha", vms: ["vm1"], direction: "egress", destination: { vm: "cap" } }]);
    const all = compileSite(inv);
    for (const host of ["hv1", "hv2"]) {
      const a = all.find((x) => x.host === host)!;
      const ids = a.resources.map((r) => `${r.kind}[${r.name}]`);
      expect(ids.slice(-2), host).toEqual(["ovs-mirror[tap]", "prune[host]"]);
      expect(a.resources.at(-2)).toEqual({ kind: "ovs-mirror", name: "tap", bridge: "br-alpha", sourceMacs: ["52:54:00:01:00:01"], direction: "egress", output: { vmMac: "52:54:00:01:00:02" } });
      expect(a.resources.at(-1)).toMatchObject({ keep: { ovsMirrors: ["tap"] } });
      expect(decodeAssignment("test", JSON.stringify(a))).toEqual(a);
    }
    const gw = all.find((x) => x.host === "gw")!;
    expect(gw.resources.filter((r) => r.kind === "ovs-mirror")).toEqual([]);
    expect(gw.resources.at(-1)).not.toHaveProperty("keep.ovsMirrors");
  });

  it("a whole-network GRE mirror and an ERSPAN mirror: tunnel ports mr-<name> with OVS's options; a host without the network keeps none", () => {
    const inv = loadInventory(
      site(
        [
          "mirrors:",
          "  all-beta:",
          "    network: beta",
          "    destination: { gre: { remote_ip: 198.51.100.7, key: 42 } }",
          "  ids:",
          "    network: alpha",
          "    vms: [vm1, far]",
          "    destination: { erspan: { remote_ip: 198.51.100.8, erspan_ver: 2, erspan_dir: 1 } }",
        ].join("\n") + "\n",
      ),
    );
    const [hv1, hv2] = ["hv1", "hv2"].map((h) => compileSite(inv).find((a) => a.host === h)!);
    expect(hv1!.resources.filter((r) => r.kind === "ovs-mirror")).toEqual([
      { kind: "ovs-mirror", name: "all-beta", bridge: "br-beta", direction: "both", output: { tunnel: { port: "mr-all-beta", type: "gre", remoteIp: "198.51.100.7", key: 42 } } },
      { kind: "ovs-mirror", name: "ids", bridge: "br-alpha", sourceMacs: ["52:54:00:01:00:01", "52:54:00:01:00:03"], direction: "both", output: { tunnel: { port: "mr-ids", type: "erspan", remoteIp: "198.51.100.8", key: 1, erspanVersion: 2, erspanDir: 1 } } },
    ]);
    // hv2 carries alpha only.
    expect(hv2!.resources.filter((r) => r.kind === "ovs-mirror").map((r) => r.name)).toEqual(["ids"]);
    expect(hv2!.resources.at(-1)).toMatchObject({ keep: { ovsMirrors: ["ids"] } });
  });

  it("without mirrors every vmhost's prune keeps none (so a mirror taken out is removed)", () => {
    const all = compileSite(loadInventory(site("mirrors: {}\n")));
    expect(all.filter((a) => a.role === "vmhost").map((a) => a.resources.at(-1))).toEqual([expect.objectContaining({ keep: expect.objectContaining({ ovsMirrors: [] }) }), expect.objectContaining({ keep: expect.objectContaining({ ovsMirrors: [] }) })]);
  });

  it("a source VM on another host than the capture VM is refused at its place, with the way out", () => {
    expect(problems(site("mirrors:\n  tap:\n    network: alpha\n    vms: [vm1, far]\n    destination: { vm: cap }\n"))).toEqual([
      "mirrors.yaml:4:16: mirrors.tap.vms[1]: VM far runs on hv2, the destination VM cap on hv1: a capture VM's port sees only the ports of its own host's bridge; use a gre or erspan destination for sources on other hosts",
    ]);
  });

  it("a name defined twice across files names the first place", () => {
    const dir = site("mirrors:\n  tap:\n    network: alpha\n    destination: { vm: cap }\n");
    writeFileSync(join(dir, "mirrors2.yaml"), "mirrors:\n  tap:\n    network: beta\n    destination: { vm: vm2 }\n");
    expect(problems(dir)).toEqual(['mirrors2.yaml:2:3: mirrors.tap: mirror "tap" is already defined at mirrors.yaml:2:3']);
  });
});
