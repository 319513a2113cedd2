/**
 * An agent cannot answer for the JetStream stream (real nats-server, a 3-node cluster).
 *
 * The attack: with a host's own agent credentials (a stolen agent.json), hear the controller's writes to that
 * host's desired key on the key's subject, as every agent does. Each arrives with the reply subject of the
 * controller's publish, where the stream's acknowledgement (`{"stream", "seq"}`) is awaited. Answer it first with a
 * forged one. Under nats-server's `allow_responses` the agents once had, that answer was let through. On 3 nodes it
 * could arrive before the real acknowledgement, which waits for the replicas: the controller then took `seq` 424242
 * for a write the stream had stored at 4.
 *
 * Where it is looked for: on the server (the forged publish refused as a permissions violation, on the attacker's
 * connection), and in the controller (each publish's kvRevision is the revision the bucket holds).
 *
 * Positive controls: the same credentials may publish on their own host's reply subjects, and a real agent still
 * answers the controller's `show` request on them.
 */
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { observeHost } from "@netfleet/agent";
import { agentReplySubject, desiredBucket, kvStream, kvSubject } from "@netfleet/shared";
import { requestShow } from "../../packages/controller/src/nats/show.ts";
import { loadCapture } from "../../packages/agent/src/show/fixtures.ts";
import { SITE, agentFileConnection, assignmentFor, eventually, inventoryHost, startAgent, startSite, type Site, type TestAgent } from "./harness.ts";

const DESIRED = desiredBucket(SITE);
const FORGED_SEQ = 424242;


describe("an agent cannot answer for the stream (3-node cluster)", () => {
  let site: Site;
  const agents: TestAgent[] = [];

  beforeAll(async () => {
    site = await startSite({ basePort: 32500, nodes: 3, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
    const hosta = loadCapture("hosta");
    agents.push(startAgent(site, { hostname: "hv1", onShow: () => observeHost({ host: "hv1", runner: hosta.runner, tools: hosta.tools, files: hosta.files }) }));
    agents.push(startAgent(site, { hostname: "hv2" }));
    await Promise.all(agents.map((a) => a.started));
  }, 90_000);

  afterAll(async () => {
    for (const a of agents.splice(0)) await a.client.stop();
    await site?.close();
  });

  it("a forged acknowledgement of the controller's desired write is refused, and every publish's revision is the stored one; the agent's own reply subjects still work", async () => {
    const attacker = await agentFileConnection(site, "hv2");
    try {
      const replies: string[] = [];
      const sub = attacker.nc.subscribe(kvSubject(DESIRED, "hv2"));
      void (async () => {
        for await (const m of sub) {
          if (!m.reply) continue;
          replies.push(m.reply);
          // Both lies a stream can tell: a success at a sequence of our choosing, and a compare-and-set conflict.
          attacker.nc.publish(m.reply, JSON.stringify({ stream: kvStream(DESIRED), seq: FORGED_SEQ }));
          attacker.nc.publish(m.reply, JSON.stringify({ error: { code: 400, err_code: 10071, description: "wrong last sequence: 1" } }));
        }
      })();
      await attacker.nc.flush();

      const kv = await new Kvm(site.cp.nc).open(DESIRED);
      const results: { kvRevision: number; stored: number | undefined }[] = [];
      for (let n = 1; n <= 8; n++) {
        const r = await site.cp.publish(assignmentFor("hv2", n));
        results.push({ kvRevision: r.kvRevision, stored: (await kv.get("hv2"))?.revision });
      }
      await eventually(() => replies.length === 8, `the attacker heard all 8 writes with their reply subjects (heard ${replies.length})`);
      // At the target: the controller took the stream's word for every write, none of ours.
      for (const r of results) expect(r.kvRevision, JSON.stringify(results)).toBe(r.stored);
      expect(results.map((r) => r.kvRevision)).not.toContain(FORGED_SEQ);
      // And on the server: each forged answer was refused.
      await attacker.nc.flush();
      for (const reply of replies) {
        // Both forged answers (the success and the conflict) to each write, refused.
        const refused = () => attacker.errors.filter((e) => e.includes(`Permissions Violation for Publish to "${reply}"`)).length;
        await eventually(() => refused() === 2, `both forged answers to ${reply} were refused (${refused()} so far)`, 5000);
      }

      // Positive control: hv2's own reply subjects are open to it (nothing refused), another host's are not.
      const before = attacker.errors.length;
      attacker.nc.publish(agentReplySubject(SITE, "hv2", "control1"), "x");
      await attacker.nc.flush();
      attacker.nc.publish(agentReplySubject(SITE, "hv1", "control2"), "x");
      await attacker.nc.flush();
      await eventually(() => attacker.errors.length > before, "the publish to hv1's reply subject was refused", 5000);
      const later = attacker.errors.slice(before);
      expect(later.filter((e) => e.includes(agentReplySubject(SITE, "hv2", "control1"))), later.join("\n")).toEqual([]);
      expect(later.filter((e) => e.includes(`Permissions Violation for Publish to "${agentReplySubject(SITE, "hv1", "control2")}"`)), later.join("\n")).toHaveLength(1);
    } finally {
      await attacker.nc.close();
    }
    // Positive control: a real agent answers the controller's request on its reply subject.
    const shown = await requestShow(site.cp.nc, SITE, "hv1", 15_000);
    expect(shown, shown.error).toMatchObject({ ok: true, host: "hv1", view: { host: "hv1" } });
  }, 90_000);
});
