import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { decodeAssignment, loadInventory, samplingSummary, type ResourceSpec } from "@netfleet/shared";
import { compileSite } from "./compile.ts";

const root = join(import.meta.dirname, "..", "..", "..", "..");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** inventories/lab with `site.<key>` set to each given value (and `hosts.<name>.<key>` removed for each of `drop`). */
function labWith(settings: Record<string, unknown>, drop: [string, string][] = []) {
  const dir = mkdtempSync(join(tmpdir(), "nf-smp-"));
  dirs.push(dir);
  cpSync(join(root, "inventories", "lab"), dir, { recursive: true });
  const file = join(dir, "site.yaml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  for (const [k, v] of Object.entries(settings)) doc.setIn(["site", k], v);
  writeFileSync(file, doc.toString());
  const hostsFile = join(dir, "hosts.yaml");
  const hosts = parseDocument(readFileSync(hostsFile, "utf8"));
  for (const [host, key] of drop) hosts.deleteIn(["hosts", host, key]);
  writeFileSync(hostsFile, hosts.toString());
  return loadInventory(dir);
}
const kinds = (rs: ResourceSpec[]) => rs.map((r) => `${r.kind}[${r.name}]`);

describe("sampling compile", () => {
  it("one ovs-sampling right after each OVS bridge of each vmhost (VM bridges and the trunk bridge), with the host's address as sFlow agent; none on the backend", () => {
    const inv = labWith({ sflow: { collectors: ["10.99.0.250", "10.99.0.251:9999"], sampling: 1, polling: 2 }, ipfix: { collectors: ["10.99.0.250:4739"] } });
    const out = compileSite(inv);
    const hosta = out.find((a) => a.host === "hosta")!;
    const order = kinds(hosta.resources);
    for (const br of ["br-uplink", "br-secure", "br-service", "br-datain"]) {
      expect(order[order.indexOf(`ovs-bridge[${br}]`) + 1]).toBe(`ovs-sampling[${br}]`);
    }
    expect(order.filter((k) => k.startsWith("ovs-sampling"))).toHaveLength(4);
    expect(hosta.resources.find((r) => r.kind === "ovs-sampling" && r.name === "br-secure")).toEqual({
      kind: "ovs-sampling",
      name: "br-secure",
      sflow: { targets: ["10.99.0.250:6343", "10.99.0.251:9999"], agent: "10.99.0.1", sampling: 1, polling: 2, header: 128 },
      ipfix: { targets: ["10.99.0.250:4739"], sampling: 400, cacheActiveTimeout: 0, cacheMaxFlows: 0 },
    });
    const spec = hosta.resources.find((r) => r.kind === "ovs-sampling" && r.name === "br-secure")!;
    expect(spec.kind === "ovs-sampling" && samplingSummary(spec)).toBe("sFlow to 10.99.0.250:6343,10.99.0.251:9999 (1 in 1, counters every 2 s, 128-byte headers, agent 10.99.0.1); IPFIX to 10.99.0.250:4739 (1 in 400)");
    expect(out.find((a) => a.host === "hostb")!.resources.find((r) => r.kind === "ovs-sampling")).toMatchObject({ sflow: { agent: "10.99.0.2" } });
    const prune = hosta.resources.find((r) => r.kind === "prune")!;
    expect(prune.kind === "prune" && prune.keep.sampling).toEqual(["br-datain", "br-secure", "br-service", "br-uplink"]);
    const backend = out.find((a) => a.host === "backend")!;
    expect(kinds(backend.resources).filter((k) => k.startsWith("ovs-sampling"))).toEqual([]);
    expect(backend.resources.find((r) => r.kind === "prune")).toMatchObject({ keep: {} });
    // The documents pass the agent's decoder.
    for (const a of out) expect(decodeAssignment("x", JSON.stringify(a)).hash).toBe(a.hash);
  });

  it("only IPFIX: no sflow field; without either the assignment is as before (no kind an older agent does not know, no keep.sampling)", () => {
    const only = compileSite(labWith({ ipfix: { collectors: ["10.99.0.250"] } })).find((a) => a.host === "hosta")!;
    expect(only.resources.find((r) => r.kind === "ovs-sampling")).toEqual({ kind: "ovs-sampling", name: "br-uplink", ipfix: { targets: ["10.99.0.250:4739"], sampling: 400, cacheActiveTimeout: 0, cacheMaxFlows: 0 } });
    const none = compileSite(labWith({})).find((a) => a.host === "hosta")!;
    expect(kinds(none.resources).filter((k) => k.startsWith("ovs-sampling"))).toEqual([]);
    expect(JSON.stringify(none)).not.toContain('"sampling"');
  });

  it("a vmhost without a management address leaves the sFlow agent to OVS (the route to the first collector)", () => {
    const out = compileSite(labWith({ sflow: { collectors: ["10.99.0.250"] } }, [["hosta", "address"]]));
    const spec = out.find((a) => a.host === "hosta")!.resources.find((r) => r.kind === "ovs-sampling")!;
    expect(spec.kind === "ovs-sampling" && spec.sflow).toEqual({ targets: ["10.99.0.250:6343"], sampling: 400, polling: 30, header: 128 });
    expect(spec.kind === "ovs-sampling" && samplingSummary(spec)).toBe("sFlow to 10.99.0.250:6343 (1 in 400, counters every 30 s, 128-byte headers, agent by route)");
  });
});
