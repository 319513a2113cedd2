import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { afterEach, describe, expect, it } from "vitest";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { SIGNING_CHAIN_KEY, desiredBucket, encodeMessage, generateSigningKeys, signAssignment, signKeyAnnouncement, type SigningChain } from "@netfleet/shared";
import { SITE, assignmentFor, eventually, inventoryHost, sendStoredWord, startAgent, startSite, stopAll, writeControllerHome, type Site, type TestAgent } from "./harness.ts";

let site: Site | undefined;
const agents: TestAgent[] = [];

afterEach(async () => {
  await stopAll(site, agents);
  site = undefined;
});

/** Runs `netfleet keys ...` against the test site's state dir; its JSON document. */
async function keys(home: string, ...args: string[]): Promise<{ code: number; doc: Record<string, unknown> }> {
  const out = memoryOutput(true);
  const code = await main(["keys", ...args, "--state-dir", home, "--json"], out);
  if (code !== 0) throw new Error(`netfleet keys ${args.join(" ")}: exit ${code}: ${out.stderr.join("\n")} ${out.stdout.join("\n")}`);
  return { code, doc: out.values[0] as Record<string, unknown> };
}

/** The keys an agent keeps in its run dir (AgentState signing-keys.json). */
async function trustFile(s: Site, host: string): Promise<{ trust: { active: { keyId: string }; previous: { keyId: string }[] } }> {
  return JSON.parse(await readFile(join(s.dir, "agents", host, "signing-keys.json"), "utf8"));
}

const countOf = (a: TestAgent, event: string) => a.events.filter((e) => e.event === event).length;

describe("signing-key rotation", () => {
  it("online and offline agents move to the new key; after retirement an old-key revision is refused; a forged announcement is refused", async () => {
    site = await startSite({ basePort: 25600, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
    const s = site;
    const home = await writeControllerHome(s, join(s.dir, "no-inventory"));
    const oldKey = s.signing;
    const a1 = startAgent(s, { hostname: "hv1" });
    let a2 = startAgent(s, { hostname: "hv2" });
    agents.push(a1, a2);
    await Promise.all([a1.started, a2.started]);
    await s.cp.publish(assignmentFor("hv1", 1));
    await s.cp.publish(assignmentFor("hv2", 1));
    await eventually(() => a1.applied.length === 1 && a2.applied.length === 1, "revision 1 applied on both hosts");

    // hv2 goes away before the rotation.
    await a2.client.stop();
    agents.splice(agents.indexOf(a2), 1);

    const rotated = (await keys(home, "rotate", "--overlap", "1h")).doc as { keyId: string; previous: { keyId: string }[]; resigned: { host: string; revision: number }[] };
    expect(rotated.keyId).not.toBe(oldKey.keyId);
    expect(rotated.previous[0]!.keyId).toBe(oldKey.keyId);
    expect(rotated.resigned.map((r) => r.host).sort()).toEqual(["hv1", "hv2"]);
    const secrets = JSON.parse(await readFile(join(home, "secrets.json"), "utf8"));
    expect(secrets.signing.keyId).toBe(rotated.keyId);
    // The old private key is gone from the state dir; its public half stays for the overlap.
    expect(JSON.stringify(secrets)).not.toContain(oldKey.privateKeyPem.trim().split("\n")[1]);
    const newKey = secrets.signing as { keyId: string; privateKeyPem: string };

    // Positive control: the online agent applies the revision re-signed with the new key.
    const hv1Resigned = rotated.resigned.find((r) => r.host === "hv1")!.revision;
    await eventually(() => a1.applied.at(-1)?.revision === hv1Resigned, "hv1 applies the re-signed revision");
    expect(a1.events.find((e) => e.event === "signing-key-learned")).toMatchObject({ keyId: newKey.keyId, previousKeyId: oldKey.keyId });
    expect((await trustFile(s, "hv1")).trust.active.keyId).toBe(newKey.keyId);
    expect((await s.cp.desired.read("hv1"))?.envelope.keyId).toBe(newKey.keyId);

    // In the overlap, the old key is still accepted (a controller that had not switched yet).
    const overlap = await s.cp.desired.withKey(oldKey.privateKeyPem).publish(assignmentFor("hv1", 2));
    await eventually(() => a1.applied.at(-1)?.revision === overlap.revision, "old-key revision applied during the overlap");

    const retired = (await keys(home, "retire")).doc as { previous: { keyId: string }[]; resigned: { host: string; revision: number }[] };
    expect(retired.previous.map((p) => p.keyId)).toEqual([oldKey.keyId]);
    // Retiring re-signs what the old key had signed since (hv1's overlap revision), so the host does not lose it.
    expect(retired.resigned.map((r) => r.host)).toEqual(["hv1"]);
    await eventually(() => a1.applied.at(-1)?.revision === retired.resigned[0]!.revision, "hv1 applies the revision re-signed at retirement");

    // Attack: a newer revision signed with the retired key (whoever still holds it), written to the host's key.
    const kept = a1.applied.at(-1)!;
    const rejectedBefore = countOf(a1, "assignment-rejected");
    const attack = await s.cp.desired.withKey(oldKey.privateKeyPem).publish(assignmentFor("hv1", 66));
    expect((await s.cp.desired.read("hv1"))?.envelope).toMatchObject({ revision: attack.revision, keyId: oldKey.keyId });
    await eventually(() => countOf(a1, "assignment-rejected") > rejectedBefore, "old-key revision rejected after retirement");
    expect(a1.events.filter((e) => e.event === "assignment-rejected").at(-1)).toMatchObject({ reason: "unknown-key", keeping: kept.revision });
    expect(a1.events.find((e) => e.event === "signing-key-retired")).toMatchObject({ keyId: newKey.keyId, previousKeyId: oldKey.keyId });
    expect(a1.applied.at(-1)).toEqual(kept);
    expect(a1.client.current?.revision).toBe(kept.revision);
    expect((await trustFile(s, "hv1")).trust.previous).toEqual([]);
    // The applied record in KV still says the revision before the attack.
    expect((await s.cp.applied.read("hv1"))?.revision).toBe(kept.revision);

    // Positive control after retirement: the new key's next revision applies.
    const after = await s.cp.desired.withKey(newKey.privateKeyPem).publish(assignmentFor("hv1", 3));
    await eventually(() => a1.applied.at(-1)?.revision === after.revision, "new-key revision applied after retirement");

    // The agent that was away comes back after the retirement: it follows the chain from the key it was given.
    a2 = startAgent(s, { hostname: "hv2" });
    agents.push(a2);
    await a2.started;
    const hv2Resigned = rotated.resigned.find((r) => r.host === "hv2")!.revision;
    await eventually(() => a2.applied.at(-1)?.revision === hv2Resigned, "hv2, back, applies the re-signed revision");
    expect(a2.events.filter((e) => e.event === "signing-key-learned" || e.event === "signing-key-retired").map((e) => e.seq)).toEqual([1, 2]);
    expect((await trustFile(s, "hv2")).trust).toMatchObject({ active: { keyId: newKey.keyId }, previous: [] });

    // Attack: a forged announcement (signed by a key no agent trusts) appended to the chain, and a revision signed by that key.
    const mallory = generateSigningKeys();
    const kv = await new Kvm(s.cp.nc).open(desiredBucket(SITE));
    const chain = (await s.cp.desired.readSigningChain()) as SigningChain;
    const forged = signKeyAnnouncement({ site: SITE, seq: chain.links.length + 1, next: mallory, previousKeyId: newKey.keyId, previousNotAfter: new Date(Date.now() + 3600_000).toISOString() }, mallory.privateKeyPem);
    await kv.put(SIGNING_CHAIN_KEY, encodeMessage({ ...chain, links: [...chain.links, forged] }));
    const keptNow = a1.applied.at(-1)!;
    const chainRejectedBefore = countOf(a1, "key-chain-rejected");
    // Stored, and told to the agent as the controller tells it (the controller's connection misused).
    const forgedBytes = encodeMessage(signAssignment(assignmentFor("hv1", 77), keptNow.revision + 10, mallory.privateKeyPem));
    sendStoredWord(s.cp.nc, "hv1", forgedBytes, await kv.put("hv1", forgedBytes), keptNow.revision + 10);
    await eventually(() => countOf(a1, "key-chain-rejected") > chainRejectedBefore, "forged announcement refused");
    expect(a1.events.filter((e) => e.event === "key-chain-rejected").at(-1)).toMatchObject({ seq: forged.seq, reason: "unknown-signer", keeping: [newKey.keyId] });
    await eventually(() => a1.events.filter((e) => e.event === "assignment-rejected").at(-1)?.reason === "unknown-key", "mallory's revision refused");
    expect((await trustFile(s, "hv1")).trust).toMatchObject({ active: { keyId: newKey.keyId }, previous: [] });
    expect(a1.applied.at(-1)).toEqual(keptNow);
    // Positive control: the controller's key still works.
    const last = await s.cp.desired.withKey(newKey.privateKeyPem).publish(assignmentFor("hv1", 4));
    await eventually(() => a1.applied.at(-1)?.revision === last.revision, "new-key revision applied after the forgery");
  });

  it("without keys retire, the old key is refused once its overlap has ended (the agent's clock)", async () => {
    site = await startSite({ basePort: 25620, hosts: [inventoryHost("hv1")] });
    const s = site;
    const home = await writeControllerHome(s, join(s.dir, "no-inventory"));
    const a1 = startAgent(s, { hostname: "hv1" });
    agents.push(a1);
    await a1.started;
    await s.cp.publish(assignmentFor("hv1", 1));
    await eventually(() => a1.applied.length === 1, "revision 1 applied");

    const rotated = (await keys(home, "rotate", "--overlap", "2s")).doc as { keyId: string; previous: { notAfter: string }[]; resigned: { revision: number }[] };
    await eventually(() => a1.applied.at(-1)?.revision === rotated.resigned[0]!.revision, "re-signed revision applied");
    expect((await trustFile(s, "hv1")).trust.previous.map((p) => p.keyId)).toEqual([s.signing.keyId]);
    const notAfter = Date.parse(rotated.previous[0]!.notAfter);
    await new Promise((r) => setTimeout(r, Math.max(0, notAfter + 100 - Date.now())));

    // Attack: a newer revision signed with the old key, after its overlap.
    const kept = a1.applied.at(-1)!;
    const before = countOf(a1, "assignment-rejected");
    await s.cp.desired.withKey(s.signing.privateKeyPem).publish(assignmentFor("hv1", 66));
    await eventually(() => countOf(a1, "assignment-rejected") > before, "old-key revision rejected after the overlap");
    const rejected = a1.events.filter((e) => e.event === "assignment-rejected").at(-1)!;
    expect(rejected).toMatchObject({ reason: "retired-key", keeping: kept.revision });
    expect(String(rejected.error)).toMatch(/overlap ended/);
    expect(a1.applied.at(-1)).toEqual(kept);
    expect((await s.cp.applied.read("hv1"))?.revision).toBe(kept.revision);

    // Positive control: the new key's next revision applies.
    const secrets = JSON.parse(await readFile(join(home, "secrets.json"), "utf8"));
    const next = await s.cp.desired.withKey(secrets.signing.privateKeyPem).publish(assignmentFor("hv1", 3));
    await eventually(() => a1.applied.at(-1)?.revision === next.revision, "new-key revision applied");
  });
});
