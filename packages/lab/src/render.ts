import type { CheckRow } from "./checks/rows.ts";
import { labCommand } from "./playground.ts";
import type { LabStatus } from "./types.ts";

/** The columns `netfleet-lab check` and `netfleet-lab attack` share. */
export type ReportRow = Pick<CheckRow, "check" | "from" | "to" | "ok" | "detail"> & { expect: string; got: string };

/** A table of probe rows, one line each, and a last line `<ok>/<all> checks as expected`. */
export function rowLines(rows: ReportRow[]): string[] {
  const w = (s: string, n: number) => s.padEnd(n);
  const width = (key: "check" | "from" | "to", min: number) => Math.max(min, ...rows.map((r) => r[key].length));
  const [c, f, t] = [width("check", 28), width("from", 8), width("to", 30)];
  const out = [`${w("check", c)} ${w("from", f)} ${w("to", t)} ${w("expect", 12)} ${w("got", 12)} ok`];
  for (const r of rows) out.push(`${w(r.check, c)} ${w(r.from, f)} ${w(r.to, t)} ${w(r.expect, 12)} ${w(r.got, 12)} ${r.ok ? "yes" : "NO"}${r.detail ? `  (${r.detail})` : ""}`);
  const failed = rows.filter((r) => !r.ok).length;
  out.push(`${rows.length - failed}/${rows.length} checks as expected`);
  return out;
}

/**
 * `netfleet-lab status` as text: up or down with its problems, the site it
 * runs and its controller (state dir, NATS URL, a `netfleet` command line to
 * append a command to), then one line per host and per VM.
 */
export function statusLines(st: LabStatus): string[] {
  const out = [`lab ${st.prefix}: ${st.up ? "up" : "down"}${st.problems?.length ? ` (${st.problems.join("; ")})` : ""}`];
  if (st.inventoryDir) out.push(`  site       ${st.inventoryDir}`);
  if (st.controller) {
    const c = st.controller;
    out.push(`  controller netns ${c.namespace}, state dir ${c.stateDir}, NATS ${c.nats}`);
    out.push(`  netfleet   ${c.command}`);
    out.push(`             (as root; append a command, e.g. status, or rollout DIR --check; ${labCommand(st, ["rollout", "DIR"])} rolls out and checks)`);
  }
  for (const h of st.hosts) out.push(`  host ${h.name.padEnd(8)} ${h.role.padEnd(8)} netns ${h.namespace} ${h.mgmtAddress ?? ""}`);
  for (const v of st.vms) out.push(`  vm   ${v.name.padEnd(8)} ${v.kind.padEnd(9)} on ${v.host.padEnd(6)} ${v.network.padEnd(8)} ${v.mac} ${v.ip ?? "-"} ${v.namespace || v.state || ""}`);
  return out;
}
