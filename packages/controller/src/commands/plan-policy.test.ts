import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../main.ts";
import { memoryOutput } from "../output.ts";

const repo = join(import.meta.dirname, "..", "..", "..", "..");
const SITE = join(repo, "packages", "shared", "src", "inventory", "__fixtures__", "profiles");
const BAD = join(repo, "test", "unit", "bad-inventories");

/** `netfleet ARGV` as a user runs it (commander, main), output kept. */
async function netfleet(json: boolean, ...argv: string[]) {
  const out = memoryOutput(json);
  const code = await main(argv, out);
  return { code, out };
}

// The first plan imports the agent's planner and compiles every host: seconds on a loaded machine.
describe("netfleet plan: each VM's effective policy and where each value came from", { timeout: 60_000 }, () => {
  it("text: one block per VM, value <- source (VM, profile, network's profile, network, default)", async () => {
    const { code, out } = await netfleet(false, "plan", SITE);
    expect(code).toBe(0);
    const text = out.stdout.join("\n");
    const block = (head: string) => {
      const start = out.stdout.indexOf(head);
      expect(start, head).toBeGreaterThan(0);
      return out.stdout.slice(start + 1, start + 8).map((l) => /^ {4}(\S+) +(.*?) +<- (.*)$/.exec(l)?.slice(1) ?? [l]);
    };
    expect(text).toContain("VM policies (effective value <- where it came from: VM, profile, network's profile, network, default):");
    expect(block("  www2 in web on hv2, profile frontend")).toEqual([
      ["isolated", "no", "VM"],
      ["cluster_groups", "none", "default"],
      ["allow", "203.0.113.10 tcp/443", "network web's profile frontend"],
      ["gateway_services", "tcp/8080 (+ network web's udp/123)", "network web's profile frontend"],
      ["extra_addresses", "none", "default"],
      ["bandwidth.egress", "100Mbit/s burst 2Mbit", "VM"],
      ["bandwidth.ingress", "50Mbit/s burst 5Mbit", "network web's profile frontend"],
    ]);
    expect(block("  node1 in batch on hv1, profile compute")).toContainEqual(["bandwidth.egress", "1Gbit/s burst 800Mbit", "profile compute"]);
    // The policies come before the hosts' resources.
    expect(out.stdout.findIndex((l) => l.startsWith("VM policies"))).toBeLessThan(out.stdout.findIndex((l) => l.startsWith("host ")));
  });

  it("--json: vms[] with key, value (bit/s and bits), text and source; --host keeps the VMs placed there", async () => {
    const { code, out } = await netfleet(true, "plan", SITE, "--host", "hv1", "--json");
    expect(code).toBe(0);
    const doc = out.values[0] as { vms: { vm: string; network: string; entries: { key: string; value: unknown; source: unknown }[] }[]; hosts: { host: string }[] };
    expect(doc.hosts.map((h) => h.host)).toEqual(["hv1"]);
    expect(doc.vms.map((v) => `${v.network}/${v.vm}`)).toEqual(["batch/node1", "web/plain", "web/www1"]);
    const www1 = doc.vms.find((v) => v.vm === "www1")!;
    expect(www1.entries.find((e) => e.key === "bandwidth.egress")).toMatchObject({ value: { rate: 50_000_000, burst: 1_000_000 }, source: { from: "network-profile", profile: "frontend" } });
  });

  it("a bad profile reference: one line naming file:line:col, exit 2, nothing on stdout", async () => {
    const { code, out } = await netfleet(false, "plan", join(BAD, "profile-unknown"));
    expect(code).toBe(2);
    expect(out.stdout).toEqual([]);
    expect(out.stderr.join("\n")).toMatch(/networks\.yaml:33:18: networks\.beta\.vms\.vm2\.profile: no profile "wbe" in this site \(did you mean "web"\?\)/);
    expect(out.stderr.join("\n")).not.toMatch(/\n\s+at /);
  });
});
