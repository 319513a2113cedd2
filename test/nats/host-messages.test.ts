import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it, onTestFinished } from "vitest";
import { NatsServer, controllerUser } from "@netfleet/controller";
import { DecodeError } from "@netfleet/shared";
import { HostQueues, HostSubscriptions } from "../../packages/controller/src/nats/host-messages.ts";
import { eventually } from "./harness.ts";

/**
 * The controller's per-host message handlers against a real nats-server that
 * reloads its users, as serve's does at each approval, rekey and revoke
 * (NatsServer.setUsers: the accounts file rewritten, then a reload). While it
 * reloads, a JetStream API request may get no responder ("JetStream not
 * enabled for account", "jetstream is not enabled") or time out: a serve
 * whose enroll handler met that dropped the message with a `handler-error`
 * (test/nats/fuzz.test.ts, once, on `nf.lab.enroll.hv3`).
 */
describe("host message handlers while nats-server reloads its users", () => {
  it("a handler whose JetStream request meets a reload is run again and completes; a refused message and a real failure are logged once, not retried", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nf-host-messages-"));
    const users = [controllerUser("controller", "controller-pw")];
    const server = await NatsServer.start({ dir: join(dir, "nats"), nodes: 1, basePort: 26380, users });
    const connections: NatsConnection[] = [];
    let subscriptions: HostSubscriptions | undefined;
    // Stopped in this order, whatever failed: the subscriptions, the connections, the server, then its directory.
    onTestFinished(async () => {
      await subscriptions?.close();
      await Promise.allSettled(connections.map((c) => c.close()));
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const nc = await connect({ servers: server.urls, user: "controller", pass: "controller-pw" });
    connections.push(nc);
    const sender = await connect({ servers: server.urls, user: "controller", pass: "controller-pw" });
    connections.push(sender);
    const kv = await new Kvm(nc).create("nf_lab_probe");
    await kv.put("k", "1");

    const events: Record<string, unknown>[] = [];
    subscriptions = new HostSubscriptions(nc, new HostQueues(), (e) => void events.push(e));
    const handled = new Map<string, number>();
    const calls = new Map<string, number>();
    subscriptions.listen("nf.lab.report.*", async (msg, host) => {
      calls.set(msg.string(), (calls.get(msg.string()) ?? 0) + 1);
      // Texts that name a transient failure, as a sender can make them (a site named `timeout`, a host `leader1`):
      // judged by the error's name, never its text, so neither is retried.
      if (host === "leader1") throw new DecodeError(msg.subject, "site", "facts are for site timeout");
      if (host === "timeout") throw new Error("a handler's own failure: no responders, timeout");
      // Two JetStream API requests, as an enrollment's registry reads make: a stream info and a direct get.
      await kv.status();
      await kv.get("k");
      handled.set(msg.string(), (handled.get(msg.string()) ?? 0) + 1);
    });
    await nc.flush();
    const of = (name: string) => events.filter((e) => e.event === name);

    // Positive controls first: a message that does not decode, and a handler that fails for itself.
    sender.publish("nf.lab.report.leader1", "r1");
    sender.publish("nf.lab.report.timeout", "b1");
    await sender.flush();
    await eventually(() => of("bad-message").length === 1 && of("handler-error").length === 1, "both logged");

    // The hostile condition: messages all along (a few every 2 ms, bounded) while the server reloads its users, until a
    // reload has made a handler's request fail (handler-retry logged), bounded at 200 reloads.
    let sent = 0;
    let reloading = true;
    const sending = (async () => {
      while (reloading && sent < 100_000) {
        for (let i = 0; i < 4; i++, sent++) sender.publish(`nf.lab.report.h${sent % 50}`, `m${sent}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    let reloads = 0;
    for (; reloads < 200 && of("handler-retry").length === 0; reloads++) {
      users.push(controllerUser(`extra${reloads}`, "pw"));
      await server.setUsers([...users]);
      await new Promise((r) => setTimeout(r, 20));
    }
    reloading = false;
    await sending;
    await sender.flush();
    await eventually(() => handled.size === sent, `all ${sent} messages handled`, 30_000);
    console.log(`host messages: ${sent} sent over ${reloads} reloads, ${of("handler-retry").length} handler runs retried`);
    expect(of("handler-retry").length, `a reload made a JetStream request fail (${reloads} reloads)`).toBeGreaterThan(0);
    for (const e of of("handler-retry")) expect(String(e.error)).toMatch(/jetstream|timeout|no responders/i);
    expect(of("handler-retry").map((e) => e.subject)).not.toContain("nf.lab.report.leader1");
    // Each message handled once, none dropped; the controls were neither retried nor logged again.
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(of("handler-error")).toHaveLength(1);
    expect(of("handler-error")[0]).toMatchObject({ subject: "nf.lab.report.timeout", error: "a handler's own failure: no responders, timeout" });
    expect(of("bad-message")).toHaveLength(1);
    expect([calls.get("r1"), calls.get("b1")]).toEqual([1, 1]);
  }, 120_000);
});
