import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DecodeError, decodeAssignment } from "@netfleet/shared";
import { reconcile, summarize } from "./engine.ts";
import { ExecaRunner } from "./exec/runner.ts";
import type { ResourceResult } from "./resources/types.ts";
import { Toolbox } from "./tools.ts";
import { AgentDaemon } from "./daemon.ts";
import { unwatchFile, watchFile } from "node:fs";
import type { HostAssignment } from "@netfleet/shared";

const HELP = `netfleet-agent — reconciles this host to its netfleet assignment

Usage:
  netfleet-agent apply --assignment FILE [--check] [--json] [tool options]
  netfleet-agent run --assignment FILE [--interval S] [--flow-interval S] [tool options]
      keeps the host converged: follows OVS port changes and libvirt domain
      events, re-reads FILE when it changes, logs JSON lines; stopping it
      (SIGTERM) leaves the host as it is

Tool options (defaults suit a normal host):
  --ovs-db PATH        ovsdb socket (default /run/openvswitch/db.sock)
  --ovs-rundir DIR     OVS run dir holding <bridge>.mgmt sockets
  --libvirt-uri URI    libvirt connection (default qemu:///system)
  --run-dir DIR        the agent's own files: dnsmasq configs, pids, leases (default /run/netfleet)

Exit codes: 0 converged (or nothing to change in check mode), 1 runtime error,
2 invalid assignment (nothing changed), 3 some resource failed.
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      strict: true,
      options: {
        assignment: { type: "string" },
        check: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        "ovs-db": { type: "string" },
        "ovs-rundir": { type: "string" },
        "libvirt-uri": { type: "string" },
        "run-dir": { type: "string" },
        interval: { type: "string", default: "30" },
        "flow-interval": { type: "string", default: "2" },
      },
    });
  } catch (err) {
    process.stderr.write(`netfleet-agent: ${(err as Error).message}\n`);
    return 64;
  }
  if (command !== "apply" && command !== "run") {
    process.stdout.write(HELP);
    return command === undefined || command === "help" || command === "--help" ? 0 : 64;
  }
  const file = parsed.values.assignment;
  if (!file) {
    process.stderr.write("netfleet-agent apply: --assignment FILE is required\n");
    return 64;
  }
  let assignment;
  try {
    assignment = decodeAssignment(file, readFileSync(file, "utf8"));
  } catch (err) {
    if (err instanceof DecodeError || (err as NodeJS.ErrnoException).code === "ENOENT") {
      process.stderr.write(`netfleet-agent: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
  const v = parsed.values;
  const tools = new Toolbox({
    ...(v["ovs-db"] ? { ovsDb: v["ovs-db"] } : {}),
    ...(v["ovs-rundir"] ? { ovsRundir: v["ovs-rundir"] } : {}),
    ...(v["libvirt-uri"] ? { libvirtUri: v["libvirt-uri"] } : {}),
    ...(v["run-dir"] ? { runDir: v["run-dir"] } : {}),
  });
  if (command === "run") {
    return runDaemon(file, assignment, tools, Number(v.interval) * 1000, Number(v["flow-interval"]) * 1000);
  }
  const started = performance.now();
  const results = await reconcile(assignment.resources, { runner: new ExecaRunner(), tools, owner: assignment.site, check: v.check });
  const summary = summarize(results);
  const wallMs = Math.round(performance.now() - started);
  if (v.json) {
    process.stdout.write(JSON.stringify({ host: assignment.host, hash: assignment.hash, check: v.check, summary, wallMs, results }, null, 2) + "\n");
  } else {
    for (const r of results) process.stdout.write(formatResult(r));
    process.stdout.write(`${assignment.host}: ${summary.ok} ok, ${summary.changed} changed, ${summary.pending} would change, ${summary.failed} failed (${wallMs} ms)\n`);
  }
  return summary.failed > 0 ? 3 : 0;
}

function formatResult(r: ResourceResult): string {
  const mark = r.result === false ? "FAILED " : r.result === null ? "CHANGE?" : r.changed ? "changed" : "ok     ";
  let text = `${mark} ${r.id}${r.comment && r.result !== true ? `: ${r.comment}` : ""}\n`;
  for (const [k, c] of Object.entries(r.changes)) text += `          ${k}: ${JSON.stringify(c.old)} -> ${JSON.stringify(c.new)}\n`;
  if (r.error) text += `          error: ${r.error}\n`;
  return text;
}

async function runDaemon(file: string, assignment: HostAssignment, tools: Toolbox, intervalMs: number, flowIntervalMs: number): Promise<number> {
  if (!(intervalMs >= 1000) || !(flowIntervalMs >= 200)) {
    process.stderr.write("netfleet-agent run: --interval must be >= 1 and --flow-interval >= 0.2 (seconds)\n");
    return 64;
  }
  const log = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), ...event }) + "\n");
  const daemon = new AgentDaemon(assignment, { runner: new ExecaRunner(), tools, intervalMs, flowIntervalMs, watchEvents: true, log });
  log({ event: "start", host: assignment.host, hash: assignment.hash, pid: process.pid });
  await daemon.start();
  watchFile(file, { interval: 1000 }, () => {
    try {
      const next = decodeAssignment(file, readFileSync(file, "utf8"));
      if (next.hash !== assignment.hash) {
        assignment = next;
        log({ event: "assignment", hash: next.hash });
        void daemon.replace(next);
      }
    } catch (err) {
      // A bad document changes nothing: the host keeps its current state.
      log({ event: "assignment-rejected", error: (err as Error).message });
    }
  });
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  unwatchFile(file);
  await daemon.stop();
  log({ event: "stop", host: assignment.host });
  return 0;
}
