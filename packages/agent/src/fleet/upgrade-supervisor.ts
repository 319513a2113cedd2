import { spawn, type ChildProcess } from "node:child_process";
import { connect, type NatsConnection } from "@nats-io/transport-node";
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
 * supervisor then exits with the child's code. Returns the exit code.
 * Under systemd with Type=notify the unit needs NotifyAccess=all (the
 * readiness comes from the child).
 */
export async function supervise(o: SuperviseOptions): Promise<number> {
  const log = o.log ?? (() => {});
  const paths = upgradePaths(o.bundle);
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
      child = spawn(process.execPath, [o.bundle, "config-run", o.config], { stdio: "inherit", env: { ...process.env, [SUPERVISED_ENV]: "1" } });
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
  let wake: (() => void) | undefined;
  const run = async () => {
    for (;;) {
      if (stopped) return;
      const creds = await state.credentials().catch(() => undefined);
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
        nc = await connect({
          servers: o.servers,
          user: creds.user,
          pass: creds.password,
          name: `netfleet-agent-upgrade ${creds.host}`,
          inboxPrefix: creds.inboxPrefix,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 1000,
          waitOnFirstConnect: true,
        });
        if (stopped) {
          await nc.close();
          return;
        }
        upgrader.attach(nc, true);
        void (async () => {
          for await (const s of nc!.status()) if (s.type === "reconnect") upgrader!.attach(nc!, false);
        })().catch(() => {});
        return;
      }
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 1000).unref();
      });
    }
  };
  const running = run().catch((err: unknown) => o.log({ event: "upgrade-error", error: (err as Error).message }));
  return async () => {
    stopped = true;
    wake?.();
    await upgrader?.stop();
    await nc?.close().catch(() => {});
    await Promise.race([running, new Promise((r) => setTimeout(r, 2000).unref())]);
  };
}
