import { resolve } from "node:path";
import { loadInventory } from "@netfleet/shared";
import { labAttack } from "../../../lab/src/checks/attack-run.ts";
import { connectivityProbes, runProbes } from "../../../lab/src/checks/connectivity.ts";
import type { CheckRow } from "../../../lab/src/checks/rows.ts";
import { labDown, labStatus, labUp, type LabOptions, type LabStatus } from "../../../lab/src/index.ts";
import type { CommandOutput } from "../output.ts";

export const DEFAULT_LAB_PREFIX = "nf";

export function labOptions(values: { prefix?: string; "run-dir"?: string; inventory?: string }): LabOptions {
  const repoRoot = resolve(import.meta.dirname, "..", "..", "..", "..");
  const prefix = values.prefix ?? DEFAULT_LAB_PREFIX;
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) throw new Error(`--prefix must be 1-6 of a-z 0-9, starting with a letter (got ${JSON.stringify(prefix)})`);
  return {
    inventoryDir: resolve(values.inventory ?? resolve(repoRoot, "inventories", "lab")),
    prefix,
    runDir: resolve(values["run-dir"] ?? `/run/netfleet-lab/${prefix}`),
    repoRoot,
  };
}

export async function labCheck(o: LabOptions, status?: LabStatus): Promise<CheckRow[]> {
  const st = status ?? (await labStatus(o));
  if (!st.up) throw new Error(`the lab is not up: ${(st.problems ?? []).join("; ") || "run netfleet lab up"}`);
  return runProbes(connectivityProbes(loadInventory(o.inventoryDir), st));
}

/** The columns `lab check` and `lab attack` share. */
export type ReportRow = Pick<CheckRow, "check" | "from" | "to" | "ok" | "detail"> & { expect: string; got: string };

export function printRows(rows: ReportRow[], out: CommandOutput): void {
  const w = (s: string, n: number) => s.padEnd(n);
  const width = (key: "check" | "from" | "to", min: number) => Math.max(min, ...rows.map((r) => r[key].length));
  const [c, f, t] = [width("check", 28), width("from", 8), width("to", 30)];
  out.line(`${w("check", c)} ${w("from", f)} ${w("to", t)} ${w("expect", 12)} ${w("got", 12)} ok`);
  for (const r of rows) out.line(`${w(r.check, c)} ${w(r.from, f)} ${w(r.to, t)} ${w(r.expect, 12)} ${w(r.got, 12)} ${r.ok ? "yes" : "NO"}${r.detail ? `  (${r.detail})` : ""}`);
  const failed = rows.filter((r) => !r.ok).length;
  out.line(`${rows.length - failed}/${rows.length} checks as expected`);
}

export async function labCommand(sub: string | undefined, o: LabOptions, out: CommandOutput): Promise<number> {
  switch (sub) {
    case "up": {
      const st = await labUp(o, out.json ? () => {} : (line) => out.line(line));
      if (out.json) out.emit(st);
      else out.line(`lab ${o.prefix} is up: ${st.hosts.length} hosts, ${st.vms.length} VMs (netfleet lab status for details)`);
      return st.up ? 0 : 1;
    }
    case "down":
      await labDown(o);
      if (out.json) out.emit({ down: true, prefix: o.prefix });
      else out.line(`lab ${o.prefix} is down; nothing left behind`);
      return 0;
    case "status": {
      const st = await labStatus(o);
      if (out.json) out.emit(st);
      else {
        out.line(`lab ${o.prefix}: ${st.up ? "up" : "down"}${st.problems?.length ? ` (${st.problems.join("; ")})` : ""}`);
        for (const h of st.hosts) out.line(`  host ${h.name.padEnd(8)} ${h.role.padEnd(8)} netns ${h.namespace} ${h.mgmtAddress ?? ""}`);
        for (const v of st.vms) out.line(`  vm   ${v.name.padEnd(8)} ${v.kind.padEnd(9)} on ${v.host.padEnd(6)} ${v.network.padEnd(8)} ${v.mac} ${v.ip ?? "-"} ${v.namespace || v.state || ""}`);
      }
      return st.up ? 0 : 1;
    }
    case "check": {
      const rows = await labCheck(o);
      if (out.json) out.emit(rows);
      else printRows(rows, out);
      return rows.every((r) => r.ok) ? 0 : 1;
    }
    case "attack": {
      const rows = await labAttack(loadInventory(o.inventoryDir), await labStatus(o));
      if (out.json) out.emit(rows);
      else printRows(rows, out);
      return rows.every((r) => r.ok) ? 0 : 1;
    }
    default:
      out.error("netfleet lab: usage: netfleet lab up|down|status|check|attack [--json] [--prefix P] [--run-dir DIR]");
      return 64;
  }
}
