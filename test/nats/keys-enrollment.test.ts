import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser, hostTokenKey, mintHostTokenWithKey } from "@netfleet/controller";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { ControllerHome, acceptedEnrollmentTokens } from "../../packages/controller/src/store/home.ts";
import { SITE, assignmentFor, eventually, inventoryHost, startAgent, type Site, type TestAgent } from "./harness.ts";

const HOSTS = ["hv1", "hv2", "hv3", "hv4"].map((h) => inventoryHost(h));
const OVERLAP_S = 4;

let dir: string | undefined;
let server: NatsServer | undefined;
let cp: ControlPlane | undefined;
const agents: TestAgent[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) await a.client.stop();
  await cp?.close().catch(() => {});
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  cp = server = dir = undefined;
});

/**
 * The controller as `netfleet serve` makes it from its state dir (commands/connect.ts): the accepted join
 * tokens are read from secrets.json (acceptedEnrollmentTokens) as it runs, so a rotation needs no restart.
 */
async function serveFrom(home: ControllerHome, srv: NatsServer, events: Record<string, unknown>[]): Promise<ControlPlane> {
  const secrets = await home.secrets(undefined, { create: false });
  const c = await ControlPlane.connect({
    site: secrets.site,
    servers: srv.urls,
    user: secrets.controller.user,
    password: secrets.controller.password,
    hosts: HOSTS,
    enrollmentToken: async () => acceptedEnrollmentTokens(await home.secrets(undefined, { create: false })),
    enrollmentPassword: secrets.enrollment.enrollPassword,
    signing: secrets.signing,
    credentialsDir: home.credentialsDir,
    userDirectory: srv,
    log: (e) => events.push(e),
  });
  await c.serve();
  return c;
}

describe("join-token rotation", () => {
  it("the old token is accepted for the overlap, then refused with nothing written; the new one claims (no restart); enrolled hosts keep working", async () => {
    dir = await mkdtemp(join(tmpdir(), "keys-enroll-"));
    const home = new ControllerHome(join(dir, "controller"));
    const secrets = await home.secrets(SITE);
    server = await NatsServer.start({
      dir: join(dir, "nats"),
      nodes: 1,
      basePort: 25610,
      users: [controllerUser(secrets.controller.user, secrets.controller.password), enrollmentUser(SITE, secrets.enrollment.enrollPassword)],
    });
    const events: Record<string, unknown>[] = [];
    cp = await serveFrom(home, server, events);
    const mintKey = await hostTokenKey(home.credentialsDir);
    // What startAgent needs of a site: where the agent keeps its files, the servers, the enrollment password.
    const site = { dir, server, enrollPassword: secrets.enrollment.enrollPassword, hostToken: (host: string) => mintHostTokenWithKey(mintKey, { site: SITE, enrollPassword: secrets.enrollment.enrollPassword, host }).token, signing: secrets.signing } as unknown as Site;

    // hv1 enrolled before the rotation (a host token: approved at once).
    const hv1 = startAgent(site, { hostname: "hv1" });
    agents.push(hv1);
    await hv1.started;
    await cp.publish(assignmentFor("hv1", 1));
    await eventually(() => hv1.applied.length === 1, "hv1 applies revision 1");

    const oldToken = secrets.enrollment.token;
    const out = memoryOutput(true);
    expect(await main(["keys", "rotate-enrollment", "--overlap", `${OVERLAP_S}s`, "--state-dir", home.dir, "--json"], out)).toBe(0);
    const newToken = (out.values[0] as { token: string }).token;
    const rotatedAt = Date.now();
    expect(newToken).not.toBe(oldToken);
    // The running controller is not restarted: it reads the accepted tokens from the state dir.

    // Positive control: in the overlap, the old token still gets a pending claim (quarantined, never approved).
    const hv2 = startAgent(site, { hostname: "hv2", token: oldToken });
    agents.push(hv2);
    await eventually(async () => (await cp!.registry.claim("hv2")) !== undefined, "hv2's claim with the old token recorded");
    expect(await cp.registry.claim("hv2")).toMatchObject({ state: "quarantined" });
    expect(await cp.registry.get("hv2")).toBeUndefined();
    expect(Date.now() - rotatedAt).toBeLessThan(OVERLAP_S * 1000);

    // The new token: a pending claim too, which an operator approves; the agent is welcomed and applies.
    const hv3 = startAgent(site, { hostname: "hv3", token: newToken });
    agents.push(hv3);
    await eventually(async () => (await cp!.registry.claim("hv3")) !== undefined, "hv3's claim with the new token recorded");
    await cp.approve("hv3");
    await hv3.started;
    await cp.publish(assignmentFor("hv3", 1));
    await eventually(() => hv3.applied.length === 1, "hv3, approved, applies revision 1");

    // Attack: after the overlap the old token is refused, and nothing is written for it.
    await new Promise((r) => setTimeout(r, Math.max(0, rotatedAt + OVERLAP_S * 1000 + 200 - Date.now())));
    const hv4 = startAgent(site, { hostname: "hv4", token: oldToken, enrollRetryMs: 300 });
    agents.push(hv4);
    await eventually(() => events.some((e) => e.event === "enroll-refused" && e.host === "hv4"), "hv4's enrollment with the old token refused");
    expect(events.find((e) => e.event === "enroll-refused" && e.host === "hv4")).toMatchObject({ reason: "wrong enrollment token" });
    expect(await cp.registry.claim("hv4")).toBeUndefined();
    expect(await cp.registry.get("hv4")).toBeUndefined();
    // The claim made in the overlap stays as it was (no later message with the old token touched it).
    expect(await cp.registry.claim("hv2")).toMatchObject({ state: "quarantined" });

    // The host enrolled before the rotation keeps working after the overlap.
    const next = await cp.publish(assignmentFor("hv1", 2));
    await eventually(() => hv1.applied.at(-1)?.revision === next.revision, "hv1 applies a new revision after the overlap");
  });
});
