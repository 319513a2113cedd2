/**
 * Lab tier rows for per-VM gateway services (issue 19: a profile's, or a
 * VM's own, `gateway_services`), run inside bandwidth.test.ts's lab (one lab
 * build): on network lan, VM `free` has its own service tcp/34650 on the
 * gateway (test/lab/sites/bandwidth/networks.yaml); `srv`, on the same
 * network and bridge, has none. A listener of this file's own, bound to the
 * gateway address in the backend's namespace, records the peer of every
 * connection it accepts:
 * - the positive control: free connects, and the listener saw free's address;
 * - the attack: srv's connection to the same address and port gets no
 *   answer (the backend's from_vms chain drops it), and the listener never
 *   saw srv's address.
 * The port is from this suite's range (34600-34699).
 */
import { execa, type ResultPromise } from "execa";
import { expect, it } from "vitest";
import { ExecaRunner } from "@netfleet/agent";
import { tcpConnect, type LabStatus } from "@netfleet/lab";

/** The gateway port free may reach (its own gateway_services in the bandwidth site). */
export const PROFILE_SERVICE_PORT = 34650;

/** A TCP listener in `namespace` on ip:port greeting `gw <peer>` (labnet's greeting form) and printing each peer on stdout. */
const LISTENER = `
const net = require("node:net");
const [ip, port] = process.argv.slice(1);
const server = net.createServer((s) => { const peer = (s.remoteAddress || "?").replace(/^::ffff:/, ""); process.stdout.write("peer " + peer + "\\n"); s.end("gw " + peer + "\\n"); s.on("error", () => s.destroy()); });
server.listen(Number(port), ip, () => process.stdout.write("listening\\n"));
process.on("SIGTERM", () => { server.close(); process.exit(0); });
`;

/**
 * Registers the rows (call inside the describe whose beforeAll built the
 * lab; `current()` gives its status once built). The listener it starts is
 * stopped by its pid before the row ends.
 */
export function profileRows(current: () => LabStatus): void {
  const runner = new ExecaRunner({ timeoutMs: 30_000 });

  it("a VM's own gateway service: free reaches tcp/34650 on lan's gateway (positive control); srv on the same bridge gets no answer and the listener at the gateway never sees it", async () => {
    const status = current();
    const vm = (name: string) => status.vms.find((v) => v.name === name)!;
    const gw = status.gateways?.find((g) => g.network === vm("free").network);
    expect(gw, "lan's gateway in the lab status").toBeDefined();
    const listener: ResultPromise = execa("ip", ["netns", "exec", gw!.namespace, process.execPath, "-e", LISTENER, gw!.ip, String(PROFILE_SERVICE_PORT)], { reject: false, buffer: true });
    const lines: string[] = [];
    listener.stdout!.on("data", (b: Buffer) => lines.push(...b.toString().split("\n").filter((l) => l !== "")));
    try {
      const until = Date.now() + 10_000;
      while (!lines.includes("listening")) {
        if (Date.now() > until || listener.exitCode !== null) throw new Error(`the listener did not start: ${lines.join(" | ")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const allowed = await tcpConnect(runner, vm("free").namespace, gw!.ip, PROFILE_SERVICE_PORT, { timeoutMs: 3000 });
      expect(allowed).toEqual({ ran: true, connected: true, server: "gw", peer: vm("free").ip });
      const attack = await tcpConnect(runner, vm("srv").namespace, gw!.ip, PROFILE_SERVICE_PORT, { timeoutMs: 3000 });
      expect(attack).toMatchObject({ ran: true, connected: false, reason: "timeout" });
      await new Promise((r) => setTimeout(r, 500)); // a late SYN would show by now
      expect(lines.filter((l) => l.startsWith("peer "))).toEqual([`peer ${vm("free").ip}`]);
    } finally {
      if (listener.pid !== undefined && listener.exitCode === null) process.kill(listener.pid, "SIGTERM");
      await listener;
    }
  }, 60_000);
}
