import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { Backoff, connectNats, pause } from "./connection.ts";
import { SigningTrust } from "./desired.ts";
import { AgentState } from "./state.ts";
import { AgentUpgrader } from "./upgrade.ts";
import { readMarker, revertUpgrade, swapIn, upgradePaths, type UpgradeMarker } from "./upgrade-files.ts";

/** Set in the environment of the agent the supervisor starts: upgrades are possible (AgentUpgraderOptions.supervised). */
export const SUPERVISED_ENV = "NETFLEET_AGENT_SUPERVISED";

/** How long a child has after SIGTERM before SIGKILL (ms): under the 10 s every stop must take. */
const KILL_AFTER_MS = 8000;

/** What the supervisor runs: `node <bundle> config-run <config>`. */
export interface SuperviseOptions {
  /** The bundle in force (P): the supervisor's own file. */
  bundle: string;
  /** The agent's config file (agent.json). */
  config: string;
  /** How often the marker is read during a trial (ms, default 250). */
  pollMs?: number;
  /**
   * Start the child through util-linux `setpriv --pdeathsig KILL` (default
   * true, as serve starts nats-server: controller nats/server.ts): the
   * kernel SIGKILLs the agent when the supervisor's thread that spawned it
   * dies, a SIGKILL of the supervisor included (prctl(2) PR_SET_PDEATHSIG,
   * kept across execve(2) of a binary that is not set-user-ID and has no
   * file capabilities; setpriv(1)). setpriv execs node, so the child's pid
   * is the agent's. When no `setpriv` is on PATH (not Linux, or util-linux
   * missing) the child is started directly, logged once as
   * `supervisor-no-pdeathsig`: it then outlives a SIGKILLed supervisor
   * unless something else ends it (systemd's KillMode= ends the unit's whole
   * cgroup). False: always start it directly.
   */
  dieWithParent?: boolean;
  log?: (event: Record<string, unknown>) => void;
}

/**
 * `agent.mjs supervise FILE`: the small launcher that makes agent upgrades
 * safe. It runs `node P config-run FILE` as its child (with
 * NETFLEET_AGENT_SUPERVISED=1) and, when the child ends:
 *   - the marker says "staged" (the agent verified and wrote P.next and
 *     stopped itself): swap (P kept as P.prev, P.next renamed over P) and
 *     start the new P on trial;
 *   - the marker says "trying" (the new version exited before it reported):
 *     revert (P.prev renamed back over P) and start the previous version;
 *   - else (a stop, or a crash of a committed version): exit with the
 *     child's code, as before; systemd's Restart= or the operator decides.
 * During a trial it also reverts when the child has not committed within
 * the marker's `trialS` (the child is stopped first). The supervisor's own
 * code stays the one it was started with (the file is replaced under it,
 * Node has it loaded), so a crash-looping new bundle cannot take the revert
 * with it. SIGTERM/SIGINT are passed to the child (SIGKILL after 8 s); the
 * supervisor then exits with the child's code. The child dies with the
 * supervisor, also when it is SIGKILLed (see SuperviseOptions.dieWithParent).
 * Returns the exit code.
 * Under systemd with Type=notify the unit needs NotifyAccess=all (the
 * readiness comes from the child).
 */
export async function supervise(o: SuperviseOptions): Promise<number> {
  const log = o.log ?? (() => {});
  const paths = upgradePaths(o.bundle);
  const setpriv = (o.dieWithParent ?? true) ? findOnPath("setpriv") : undefined;
  if ((o.dieWithParent ?? true) && !setpriv) log({ event: "supervisor-no-pdeathsig", reason: "no setpriv on PATH: the agent would outlive a killed supervisor" });
  const agentArgv: [string, string[]] = setpriv
    ? [setpriv, ["--pdeathsig", "KILL", "--", process.execPath, o.bundle, "config-run", o.config]]
    : [process.execPath, [o.bundle, "config-run", o.config]];
  let child: ChildProcess | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    stopping = true;
    child?.kill(signal);
    setTimeout(() => child?.kill("SIGKILL"), KILL_AFTER_MS).unref();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    for (;;) {
      let marker = readMarker(paths);
      if (marker?.state === "staged") {
        marker = await swapIn(paths, marker);
        log({ event: marker.state === "trying" ? "upgrade-trying" : "upgrade-reverted", from: marker.from.version, to: marker.to.version, ...(marker.reason ? { reason: marker.reason } : {}) });
      }
      if (stopping) return 0;
      const started = Date.now();
      child = spawn(agentArgv[0], agentArgv[1], { stdio: "inherit", env: { ...process.env, [SUPERVISED_ENV]: "1" } });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child!.once("exit", (code, signal) => resolve({ code, signal })));
      const trial = marker?.state === "trying" ? watchTrial(paths, marker, o.pollMs ?? 250, exited) : undefined;
      const outcome = await Promise.race([exited.then((e) => ({ kind: "exit" as const, ...e })), ...(trial ? [trial] : [])]);
      if (outcome.kind === "timeout") {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child?.kill("SIGKILL"), KILL_AFTER_MS);
        await exited;
        clearTimeout(timer);
        const m = await revertUpgrade(paths, marker!, `version ${marker!.to.version} did not report within ${marker!.trialS}s of its start`);
        log({ event: "upgrade-reverted", from: m.to.version, to: m.from.version, reason: m.reason });
        continue;
      }
      const { code, signal } = outcome as { code: number | null; signal: NodeJS.Signals | null };
      if (stopping) return code ?? 0;
      const after = readMarker(paths);
      if (after?.state === "staged") continue;
      if (after?.state === "trying") {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const m = await revertUpgrade(paths, after, `version ${after.to.version} ${how} ${Math.round((Date.now() - started) / 1000)}s after its start, before it reported`);
        log({ event: "upgrade-reverted", from: m.to.version, to: m.from.version, reason: m.reason });
        continue;
      }
      return code ?? 1;
    }
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

/** The first executable file `name` in a directory of $PATH (absolute directories only), or undefined. */
export function findOnPath(name: string, path = process.env.PATH ?? ""): string | undefined {
  for (const d of path.split(delimiter)) {
    if (!d.startsWith("/")) continue;
    const file = join(d, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not there or not executable: next directory
    }
  }
  return undefined;
}

/** Resolves "timeout" when the trial's time is up and the marker is still "trying"; never resolves once committed or when the child exits. */
function watchTrial(paths: ReturnType<typeof upgradePaths>, marker: UpgradeMarker, pollMs: number, exited: Promise<unknown>): Promise<{ kind: "timeout" }> {
  const deadline = Date.parse(marker.trialStartedAt ?? new Date().toISOString()) + marker.trialS * 1000;
  return new Promise((resolve) => {
    let done = false;
    void exited.then(() => (done = true));
    const tick = () => {
      if (done) return;
      const m = readMarker(paths);
      if (m?.state !== "trying") return;
      if (Date.now() >= deadline) return resolve({ kind: "timeout" });
      setTimeout(tick, pollMs).unref();
    };
    tick();
  });
}

/** What the upgrade side needs of the agent's config. */
export interface UpgradeSidecarOptions {
  site: string;
  servers: string[];
  /** The agent's state dir (its credentials.json). */
  stateDir: string;
  /** The bundle this process runs. */
  bundle: string;
  version: string;
  log: (event: Record<string, unknown>) => void;
}

/**
 * The upgrader beside a bundle's `config-run` under the supervisor: waits
 * for the agent's credentials (after enrollment; read every second), then
 * opens its own connection as the agent's NATS user (same user, same
 * permissions; nats.js reconnects forever) and runs an AgentUpgrader on it,
 * trusting what assignments trust (SigningTrust over the agent's state dir:
 * the welcome's key and the keys learned from the signed chain). Returns a
 * stop function (closes the connection). Needs no change to the fleet
 * member; the cost is a second connection per agent.
 */
export function startUpgradeSidecar(o: UpgradeSidecarOptions): () => Promise<void> {
  const state = new AgentState(o.stateDir);
  let stopped = false;
  let nc: NatsConnection | undefined;
  let upgrader: AgentUpgrader | undefined;
  // Stop aborts every wait and the pending dial at once (a connect with waitOnFirstConnect could not be cancelled,
  // and an unref'd timer as the only thing awaited let Node exit 13, "unsettled top-level await", on a stop).
  const stopping = new AbortController();
  const run = async () => {
    const backoff = new Backoff({});
    for (;;) {
      if (stopped) return;
      const creds = await state.credentials().catch(() => undefined);
      if (stopped) return;
      if (creds) {
        // The same trusted set as assignments: the welcome's key, and keys learned from the signed chain (kept in the state dir).
        const trust = new SigningTrust({ runDir: o.stateDir, site: o.site, pinnedKeyPem: creds.signingKey.publicKeyPem, log: o.log });
        upgrader = new AgentUpgrader({
          site: o.site,
          host: () => creds.host,
          trust: () => trust,
          version: o.version,
          bundlePath: o.bundle,
          supervised: process.env[SUPERVISED_ENV] === "1",
          log: o.log,
        });
        const auth = { user: creds.user, pass: creds.password, name: `netfleet-agent-upgrade ${creds.host}`, inboxPrefix: creds.inboxPrefix };
        // One dial per server per attempt, resolving undefined at once on stop; nats.js reconnects it afterwards.
        while (!nc) {
          nc = await connectNats({ servers: o.servers }, auth, backoff, stopping.signal);
          if (stopped) {
            await nc?.close().catch(() => {});
            return;
          }
          if (!nc) await pause(backoff.next(), stopping.signal);
        }
        const conn = nc;
        upgrader.attach(conn, true);
        void (async () => {
          for await (const s of conn.status()) if (s.type === "reconnect") upgrader!.attach(conn, false);
        })().catch(() => {});
        return;
      }
      // No credentials yet (not enrolled): look again in 1 s, or at once on stop.
      await pause(1000, stopping.signal);
    }
  };
  const running = run().catch((err: unknown) => o.log({ event: "upgrade-error", error: (err as Error).message }));
  return async () => {
    stopped = true;
    stopping.abort();
    await upgrader?.stop();
    await nc?.close().catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([running, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  };
}
