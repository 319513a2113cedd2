import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sealAssignment, type HostAssignment } from "@netfleet/shared";
import { AgentDaemon } from "./daemon.ts";
import { reconcilePass } from "./engine.ts";
import { SimulatedHostRunner } from "./testing/simulated-host.ts";
import { Toolbox } from "./tools.ts";

function sysctls(values: Record<string, string>): HostAssignment {
  return sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: "lab",
    host: "hv1",
    role: "vmhost",
    resources: Object.entries(values).map(([name, value]) => ({ kind: "sysctl" as const, name, value })),
  });
}

function daemonOn(host: SimulatedHostRunner, assignment: HostAssignment): AgentDaemon {
  return new AgentDaemon(assignment, { runner: host, tools: new Toolbox(), intervalMs: 60_000, flowIntervalMs: 60_000, watchEvents: false, log: () => {} });
}

describe("AgentDaemon.replace with a saved plan's observed-state hash (expectObserved)", () => {
  it("applies the plan's assignment when the host is as the plan saw it", async () => {
    const host = new SimulatedHostRunner({ sysctls: { "net.ipv4.ip_forward": "0" } });
    const daemon = daemonOn(host, sysctls({ "net.ipv4.ip_forward": "0" }));
    await daemon.request("full");
    const next = sysctls({ "net.ipv4.ip_forward": "1" });
    const { observed } = await reconcilePass(next.resources, { runner: host, tools: new Toolbox(), owner: "lab", check: true });
    expect(await daemon.replace(next, { expectObserved: observed })).toBe(true);
    expect(host.get("net.ipv4.ip_forward")).toBe("1");
    expect(daemon.status().hash).toBe(next.hash);
  });

  it("refuses when the host changed since: nothing runs, the refusal is the pass, and later passes keep the previous assignment", async () => {
    const host = new SimulatedHostRunner({ sysctls: { "net.ipv4.ip_forward": "0" } });
    const previous = sysctls({ "net.ipv4.ip_forward": "0" });
    const daemon = daemonOn(host, previous);
    await daemon.request("full");
    const next = sysctls({ "net.ipv4.ip_forward": "1" });
    const { observed } = await reconcilePass(next.resources, { runner: host, tools: new Toolbox(), owner: "lab", check: true });
    host.set("net.ipv4.ip_forward", "2"); // someone changed the host after the plan was made
    expect(await daemon.replace(next, { expectObserved: observed })).toBe(false);
    expect(host.get("net.ipv4.ip_forward")).toBe("2");
    expect(daemon.lastResults).toEqual([expect.objectContaining({ id: "plan", result: false, comment: expect.stringContaining("host changed since the plan") })]);
    expect(daemon.status().hash).toBe(previous.hash);
    // The next drift-repair pass converges the assignment still in force, not the refused one.
    await daemon.request("full");
    expect(host.get("net.ipv4.ip_forward")).toBe("0");
  });
});

describe("AgentDaemon.start on a host without VM ports or dnsmasq", () => {
  it("skips the VM-port-rules pass (ports-ready is still logged) and starts no dnsmasq watch; an assignment with dnsmasq starts it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nf-daemon-"));
    const host = new SimulatedHostRunner({ sysctls: { "net.ipv4.ip_forward": "0" } });
    const events: Record<string, unknown>[] = [];
    const tools = new Toolbox({ runDir: join(dir, "run"), stateDir: join(dir, "state") });
    const daemon = new AgentDaemon(sysctls({ "net.ipv4.ip_forward": "1" }), { runner: host, tools, intervalMs: 60_000, flowIntervalMs: 60_000, watchEvents: false, log: (e) => events.push(e) });
    try {
      await daemon.start();
      expect(daemon.passes).toBe(1);
      expect(events.filter((e) => e.event === "reconcile").map((e) => e.pass)).toEqual(["full"]);
      expect(events.map((e) => e.event)).toContain("ports-ready");
      expect(host.get("net.ipv4.ip_forward")).toBe("1");
      expect(daemon.watchingDnsmasq).toBe(false);
      // the gateway role arrives: its dnsmasq is watched from then on
      const withDns = sealAssignment({
        ...sysctls({ "net.ipv4.ip_forward": "1" }),
        resources: [
          { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" },
          { kind: "dnsmasq", name: "secure", interface: "gw-secure", address: "10.81.0.1", netmask: "255.255.255.0", domain: "secure.lab.test", router: true, mtu: 1500, maxTtl: 600, hosts: [], dns: "open", upstream: [] },
        ],
      } as HostAssignment);
      await daemon.replace(withDns);
      expect(daemon.watchingDnsmasq).toBe(true);
    } finally {
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
