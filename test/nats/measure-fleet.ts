/**
 * Measures N simulated agents in one process against a real nats-server:
 * enrollment time, memory per agent, and a rollout's wall time.
 *   sh scripts/node.sh test/nats/measure-fleet.ts N [delayMs] [basePort]
 * Loopback only; everything it starts is stopped at the end.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { NatsAgent, Toolbox } from "@netfleet/agent";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { ControlPlane, NatsServer, Rollout, controllerUser, enrollmentUser, type RolloutTarget } from "@netfleet/controller";
import { generateSigningKeys, sealAssignment } from "@netfleet/shared";
import { SITE, TOKEN, inventoryHost, simFacts } from "./harness.ts";

const n = Number(process.argv[2] ?? 100);
const delayMs = Number(process.argv[3] ?? 20);
const basePort = Number(process.argv[4] ?? 31900);
const names = Array.from({ length: n }, (_, i) => (i === 0 ? "backend" : `hv${i}`));
const dir = await mkdtemp(join(tmpdir(), "nf-measure-"));
const password = randomBytes(18).toString("base64url");
const enrollPassword = randomBytes(18).toString("base64url");
const server = await NatsServer.start({ dir: join(dir, "nats"), nodes: 1, basePort, users: [controllerUser("controller", password), enrollmentUser(SITE, enrollPassword)] });
const cp = await ControlPlane.connect({
  site: SITE, servers: server.urls, user: "controller", password, enrollmentToken: TOKEN, enrollmentPassword: enrollPassword,
  hosts: names.map((h) => ({ ...inventoryHost(h), role: h === "backend" ? "backend" : "vmhost" })),
  signing: generateSigningKeys(), credentialsDir: join(dir, "credentials"), userDirectory: server,
});
await cp.serve();
const mem = () => { global.gc?.(); const m = process.memoryUsage(); return { rssMiB: m.rss / 2 ** 20, heapMiB: m.heapUsed / 2 ** 20 }; };
const before = mem();
let t = Date.now();
const agents = names.map((name) => new NatsAgent({
  site: SITE, servers: server.urls, enrollment: { password: enrollPassword, token: TOKEN }, name, stateDir: join(dir, "agents", name),
  runner: new SimulatedHostRunner({ delayMs }), tools: new Toolbox(), intervalMs: 600_000, flowIntervalMs: 600_000, watchEvents: false,
  heartbeatMs: 15_000, enrollRetryMs: 2000, gatherFacts: simFacts,
}));
await Promise.all(agents.map((a) => a.start()));
const enrollMs = Date.now() - t;
const after = mem();
const targets: RolloutTarget[] = names.map((host) => {
  const role = host === "backend" ? "backend" : "vmhost";
  return { host, role, assignment: sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role,
    resources: [1, 2, 3, 4].map((k) => ({ kind: "sysctl" as const, name: `net.sim.k${k}`, value: "1" })) }) };
});
t = Date.now();
const { result } = await new Rollout(cp, targets, { batch: { percent: 25 } }, () => {}).run();
const rolloutMs = Date.now() - t;
const applied = mem();
console.log(JSON.stringify({ agents: n, delayMs, enrollMs, rolloutMs, result,
  perAgentKiB: { rss: Math.round(((after.rssMiB - before.rssMiB) * 1024) / n), heap: Math.round(((after.heapMiB - before.heapMiB) * 1024) / n) },
  afterRolloutPerAgentKiB: { rss: Math.round(((applied.rssMiB - before.rssMiB) * 1024) / n), heap: Math.round(((applied.heapMiB - before.heapMiB) * 1024) / n) } }));
await Promise.all(agents.map((a) => a.stop()));
await cp.close();
await server.stop();
await rm(dir, { recursive: true, force: true });
