/** The two-way probes' answers: a positive answer proves the path; silence is "blocked" only when the tool ran. */
import type { Runner } from "@netfleet/agent";
import { cidrContains, ipv4ToInt, parseIpv4Block, type Network } from "@netfleet/shared";
import type { LabVm } from "../types.ts";
import { dig, type PingResult, type TcpResult } from "./probes.ts";
import type { Answer } from "./rows.ts";

/** A ping's answer: "reach" when any reply came back. */
export function pingAnswer(p: PingResult): Answer {
  if (!p.ran) return { got: "error", detail: p.why };
  return p.received > 0 ? { got: "reach", detail: p.summary } : { got: "blocked", detail: p.summary };
}

/** A TCP connect's answer: "blocked", or through with the source address the far end saw ("masqueraded" when it is the backend's). */
export function tcpAnswer(c: TcpResult, masqueradeAddress: string): Answer {
  if (!c.ran) return { got: "error", detail: c.why };
  if (!c.connected) return { got: "blocked", detail: `${c.reason}: ${c.message}` };
  return c.peer === masqueradeAddress ? { got: "masqueraded", detail: `arrived from ${c.peer}` } : { got: "unmasqueraded", detail: `arrived from ${c.peer}` };
}

/** Asks `server` for `name`: "resolve" when `expected` is among the A records; a denial (REFUSED, NXDOMAIN, no records) is "refused". */
export async function resolve(runner: Runner, vm: LabVm, server: string, name: string, expected: string): Promise<Answer> {
  const r = await dig(runner, vm.namespace, server, name);
  if (!r.ran) return { got: "error", detail: r.why };
  if (r.answers.includes(expected)) return { got: "resolve", detail: r.answers.join(",") };
  if (r.answers.length > 0) return { got: "wrong-answer", detail: `${r.status}: ${r.answers.join(",")} (expected ${expected})` };
  if (r.status === "REFUSED" || r.status === "NXDOMAIN" || r.status === "NOERROR") return { got: "refused", detail: r.status };
  return { got: "error", detail: `the server answered ${r.status}` };
}

/** Whether the inventory lets `vm` open TCP `port` on `address` (by address, or by a name that resolves to it). */
export function allowed(net: Network, vmName: string, address: string, port: number, names: Record<string, string>): boolean {
  if (net.egress === "open") return true;
  const vm = net.vms.find((v) => v.name === vmName);
  if (!vm?.ip) return false;
  return vm.allow.some((a) => {
    if (a.proto !== "tcp" || (a.ports && !a.ports.includes(port))) return false;
    if (a.to) {
      const cidr = parseIpv4Block(a.to);
      return typeof cidr !== "string" && cidrContains(cidr, ipv4ToInt(address));
    }
    return a.name !== undefined && names[a.name] === address;
  });
}
