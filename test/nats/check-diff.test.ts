/**
 * `rollout --check` prints what each host's agent says would change, as the
 * agent's own check pass found it, through a real nats-server: the backend's
 * real engine on the nft 1.0.6 listing captured after a hand edit
 * (gateway-inserted, answered by a recording runner) sends the firewall's
 * unified diff; hv1 (the real engine on a simulated sysctl host) sends old ->
 * new values. Both replies carry the observed-state hash. Control: hv2, already
 * at its target, would change nothing and prints no diff.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RecordingRunner, SimulatedHostRunner } from "@netfleet/agent/testing";
import { Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { NftTableSpec, sealAssignment, type Host, type ResourceSpec } from "@netfleet/shared";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { humanRenderer } from "../../packages/controller/src/rollout/render.ts";
import { SITE, inventoryHost, startSimAgent, startSite, type SimAgent, type Site } from "./harness.ts";

const FIXTURES = join(import.meta.dirname, "..", "..", "packages", "agent", "src", "resources", "__fixtures__");
const fixture = (path: string) => readFileSync(join(FIXTURES, path), "utf8");
const nftSpec: ResourceSpec = NftTableSpec.parse(JSON.parse(fixture("nft/gateway-spec.json")));

let site: Site | undefined;
const agents: SimAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  await site?.close();
  site = undefined;
});

const target = (host: string, role: "backend" | "vmhost", resources: ResourceSpec[]): RolloutTarget => ({
  host,
  role,
  assignment: sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role, resources }),
});

describe("rollout --check shows each host's diff (real nats-server, the real engine in each agent)", () => {
  it("the backend's edited firewall as a unified diff, hv1's sysctl old -> new, hv2 converged without either; observed hashes in the replies", async () => {
    const hosts: Host[] = [{ ...inventoryHost("backend"), role: "backend" }, inventoryHost("hv1"), inventoryHost("hv2")];
    site = await startSite({ basePort: 23000, hosts });
    // The backend: its table as nft listed it after `nft insert rule inet netfleet forward iifname "bond0.1081" accept`.
    const gateway = new RecordingRunner()
      .reply(["nft", "-t", "list", "table", "inet", "netfleet"], { stdout: fixture("nft/gateway-inserted.nft") })
      .reply(["nft", "-j", "list", "ruleset"], { stdout: fixture("nft/gateway-inserted.json") })
      .reply(["ip", "-j", "addr", "show", "dev", "wan0"], { stdout: JSON.stringify([{ ifname: "wan0", addr_info: [{ family: "inet", local: "203.0.113.5", prefixlen: 24 }] }]) })
      .reply(["ip", "-j", "addr", "show", "dev", "wan1"], { stdout: "[]" });
    agents.push(startSimAgent(site, { hostname: "backend", runner: gateway }));
    agents.push(startSimAgent(site, { hostname: "hv1", host: new SimulatedHostRunner({ sysctls: { "net.ipv4.ip_forward": "0" } }) }));
    agents.push(startSimAgent(site, { hostname: "hv2", host: new SimulatedHostRunner({ sysctls: { "net.ipv4.ip_forward": "1" } }) }));
    await Promise.all(agents.map((a) => a.started));

    const forward: ResourceSpec = { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" };
    const targets = [target("backend", "backend", [nftSpec]), target("hv1", "vmhost", [forward]), target("hv2", "vmhost", [forward])];
    const events: RolloutEvent[] = [];
    const out = memoryOutput(false);
    const render = humanRenderer(out, false);
    const { result, checked } = await new Rollout(site.cp, targets, { check: true, applyTimeoutMs: 20_000 }, (e) => {
      events.push(e);
      render.onEvent(e);
    }).run();
    render.close();
    const text = out.stdout.join("\n");
    console.log(text);

    expect(result).toBe("success");
    const lines = out.stdout;
    // The backend: the inserted rule as the one removed line, under its resource.
    const at = lines.indexOf("      would change nft-table[netfleet] (ruleset)");
    expect(at).toBeGreaterThan(-1);
    expect(lines.slice(at + 1, at + 4)).toEqual([
      "          ruleset: 1 line -> 0 lines (in the diff below)",
      "          --- live: nft list table inet netfleet",
      "          +++ desired: table inet netfleet",
    ]);
    expect(lines.filter((l) => /^ {10}[-+](?![-+]{2} )/.test(l))).toEqual(['          -\t\tiifname "bond0.1081" accept']);
    // hv1: the value old and new; hv2 (control): nothing would change, nothing printed under it.
    expect(lines).toContain("      would change sysctl[net.ipv4.ip_forward] (value)");
    expect(lines).toContain("          value: 0 -> 1");
    const hv2 = events.find((e): e is Extract<RolloutEvent, { event: "host-done" }> => e.event === "host-done" && e.host === "hv2")!;
    expect(hv2).toMatchObject({ ok: true, summary: { pending: 0 } });
    expect(hv2.wouldChange ?? []).toEqual([]);
    // Every reply carries the observed-state hash; hv1 and hv2 observe different values, so different hashes.
    const observed = new Map((checked ?? []).map((c) => [c.host, c.reply.observed]));
    for (const h of ["backend", "hv1", "hv2"]) expect(observed.get(h), h).toMatch(/^[0-9a-f]{64}$/);
    expect(observed.get("hv1")).not.toBe(observed.get("hv2"));
    // Check mode ran nothing that mutates.
    expect(gateway.mutatingCalls).toEqual([]);
    expect(agents[1]!.host.get("net.ipv4.ip_forward")).toBe("0");
  });
});
