import { describe, expect, it } from "vitest";
import { sealAssignment } from "@netfleet/shared";
import { AgentDaemon } from "./daemon.ts";
import { mutate, read } from "./exec/runner.ts";
import { AgentMetrics, meteredRunner, programName, resourceKind } from "./metrics.ts";
import { SimulatedHostRunner } from "./testing/simulated-host.ts";
import { Toolbox } from "./tools.ts";

/** The metric's samples as { labels → value } (prom-client's JSON view of the registry). */
async function samples(m: AgentMetrics, name: string): Promise<{ labels: Record<string, string | number>; value: number; metricName?: string }[]> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name);
  if (!metric) throw new Error(`no metric ${name}`);
  return metric.values as { labels: Record<string, string | number>; value: number; metricName?: string }[];
}

describe("the agent's metrics (prom-client registry)", () => {
  it("registers the names, types and labels it documents, and process defaults", async () => {
    const m = new AgentMetrics({ version: "1.2.3" });
    const byName = new Map((await m.registry.getMetricsAsJSON()).map((x) => [x.name, x]));
    expect(byName.get("netfleet_agent_reconcile_duration_seconds")).toMatchObject({ type: "histogram" });
    for (const name of ["netfleet_agent_reconcile_failed_total", "netfleet_agent_commands_total", "netfleet_agent_commands_failed_total", "netfleet_agent_corrective_changes_total", "netfleet_agent_nats_reconnects_total"]) {
      expect(byName.get(name), name).toMatchObject({ type: "counter" });
    }
    expect(byName.get("netfleet_agent_last_reconcile_timestamp_seconds")).toMatchObject({ type: "gauge" });
    expect(await samples(m, "netfleet_agent_info")).toEqual([{ labels: { version: "1.2.3" }, value: 1 }]);
    expect(byName.has("process_cpu_user_seconds_total")).toBe(true);
    expect(byName.has("nodejs_eventloop_lag_seconds")).toBe(true);
    expect(new Set((await new AgentMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((x) => x.name)).has("process_cpu_user_seconds_total")).toBe(false);
  });

  it("labels a command by argv[0]'s base name only, and a resource by its kind", () => {
    expect(programName(["ovs-vsctl", "--", "set", "Bridge", "br0", "other_config:x=1"])).toBe("ovs-vsctl");
    expect(programName(["/usr/sbin/nft", "-f", "-"])).toBe("nft");
    expect(programName(["/usr/bin/virsh", "-c", "qemu:///system", "net-list"])).toBe("virsh");
    expect(programName([])).toBe("other");
    expect(programName(["ip link$(reboot)"])).toBe("other");
    expect(resourceKind("ovs-bridge[br-secure]")).toBe("ovs-bridge");
    expect(resourceKind("sysctl[net.ipv4.ip_forward]")).toBe("sysctl");
  });

  it("meteredRunner counts each command run and failed by program (a probe allowed to fail is not failed), passes results and errors on, and never exposes an argument", async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    const host = new SimulatedHostRunner({ failWrites: /^kernel\.forbidden=/ });
    const lines: Record<string, unknown>[] = [];
    const runner = meteredRunner(host, m, (e) => lines.push(e));
    expect((await runner.run(read("sysctl", "-n", "net.ipv4.ip_forward"))).stdout).toBe("0\n");
    await runner.run(mutate(["sysctl", "-w", "net.ipv4.ip_forward=1"]));
    await expect(runner.run(mutate(["sysctl", "-w", "kernel.forbidden=1"]))).rejects.toThrow(/permission denied/);
    expect((await runner.run(mutate(["sysctl", "-w", "kernel.forbidden=1"]), { allowFailure: true })).exitCode).toBe(1);
    await expect(runner.run(read("/usr/bin/ovs-vsctl", "list-br"))).rejects.toThrow(/only sysctl exists/);
    expect(await samples(m, "netfleet_agent_commands_total")).toEqual([
      { labels: { program: "sysctl" }, value: 4 },
      { labels: { program: "ovs-vsctl" }, value: 1 },
    ]);
    expect(await samples(m, "netfleet_agent_commands_failed_total")).toEqual([
      { labels: { program: "sysctl" }, value: 1 },
      { labels: { program: "ovs-vsctl" }, value: 1 },
    ]);
    const text = (await m.page()).body;
    expect(text).toContain('netfleet_agent_commands_total{program="sysctl"} 4');
    expect(text).not.toMatch(/net\.ipv4|forbidden|list-br/);
    // One debug line per command (argv, never stdin), for --log-level debug.
    expect(lines).toHaveLength(5);
    expect(lines[2]).toMatchObject({ event: "command", level: "debug", program: "sysctl", argv: ["sysctl", "-w", "kernel.forbidden=1"], exitCode: 1 });
    expect(lines[4]).toMatchObject({ program: "ovs-vsctl", exitCode: 127 });
  });

  it("the daemon times each pass in the histogram by pass kind, counts failed passes, and logs a quiet partial pass at debug only", async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    const host = new SimulatedHostRunner({ failWrites: /^kernel\.forbidden=/ });
    const events: Record<string, unknown>[] = [];
    const assignment = sealAssignment({
      apiVersion: "netfleet.dev/v1",
      kind: "HostAssignment",
      site: "lab",
      host: "hv1",
      role: "vmhost",
      resources: [
        { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" },
        { kind: "sysctl", name: "kernel.forbidden", value: "1" },
      ],
    });
    const daemon = new AgentDaemon(assignment, { runner: meteredRunner(host, m), tools: new Toolbox(), intervalMs: 60_000, flowIntervalMs: 60_000, watchEvents: false, log: (e) => events.push(e), metrics: m });
    await daemon.request("full");
    await daemon.request("ports");
    const histogram = await samples(m, "netfleet_agent_reconcile_duration_seconds");
    expect(histogram.find((s) => s.metricName === "netfleet_agent_reconcile_duration_seconds_count" && s.labels.pass === "full")?.value).toBe(1);
    expect(histogram.find((s) => s.metricName === "netfleet_agent_reconcile_duration_seconds_count" && s.labels.pass === "ports")?.value).toBe(1);
    expect(histogram.find((s) => s.metricName === "netfleet_agent_reconcile_duration_seconds_bucket" && s.labels.pass === "full" && s.labels.le === "+Inf")?.value).toBe(1);
    expect(await samples(m, "netfleet_agent_reconcile_failed_total")).toEqual([{ labels: { pass: "full" }, value: 1 }]);
    expect((await samples(m, "netfleet_agent_last_reconcile_timestamp_seconds"))[0]!.value).toBeGreaterThan(Date.now() / 1000 - 60);
    expect((await samples(m, "netfleet_agent_commands_total"))[0]).toEqual({ labels: { program: "sysctl" }, value: expect.any(Number) });
    const reconciles = events.filter((e) => e.event === "reconcile");
    expect(reconciles).toEqual([
      expect.objectContaining({ pass: "full", failed: 1, changed: 1 }),
      expect.objectContaining({ pass: "ports", level: "debug", changed: 0, failed: 0 }),
    ]);
    expect(reconciles[0]).not.toHaveProperty("level");
  });
});
