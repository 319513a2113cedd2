/**
 * `netfleet rollout --max-per rack=1` and label-selected `--limit`, run as a user would (main, real nats-server,
 * fleet members that apply what they get): the lab inventory with hosts labelled rack a/b/c. NATS client port 23394 (monitoring +200: 23594).
 */
import { mkdtemp, readFile, rm, writeFile, cp as copyDir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { startAgent, startSite, stopAll, writeControllerHome, type Site, type TestAgent } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
let site: Site | undefined;
const agents: TestAgent[] = [];
let inventoryDir: string | undefined;
afterEach(async () => {
  await stopAll(site, agents);
  site = undefined;
  if (inventoryDir) await rm(inventoryDir, { recursive: true, force: true });
});

/** The lab inventory with three more VM hosts and a rack label on each: a: backend, hosta, hostb; b: hostc, hostd; c: hoste. */
async function rackedInventory(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "nf-racks-"));
  await copyDir(join(REPO, "inventories", "lab"), dir, { recursive: true });
  const hosts = await readFile(join(dir, "hosts.yaml"), "utf8");
  const groups = hosts.slice(0, hosts.indexOf("\nhosts:\n"));
  await writeFile(
    join(dir, "hosts.yaml"),
    `${groups}
hosts:
  backend: { groups: [lab], role: backend, address: 10.99.0.3, external_interface: wan0, labels: { rack: a } }
  hosta: { groups: [lab, vmhosts], address: 10.99.0.1, labels: { rack: a } }
  hostb: { groups: [lab, vmhosts], address: 10.99.0.2, labels: { rack: a } }
  hostc: { groups: [lab, vmhosts], address: 10.99.0.4, labels: { rack: b } }
  hostd: { groups: [lab, vmhosts], address: 10.99.0.5, labels: { rack: b } }
  hoste: { groups: [lab, vmhosts], address: 10.99.0.6, labels: { rack: c } }
`,
  );
  return dir;
}

type Event = { event: string; hosts?: string[]; canary?: boolean; waves?: string[][]; result?: string; ok?: string[] };

/** The JSON lines rollout --json printed. */
const eventsOf = (out: ReturnType<typeof memoryOutput>): Event[] => out.stdout.map((l) => JSON.parse(l) as Event);

describe("rollout --max-per and label --limit through the CLI", () => {
  it("--limit rack=b:!hostd rolls out to hostc only; then --max-per rack=1: no wave holds two hosts of one rack, every host applied once", async () => {
    inventoryDir = await rackedInventory();
    const inventory = loadInventory(inventoryDir);
    const rack = new Map(inventory.hosts.map((h) => [h.name, h.labels.rack]));
    site = await startSite({ basePort: 23394, hosts: inventory.hosts });
    for (const h of inventory.hosts) agents.push(startAgent(site, { hostname: h.name }));
    await Promise.all(agents.map((a) => a.started));
    const stateDir = await writeControllerHome(site, inventoryDir);

    // A label selector with an exclusion first: rack b but not hostd is hostc alone.
    const one = memoryOutput(true);
    expect(await main(["rollout", inventoryDir, "--state-dir", stateDir, "--json", "--yes", "--limit", "rack=b:!hostd", "--timeout", "30"], one)).toBe(0);
    expect(eventsOf(one).filter((e) => e.event === "wave").map((e) => e.hosts)).toEqual([["hostc"]]);
    expect(agents.map((a) => a.applied.length)).toEqual(inventory.hosts.map((h) => (h.name === "hostc" ? 1 : 0)));

    // Then the site with --max-per rack=1 and a batch that would take every VM host at once.
    const out = memoryOutput(true);
    const code = await main(["rollout", inventoryDir, "--state-dir", stateDir, "--json", "--yes", "--batch", "10", "--max-per", "rack=1", "--timeout", "30"], out);
    const events = eventsOf(out);
    expect(out.stderr).toEqual([]);
    expect(code).toBe(0);
    const waves = events.filter((e) => e.event === "wave").map((e) => e.hosts!);
    // The canary (the backend), then the VM hosts in name order as far as rack=1 allows (hostc is unchanged).
    expect(waves).toEqual([["backend"], ["hosta", "hostd", "hoste"], ["hostb"]]);
    for (const w of waves) expect(new Set(w.map((h) => rack.get(h))).size).toBe(w.length);
    expect(events.at(-1)).toMatchObject({ event: "done", result: "success", unchanged: ["hostc"] });
    for (const a of agents) expect(a.applied).toHaveLength(1);

    // A bad --max-per is a usage error before anything runs.
    const bad = memoryOutput(false);
    expect(await main(["rollout", inventoryDir, "--state-dir", stateDir, "--yes", "--max-per", "rack"], bad)).toBe(64);
    expect(bad.stderr.join("\n")).toMatch(/--max-per takes LABEL=N/);
  }, 120_000);
});
