/**
 * Lab tier rows, the lab as a playground (issue 16 point 6), run inside
 * lab.test.ts's lab (one lab build for both): `netfleet-lab status` names the
 * lab's controller and prints a `netfleet` command line that works when
 * pasted into a shell; `netfleet-lab rollout DIR` rolls an edited copy of the
 * lab's site out to the running lab and prints the lab check of it. The
 * edited copy adds
 * - a port-forward `8080 → vma2:8080` on service (egress open),
 * - an allow-list entry `to: 198.51.100.20` for vma1 on secure (egress allowlist).
 * Each is proved by traffic at its target (the forward's greeting comes
 * from vma2; the web server at .20 greets vma1's connection, masqueraded),
 * beside controls that the rollout leaves alone (the 2222 forward, vma1's
 * old allow entry, vma3 that may reach nothing), and rolled back with the
 * original. Every command runs through netfleet-lab's `main(argv, out)`.
 */
import { execa } from "execa";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { afterAll, expect, it } from "vitest";
import { ExecaRunner } from "@netfleet/agent";
import { readLabState, tcpConnect, type CheckRow, type LabOptions, type LabStatus } from "@netfleet/lab";
import { main } from "../../packages/lab/src/program.ts";

/**
 * Registers the playground rows (call inside the describe of a file whose
 * beforeAll built `lab`; `current()` gives its status once built). The lab is
 * left rolled out with its own inventory again.
 */
export function playgroundRows(lab: LabOptions, current: () => LabStatus): void {
  const original = lab.inventoryDir;
  const tag = `[${lab.prefix}]`;
  const edited = mkdtempSync(join(tmpdir(), `${lab.prefix}-edited-`));
  cpSync(original, edited, { recursive: true });
  {
    const file = join(edited, "networks.yaml");
    const doc = parseDocument(readFileSync(file, "utf8"));
    doc.setIn(["networks", "service", "port_forwards"], [{ listen: 2222, vm: "vma2", port: 22 }, { listen: 8080, vm: "vma2", port: 8080 }]);
    doc.setIn(["networks", "secure", "vms", "vma1", "allow"], [{ to: "198.51.100.10" }, { to: "198.51.100.20" }]);
    writeFileSync(file, doc.toString());
  }
  /** A copy whose VM vma1 moves to another address: not something a rollout can give the lab. */
  const reshaped = mkdtempSync(join(tmpdir(), `${lab.prefix}-reshaped-`));
  cpSync(original, reshaped, { recursive: true });
  {
    const file = join(reshaped, "networks.yaml");
    const doc = parseDocument(readFileSync(file, "utf8"));
    doc.setIn(["networks", "secure", "vms", "vma1", "ip"], "10.81.0.12");
    writeFileSync(file, doc.toString());
  }
  afterAll(() => {
    for (const d of [edited, reshaped]) rmSync(d, { recursive: true, force: true });
  });
  const where = ["--prefix", lab.prefix, "--run-dir", lab.runDir];
  const runner = new ExecaRunner({ timeoutMs: 30_000 });

  /** netfleet-lab as a user runs it: its exit code, its stdout lines, the JSON documents it printed, its stderr lines. */
  async function labCli(argv: string[]) {
    process.stderr.write(`${tag} $ netfleet-lab ${argv.join(" ")}\n`);
    const lines: string[] = [];
    const values: unknown[] = [];
    const errors: string[] = [];
    // Text lines are echoed to stderr as they come: the test's log shows what a user sees.
    const code = await main(argv, { line: (t) => (lines.push(t), process.stderr.write(`${tag} ${t}\n`)), json: (v) => values.push(v), error: (t) => errors.push(t) });
    return { code, lines, values, errors };
  }
  const vm = (name: string) => current().vms.find((v) => v.name === name)!;
  /** What a TCP connection got: the greeting's server name and the peer it saw, or `none (<reason>)`. */
  const connect = async (ns: string, ip: string, port: number) => {
    const c = await tcpConnect(runner, ns, ip, port, { timeoutMs: 1500 });
    if (!c.ran) throw new Error(`probe did not run: ${c.why}`);
    return c.connected ? `${c.server} saw ${c.peer}` : `none (${c.reason})`;
  };
  const wanOf = () => current().inet!.backendAddress;
  /** The five flows these rows watch, from where each starts. */
  const flows = async () => {
    const inet = current().inet!.namespace;
    const wan = current().inet!.backendAddress;
    return {
      newForward: await connect(inet, wan, 8080),
      oldForward: await connect(inet, wan, 2222),
      newAllow: await connect(vm("vma1").namespace, "198.51.100.20", 80),
      oldAllow: await connect(vm("vma1").namespace, "198.51.100.10", 80),
      isolated: await connect(vm("vma3").namespace, "198.51.100.20", 80),
    };
  };

  it("playground: status names the controller (state dir, NATS URL) and a netfleet command line that works pasted into a shell", async () => {
    const text = await labCli(["status", ...where]);
    expect(text.code).toBe(0);
    expect(text.lines).toContain(`  site       ${original}`);
    expect(text.lines).toContain(`  controller netns ${lab.prefix}-sw, state dir ${lab.runDir}/controller, NATS nats://10.99.0.254:4222`);
    const json = (await labCli(["status", ...where, "--json"])).values[0] as LabStatus;
    const c = json.controller!;
    expect(c).toMatchObject({ namespace: `${lab.prefix}-sw`, stateDir: `${lab.runDir}/controller`, nats: "nats://10.99.0.254:4222" });
    expect(text.lines).toContain(`  netfleet   ${c.command}`);
    expect(c.command.startsWith(`ip netns exec ${lab.prefix}-sw env NETFLEET_STATE_DIR=${lab.runDir}/controller `), c.command).toBe(true);
    expect(c.command).toMatch(/ \S+ \S+\/bin\/netfleet\.mjs$/);
    // The line as a user pastes it, with a command appended: a shell is the point of this row.
    const r = await execa("sh", ["-c", `${c.command} status --json`], { reject: false, timeout: 60_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; desired: { hash: string } | null }[] }).hosts;
    expect(hosts.map((h) => h.host).sort()).toEqual(["backend", "hosta", "hostb"]);
    expect(hosts.every((h) => h.desired !== null)).toBe(true);
  }, 120_000);

  it("playground: refuses a site that changes what the lab is built of, naming the change; nothing runs", async () => {
    const before = readFileSync(join(lab.runDir, "lab.json"), "utf8");
    const r = await labCli(["rollout", reshaped, ...where]);
    expect(r.code).toBe(2);
    expect(r.errors).toEqual([expect.stringMatching(new RegExp(`^netfleet-lab rollout: .* does not fit lab ${lab.prefix} as built \\(VM vma1: ip 10\\.81\\.0\\.11 → 10\\.81\\.0\\.12\\);.*netfleet-lab up --inventory `))]);
    expect(readFileSync(join(lab.runDir, "lab.json"), "utf8")).toBe(before);
  });

  it("playground: rollout --check of the edited site changes nothing", async () => {
    const before = await flows();
    expect(before).toMatchObject({ newForward: expect.stringMatching(/^none/), oldForward: expect.stringMatching(/^vma2 saw /), newAllow: expect.stringMatching(/^none/), oldAllow: `inet saw ${wanOf()}`, isolated: expect.stringMatching(/^none/) });
    const r = await labCli(["rollout", edited, "--check", ...where]);
    expect(r.code, [...r.lines, ...r.errors].join("\n")).toBe(0);
    expect(r.lines.join("\n")).not.toContain("lab check of");
    // what would change on the backend: its firewall's ruleset gains the forward to vma2:8080 and vma1's entry for .20
    expect(r.lines.join("\n")).toContain("8080");
    expect(r.lines.join("\n")).toContain("198.51.100.20");
    expect(await flows()).toEqual(before);
    expect(readLabState(lab.runDir)!.rolledOut).toBeUndefined();
  }, 300_000);

  it("playground: rollout of the edited site: the new forward and allow entry work at their targets, the controls as before, and the lab check says so", async () => {
    const t0 = Date.now();
    const r = await labCli(["rollout", edited, ...where, "--json"]);
    process.stderr.write(`${tag} rollout + check in ${Date.now() - t0} ms\n`);
    const doc = r.values[0] as { rollout: { exitCode: number; dir: string }; check: CheckRow[] };
    expect(r.code, JSON.stringify(doc, null, 1).slice(0, 4000)).toBe(0);
    expect(doc.rollout).toMatchObject({ exitCode: 0, dir: edited });
    expect(doc.check.filter((row) => !row.ok)).toEqual([]);
    expect(doc.check).toContainEqual(expect.objectContaining({ check: "port-forward", to: `${wanOf()}:8080 -> vma2:8080`, got: "reach", ok: true }));
    expect(doc.check).toContainEqual(expect.objectContaining({ check: "egress (allowlist)", from: "vma1", to: "198.51.100.20:80", got: "masqueraded", ok: true }));
    // At the targets: vma2's new service greets the internet's client (DNAT keeps its source); .20's web server sees the backend.
    const after = await flows();
    expect(after).toMatchObject({ newForward: expect.stringMatching(/^vma2 saw 203\.0\.113\./), newAllow: `inet saw ${wanOf()}` });
    expect({ oldForward: after.oldForward, oldAllow: after.oldAllow, isolated: after.isolated }).toMatchObject({
      oldForward: expect.stringMatching(/^vma2 saw /),
      oldAllow: `inet saw ${wanOf()}`,
      isolated: expect.stringMatching(/^none/),
    });
    expect(readLabState(lab.runDir)!.rolledOut?.dir).toBe(edited);
    expect((await labCli(["status", ...where])).lines).toContain(`  site       ${edited}`);
  }, 600_000);

  it("playground: rolling the original back out takes the forward and the allow entry away again", async () => {
    const r = await labCli(["rollout", original, ...where]);
    expect(r.code, [...r.lines, ...r.errors].join("\n")).toBe(0);
    expect(r.lines).toContain(`lab check of ${original}:`);
    expect(r.lines.at(-1)).toMatch(/^(\d+)\/\1 checks as expected$/);
    expect(await flows()).toMatchObject({
      newForward: expect.stringMatching(/^none/),
      oldForward: expect.stringMatching(/^vma2 saw /),
      newAllow: expect.stringMatching(/^none/),
      oldAllow: `inet saw ${wanOf()}`,
      isolated: expect.stringMatching(/^none/),
    });
  }, 600_000);
}
