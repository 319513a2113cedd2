import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { memoryOutput } from "../output.ts";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { PLAN_MAX_WIDTH, compileCommand, emptyHostNote, planCommand, shellWord } from "./plan.ts";

const reference = join(import.meta.dirname, "..", "..", "..", "..", "inventories", "reference");

describe("netfleet plan", () => {
  it("describes the gateway: deny list, services, audit group, range forward with its sources, MTU and default route per network", async () => {
    const out = memoryOutput(false);
    expect(await planCommand(reference, { host: "backend" }, out)).toBe(0);
    const text = out.stdout.join("\n");
    expect(text).toContain("secure: egress allowlist, deny 10.10.0.0/24 169.254.0.0/16 192.168.122.0/24 192.168.123.0/24; services tcp/443; audit nflog group 1081");
    expect(text).toContain("forward tcp 30002-62766 -> 192.168.128.2 (+32764 addresses):22 from 203.0.113.0/28");
    expect(text).toContain("forward tcp 8443 -> 192.168.122.2:443");
    expect(text).toMatch(/dnsmasq\[secure\] +DHCP 192\.168\.129\.1-192\.168\.255\.254 \(default route, mtu 9000\) and DNS \(allowlist, ttl cap 300s, 1 names\)/);
    // the range forward's 32765-element map is cut in the text (a line of ~1 MB otherwise); --json keeps it
    expect(text.split("\n").filter((l) => l.length > PLAN_MAX_WIDTH + 120)).toEqual([]);
    expect(text).toMatch(/\.\.\. \(\d+ more characters; netfleet plan --json has them\)/);
  });

  it("says first, plainly, that it plans against an empty host and points to rollout --check for the live diff", async () => {
    const out = memoryOutput(false);
    expect(await planCommand(reference, { host: "hv1" }, out)).toBe(0);
    expect(out.stdout[0]).toBe(`# netfleet plan shows what a first apply does on an empty (freshly installed) host: it reads no host. For what would change on the hosts as they are now (unified diffs of the firewall, dnsmasq, libvirt XML and VM port rules), run: netfleet rollout ${reference} --check`);
    const json = memoryOutput(true);
    expect(await planCommand(reference, { host: "hv1" }, json)).toBe(0);
    const doc = json.values[0] as { basis: string; note: string; hosts: { host: string }[] };
    expect(doc.basis).toBe("empty-host");
    expect(doc.note).toContain("rollout");
    expect(doc.hosts.map((h) => h.host)).toEqual(["hv1"]);
  });

  it("--limit: patterns with ! and & pick the hosts; one that matches nothing is refused with one line, and compile then writes nothing", async () => {
    const json = memoryOutput(true);
    expect(await planCommand(reference, { limit: ["hv*", "!hv2"] }, json)).toBe(0);
    expect((json.values[0] as { hosts: { host: string }[] }).hosts.map((h) => h.host)).toEqual(["hv1", "hv3"]);
    const bad = memoryOutput(false);
    expect(await planCommand(reference, { limit: ["db*"] }, bad)).toBe(2);
    expect(bad.stderr).toEqual(["netfleet plan: --limit db*: matches no host, group, role or label of site reference"]);
    const dir = mkdtempSync(join(tmpdir(), "nf-compile-limit-"));
    try {
      const refused = memoryOutput(false);
      expect(await compileCommand(reference, join(dir, "out"), refused, { limit: ["db*"] })).toBe(2);
      expect(readdirSync(dir)).toEqual([]);
      expect(compileCommand(reference, join(dir, "out"), memoryOutput(false), { limit: ["hv1"] })).toBe(0);
      expect(readdirSync(join(dir, "out"))).toEqual(["hv1.json"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--host outside --limit says the two select nothing together; the note's site dir is one shell word", async () => {
    const out = memoryOutput(false);
    expect(await planCommand(reference, { host: "hv1", limit: ["hv2"] }, out)).toBe(2);
    expect(out.stderr).toEqual(["netfleet plan: --host hv1 and --limit hv2 select no host together (hv1 is not in the limit)"]);
    expect(emptyHostNote("/tmp/my site")).toMatch(/run: netfleet rollout '\/tmp\/my site' --check$/);
    expect(shellWord("it's")).toBe("'it'\\''s'");
    expect(shellWord("inventories/lab")).toBe("inventories/lab");
  });
});
