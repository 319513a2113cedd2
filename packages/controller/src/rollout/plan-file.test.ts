import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { askYesNo, planSummaryLines } from "./confirm.ts";
import { execFileSync } from "node:child_process";
import { generateSigningKeys } from "@netfleet/shared";
import { PlanFileError, planSignedBy, readPlanFile, signPlan, writePlanFile, type UnsignedPlan } from "./plan-file.ts";
import { inventoryRefusals } from "./planned.ts";

const H = (c: string) => c.repeat(64);
const KEYS = generateSigningKeys();
const UNSIGNED: UnsignedPlan = {
  kind: "netfleet-plan",
  version: 1,
  site: "lab",
  createdAt: "2026-11-30T10:00:00.000Z",
  hosts: [
    {
      host: "hv1",
      role: "vmhost",
      assignment: H("a"),
      status: "changed",
      basedOn: 7,
      from: { revision: 3, hash: H("b") },
      observed: H("c"),
      summary: { ok: 4, changed: 0, failed: 0, pending: 1 },
      changes: [{ id: "sysctl[net.ipv4.ip_forward]", fields: ["value"], values: [{ field: "value", before: "0", after: "1" }] }],
    },
    { host: "backend", role: "backend", assignment: H("d"), status: "unchanged", basedOn: 5, from: { revision: 2, hash: H("d") }, observed: H("e"), summary: { ok: 9, changed: 0, failed: 0, pending: 0 }, changes: [] },
  ],
};
const PLAN = signPlan(UNSIGNED, KEYS);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nf-plan-file-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function problem(name: string, content: string | object): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, typeof content === "string" ? content : JSON.stringify(content));
  const err = await readPlanFile(file).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PlanFileError);
  return (err as Error).message.slice(file.length + 2);
}

describe("plan files", () => {
  it("are written atomically and read back as written", async () => {
    const file = join(dir, "plan.json");
    await writePlanFile(file, PLAN);
    await writePlanFile(file, { ...PLAN, site: "other" });
    expect((await stat(file)).isFile()).toBe(true);
    expect((await readPlanFile(file)).site).toBe("other");
    await writePlanFile(file, PLAN);
    expect(await readPlanFile(file)).toEqual(PLAN);
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual(PLAN);
  });

  it("are read strictly: each problem is one line naming the file and the place", async () => {
    const host = PLAN.hosts[0]!;
    expect(await problem("a", "{ not json")).toMatch(/^not JSON: /);
    expect(await problem("b", { kind: "HostAssignment" })).toBe('not a netfleet plan (no "kind": "netfleet-plan"); write one with netfleet rollout SITE --check --out FILE');
    expect(await problem("c", { ...PLAN, version: 2 })).toMatch(/^version: /);
    expect(await problem("d", { ...PLAN, extra: 1 })).toMatch(/^\(top\): Unrecognized key: "extra"/);
    expect(await problem("e", { ...PLAN, hosts: [{ ...host, observed: "abc" }] })).toBe("hosts[0].observed: a sha256 in hex (64 digits 0-9a-f)");
    expect(await problem("f", { ...PLAN, hosts: [host, { ...host, assignment: H("f") }] })).toBe("hosts[1].host: hv1 is listed twice");
    expect(await problem("g", { ...PLAN, hosts: [{ ...host, basedOn: -1 }] })).toMatch(/^hosts\[0\]\.basedOn: /);
    expect(await problem("h", { ...PLAN, hosts: [{ ...host, changes: [{ id: "x", fields: [], surprise: true }] }] })).toMatch(/^hosts\[0\]\.changes\[0\]: Unrecognized key: "surprise"/);
    expect(await problem("i", { ...PLAN, hosts: [] })).toMatch(/^hosts: /);
    expect(await problem("j", Buffer.from([0x7b, 0xff, 0x7d]).toString("latin1"))).toMatch(/^not JSON|^not UTF-8/);
    await expect(readPlanFile(join(dir, "absent.json"))).rejects.toThrow(`${join(dir, "absent.json")}: cannot read (ENOENT)`);
    await expect(readPlanFile(dir)).rejects.toThrow(`${dir}: not a regular file`);
  });

  it("are signed by the controller's key: any edit, or another key, no longer verifies", () => {
    expect(planSignedBy(PLAN, KEYS)).toBe(true);
    expect(planSignedBy({ ...PLAN, hosts: [{ ...PLAN.hosts[0]!, status: "unchanged", changes: [] }, PLAN.hosts[1]!] }, KEYS)).toBe(false);
    expect(planSignedBy({ ...PLAN, hosts: [{ ...PLAN.hosts[0]!, observed: H("0") }, PLAN.hosts[1]!] }, KEYS)).toBe(false);
    expect(planSignedBy(PLAN, generateSigningKeys())).toBe(false);
    expect(planSignedBy({ ...PLAN, signature: { keyId: KEYS.keyId, value: "not base64 at all" } }, KEYS)).toBe(false);
  });

  it("is never waited on when it is a FIFO: refused at once", async () => {
    const fifo = join(dir, "plan.fifo");
    execFileSync("mkfifo", [fifo]);
    const started = Date.now();
    await expect(readPlanFile(fifo)).rejects.toThrow(`${fifo}: not a regular file`);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("no longer fit an inventory that compiles differently: one line per host, naming it", () => {
    const now = [
      { host: "hv1", role: "vmhost", hash: H("9") },
      { host: "backend", role: "backend", hash: H("d") },
    ] as never;
    expect(inventoryRefusals(PLAN, "lab", now)).toEqual([`hv1: the inventory compiles to another assignment now (${"9".repeat(12)}, the plan brings ${"a".repeat(12)})`]);
    expect(inventoryRefusals(PLAN, "lab", [{ host: "hv1", role: "vmhost", hash: H("a") }] as never)).toEqual(["backend: no longer in the inventory"]);
    expect(inventoryRefusals(PLAN, "other", now)).toEqual(["the plan is for site lab, the inventory is site other"]);
  });

  it("are summed up per host before the question", () => {
    expect(planSummaryLines(PLAN, "p.json")).toEqual([
      "plan p.json: site lab, made 2026-11-30T10:00:00.000Z, 2 hosts",
      "  hv1 (vmhost, changed from revision 3): 1 resource to change: sysctl[net.ipv4.ip_forward]",
      "  backend (backend, unchanged from revision 2): nothing to change",
    ]);
    // Text from the file never reaches the terminal raw: an escape sequence in a resource id is shown escaped.
    const evil = { ...PLAN, hosts: [{ ...PLAN.hosts[0]!, changes: [{ id: "x\x1b[2J\rApply", fields: [] }] }] };
    for (const line of planSummaryLines(evil, "p\x1b.json")) expect(line).not.toMatch(/[\x00-\x1f]/u);
    expect(planSummaryLines(evil, "p.json")[1]).toContain("x\\x1b[2J\\rApply");
  });
});

describe("the question", () => {
  async function ask(input: string | null): Promise<{ yes: boolean; shown: string }> {
    const inp = new PassThrough();
    const out = new PassThrough();
    let shown = "";
    out.on("data", (d: Buffer) => (shown += d.toString()));
    const answer = askYesNo("Roll out?", { input: inp, output: out });
    if (input === null) inp.end();
    else inp.write(input);
    return { yes: await answer, shown };
  }

  it("is yes only for y or yes; anything else, an empty line or the end of input is no", async () => {
    expect(await ask("y\n")).toEqual({ yes: true, shown: "Roll out? (y/N) " });
    expect((await ask("YES\n")).yes).toBe(true);
    expect((await ask("\n")).yes).toBe(false);
    expect((await ask("n\n")).yes).toBe(false);
    expect((await ask("yep\n")).yes).toBe(false);
    expect((await ask(null)).yes).toBe(false);
  });
});
