/**
 * Entry point of the agent bundle that `netfleet bootstrap` builds (esbuild,
 * from the package export `@netfleet/agent/bundle-entry`) and uploads
 * (/opt/netfleet/agent.mjs). Besides everything `netfleet-agent` does:
 *
 *   config-run FILE                      netfleet-agent run with the settings of FILE (agent.json);
 *                                        the token never appears on a command line. Started by
 *                                        `supervise` (NETFLEET_AGENT_SUPERVISED=1), it also follows
 *                                        its agent upgrade target (fleet/upgrade.ts) on a second
 *                                        connection as the agent's own NATS user
 *   supervise FILE                       config-run FILE as a child, and the agent upgrade's
 *                                        swap and revert around it (fleet/upgrade-supervisor.ts):
 *                                        what systemd's ExecStart and start-detached run
 *   start-detached FILE PIDFILE LOG      hosts without systemd: supervise in its own session,
 *                                        output to LOG, pid to PIDFILE; says "running PID" when
 *                                        one already runs
 *   stop-detached PIDFILE                SIGTERM (SIGKILL after 15 s) the one PIDFILE names
 *   status-detached PIDFILE              exit 0 and its pid when running, else exit 3
 */
import { spawn } from "node:child_process";
import { closeSync, constants, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { checkAgentConfig } from "./config.ts";
import { startUpgradeSidecar, supervise, SUPERVISED_ENV } from "./fleet/upgrade-supervisor.ts";
import { main, runConfig } from "./main.ts";
import { AGENT_VERSION } from "./version.ts";

const SELF = fileURLToPath(import.meta.url);

function readConfig(file: string) {
  return checkAgentConfig(JSON.parse(readFileSync(file, "utf8")), file);
}

/** The pid in `pidfile` when it is alive and is `supervise` (or, started by an older bundle, `config-run`) of this bundle. */
function runningPid(pidfile: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidfile, "utf8").trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (/^\S+ \(.*\) [ZX]/.test(stat)) return undefined;
    const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return args.includes(SELF) && (args.includes("supervise") || args.includes("config-run")) ? pid : undefined;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startDetached(config: string, pidfile: string, log: string): Promise<number> {
  readConfig(config);
  const running = runningPid(pidfile);
  if (running !== undefined) {
    process.stdout.write(`running ${running}\n`);
    return 0;
  }
  mkdirSync(dirname(pidfile), { recursive: true });
  mkdirSync(dirname(log), { recursive: true });
  // O_NOFOLLOW: a link planted at the log path is refused (ELOOP), not written through (open(2)).
  const fd = openSync(log, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [SELF, "supervise", config], { detached: true, stdio: ["ignore", fd, fd], cwd: "/" });
    pid = child.pid;
    if (pid === undefined) throw new Error("could not start the agent");
    child.unref();
    writeFileSync(pidfile, `${pid}\n`);
  } finally {
    closeSync(fd);
  }
  // A config or runtime error ends it at once: say so here, not later in the log only.
  await sleep(1000);
  if (runningPid(pidfile) === undefined) {
    process.stderr.write(`the agent exited right after starting; see ${log}\n`);
    return 1;
  }
  process.stdout.write(`started ${pid}\n`);
  return 0;
}

async function stopDetached(pidfile: string): Promise<number> {
  const pid = runningPid(pidfile);
  if (pid === undefined) {
    process.stdout.write("not running\n");
    return 0;
  }
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 150 && runningPid(pidfile) !== undefined; i++) await sleep(100);
  if (runningPid(pidfile) !== undefined) process.kill(pid, "SIGKILL");
  rmSync(pidfile, { force: true });
  process.stdout.write(`stopped ${pid}\n`);
  return 0;
}

async function entry(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  const usage = (text: string) => {
    process.stderr.write(`usage: agent.mjs ${text}\n`);
    return 64;
  };
  switch (command) {
    case "config-run": {
      if (args.length !== 1) return usage("config-run FILE");
      const config = readConfig(args[0]!);
      if (process.env[SUPERVISED_ENV] !== "1") return runConfig(config);
      const log = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), ...event }) + "\n");
      const stop = startUpgradeSidecar({ site: config.site, servers: config.nats, stateDir: config.stateDir ?? "/var/lib/netfleet-agent", bundle: SELF, version: AGENT_VERSION, log });
      try {
        return await runConfig(config);
      } finally {
        await stop();
      }
    }
    case "supervise": {
      if (args.length !== 1) return usage("supervise FILE");
      readConfig(args[0]!);
      const log = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), supervisor: process.pid, ...event }) + "\n");
      return supervise({ bundle: SELF, config: args[0]!, log });
    }
    case "start-detached":
      if (args.length !== 3) return usage("start-detached FILE PIDFILE LOG");
      return startDetached(args[0]!, args[1]!, args[2]!);
    case "stop-detached":
      if (args.length !== 1) return usage("stop-detached PIDFILE");
      return stopDetached(args[0]!);
    case "status-detached": {
      if (args.length !== 1) return usage("status-detached PIDFILE");
      const pid = runningPid(args[0]!);
      if (pid !== undefined) process.stdout.write(`${pid}\n`);
      return pid === undefined ? 3 : 0;
    }
    default:
      return main(argv);
  }
}

process.exitCode = await entry(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`netfleet-agent: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
});
// Under the supervisor nothing may keep a stopped agent alive (a NATS reconnect timer of the upgrade side).
if (process.env[SUPERVISED_ENV] === "1") process.exit();
