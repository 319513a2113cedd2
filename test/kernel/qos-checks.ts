import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sealAssignment, type ResourceSpec } from "@netfleet/shared";
import type { GuestReader } from "./management-checks.ts";

/**
 * Kernel-tier rows for VM bandwidth limits on OVS's kernel datapath (issue
 * 19; registered by kernel.test.ts, which boots the guest once; the guest
 * side is guest/qos.sh): qa limited to 2 Mbit/s each way (an OpenFlow
 * meter for what it sends, a linux-htb QoS for what it receives), qb
 * unlimited (the positive control), measured with iperf3 against qs: TCP
 * for what a VM sends, UDP offered at 5 Mbit/s for what it receives (see
 * guest/qos.sh; iperf3's UDP payload is 1460 of the 1502 bytes htb counts
 * per frame, so 2 Mbit/s shaped measures 1.94).
 * The limit is low because everything runs under emulation (TCG): on a
 * loaded machine the unlimited VM measured 18-22 Mbit/s, and a 10 Mbit/s
 * limit came out at 4.4 (meter) and 2.3 (htb), the guest's timers and CPU
 * rather than the limit deciding.
 */

/** The limit of qa, each way (bit/s); its bursts: a meter needs a large one for TCP (80 % of the rate), htb a small one. */
export const QOS_LIMIT = 2_000_000;
const MACS = { qa: "52:54:00:77:00:01", qb: "52:54:00:77:00:02", qs: "52:54:00:77:00:03" } as const;

/** Writes `<dir>/kvm1.json`: kvm1's vm-port-policy for br-qos with qa limited, sealed as the controller seals. */
export function writeQosAssignment(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const resources: ResourceSpec[] = [
    {
      kind: "vm-port-policy",
      name: "br-qos",
      network: "qos",
      uplinkPort: "qos-up",
      gateway: { ip: "10.77.0.1", mac: "02:4e:46:00:07:7d" },
      isolatedDefault: false,
      cookie: "0x4e4600000000077d",
      vms: [
        { name: "qa", mac: MACS.qa, ip: "10.77.0.11", isolated: false, bandwidth: { egress: { rate: QOS_LIMIT, burst: 1_600_000 }, ingress: { rate: QOS_LIMIT, burst: 1_000_000 } } },
        { name: "qb", mac: MACS.qb, ip: "10.77.0.12", isolated: false },
        { name: "qs", mac: MACS.qs, ip: "10.77.0.13", isolated: false },
      ],
    },
  ];
  const doc = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "ktest", host: "kvm1", role: "vmhost", resources });
  writeFileSync(join(dir, "kvm1.json"), JSON.stringify(doc, null, 2) + "\n");
}

interface IperfEnd {
  end: { sum_received: { bits_per_second: number } };
}

export function qosTests(g: GuestReader): void {
  /** bit/s of payload received at the far end of one recorded iperf3 run (TCP or UDP: iperf3 3.12 reports `sum_received` for both). */
  const rate = (name: string): number => {
    const raw = g.text(`qos/iperf-${name}.out`);
    expect(g.rc(`qos/iperf-${name}`), raw.slice(0, 500)).toBe(0);
    return (JSON.parse(raw) as IperfEnd).end.sum_received.bits_per_second;
  };

  describe("VM bandwidth on the kernel datapath (br-qos: qa limited to 2 Mbit/s each way, qb not; iperf3 against qs)", () => {
    it("the agent's apply gives qa a meter (id = its ofport, 2000 kbps, 1600 kbit) named by its rules and a linux-htb QoS of ours; qb neither", () => {
      const apply = JSON.parse(g.text("qos/apply.json")) as { results: { id: string; result: boolean | null; comment: string }[] };
      expect(g.rc("qos/apply"), JSON.stringify(apply.results)).toBe(0);
      const ofport = Number(g.text("qos/ofport-qa.out").trim());
      expect(g.text("qos/meters.out")).toContain(`meter=${ofport} kbps burst bands=\ntype=drop rate=2000 burst_size=1600`);
      const qaRules = g.text("qos/flows.out").split("\n").filter((l) => l.includes(`in_port=${ofport}`) && !l.includes("actions=drop"));
      expect(qaRules.length).toBeGreaterThan(0);
      for (const r of qaRules) expect(r).toContain(`actions=meter:${ofport},`);
      const qos = g.text("qos/qos-qa.out");
      expect(qos).toContain('"linux-htb"');
      expect(qos).toContain('["max-rate","20000000"]'); // the root, ten times the queue's rate
      expect(qos).toContain('["max-rate","2000000"]'); // the queue
      expect(qos).toContain('["netfleet-owner","ktest"]');
      // OVS made the htb classes on qa's device: the root at 2 Mbit/s, queue 0 (1:1) capped at it.
      expect(g.text("qos/tc-qa.out")).toMatch(/class htb 1:1 parent 1:fffe .*ceil 2Mbit/);
      expect(g.text("qos/tc-qb.out")).not.toContain("htb");
    });

    it("qa lands within ±15 % of 2 Mbit/s both ways; qb, on the same bridge, clearly exceeds it both ways", () => {
      const figures = { qaOut: rate("qa-out"), qaIn: rate("qa-in"), qbOut: rate("qb-out"), qbIn: rate("qb-in") };
      process.stderr.write(`kernel qos (Mbit/s): ${JSON.stringify(Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, Math.round(v / 1e5) / 10])))}\n`);
      expect(Math.abs(figures.qaOut - QOS_LIMIT) / QOS_LIMIT, `qa sends ${figures.qaOut}`).toBeLessThanOrEqual(0.15);
      expect(Math.abs(figures.qaIn - QOS_LIMIT) / QOS_LIMIT, `qa receives ${figures.qaIn}`).toBeLessThanOrEqual(0.15);
      expect(figures.qbOut).toBeGreaterThan(1.5 * QOS_LIMIT);
      expect(figures.qbIn).toBeGreaterThan(1.5 * QOS_LIMIT);
    });
  });
}
