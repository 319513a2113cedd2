/**
 * The controller side of the bootstrap suite, run inside the controller
 * namespace (agents reach it there; the test process cannot): nats-server
 * on ADDRESS:PORT and a serving ControlPlane for the site. Prints JSON
 * lines: its log events, `ready`, and `status` rows whenever a line
 * "status" arrives on stdin. Stops on SIGTERM or when stdin closes.
 *
 *   node controller-proc.ts '{"dir":..., "address":..., "port":..., "siteDir":...}'
 *
 * DIR is the controller's state dir: the site's join token comes from its
 * secrets.json (never from this command line, which ps shows everyone),
 * agent passwords and the host-token key live in DIR/credentials.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { loadInventory, generateSigningKeys } from "@netfleet/shared";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser } from "@netfleet/controller";
import { ControllerHome } from "../../packages/controller/src/store/home.ts";

const arg = JSON.parse(process.argv[2] ?? "{}") as { dir: string; address: string; port: number; siteDir: string };
const print = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n");
const inventory = loadInventory(arg.siteDir);
const site = inventory.site.name;
const { enrollment } = await new ControllerHome(arg.dir).secrets(site, { create: false });
const password = randomBytes(18).toString("base64url");
const server = await NatsServer.start({
  dir: join(arg.dir, "nats"),
  nodes: 1,
  host: arg.address,
  basePort: arg.port,
  users: [controllerUser("controller", password), enrollmentUser(site, enrollment.enrollPassword)],
});
let cp: ControlPlane | undefined;
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await cp?.close().catch(() => {});
  await server.stop();
  print({ event: "stopped" });
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
try {
  cp = await ControlPlane.connect({
    site,
    servers: server.urls,
    user: "controller",
    password,
    hosts: inventory.hosts,
    enrollmentToken: enrollment.token,
    enrollmentPassword: enrollment.enrollPassword,
    signing: generateSigningKeys(),
    credentialsDir: join(arg.dir, "credentials"),
    userDirectory: server,
    replicas: 1,
    log: (e) => print({ source: "control-plane", ...e }),
  });
  await cp.serve();
} catch (err) {
  print({ event: "fatal", error: (err as Error).message });
  await stop();
}
print({ event: "ready", urls: server.urls });
createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (line.trim() === "status") void cp!.status().then((rows) => print({ event: "status", rows }), (err: Error) => print({ event: "status-error", error: err.message }));
  })
  .on("close", () => void stop());
