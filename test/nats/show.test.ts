/**
 * `netfleet show HOST` over a real nats-server: the controller asks one
 * agent (FleetMember with its own NATS user, enrolled with a host token)
 * on `nf.<site>.show.<host>`; the agent reads its host (observeHost, here
 * on the replayed capture of a lab VM host and of the lab backend:
 * show/__fixtures__) and answers. The CLI runs as an operator runs it
 * (main(argv) and the bin as a process). Permissions: another host's agent
 * can neither ask for nor answer (nor overhear) a host's show. Ports 23100-23199.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { observeHost } from "@netfleet/agent";
import { HostView, encodeMessage, showSubject } from "@netfleet/shared";
import { loadCapture } from "../../packages/agent/src/show/fixtures.ts";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { SITE, agentFileConnection, assignmentFor, eventually, inventoryHost, startAgent, startSite, writeControllerHome, type Site, type TestAgent } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const hosta = loadCapture("hosta");
const backend = loadCapture("backend");


describe("netfleet show over NATS", () => {
  let site: Site;
  let home: string;
  const agents: TestAgent[] = [];
  let hv1: TestAgent;

  beforeAll(async () => {
    site = await startSite({ basePort: 23100, hosts: [inventoryHost("hv1"), inventoryHost("hv2"), inventoryHost("hv3")] });
    hv1 = startAgent(site, { hostname: "hv1", onShow: () => observeHost({ host: "hv1", runner: hosta.runner, tools: hosta.tools, files: hosta.files }) });
    const hv2 = startAgent(site, { hostname: "hv2", onShow: () => observeHost({ host: "hv2", runner: backend.runner, tools: backend.tools, files: backend.files }) });
    // hv3's view is valid but bigger than the server's max_payload (1 MiB): 4096 leases with 250-character host names.
    const big = async () => {
      const view = await observeHost({ host: "hv3", runner: backend.runner, tools: backend.tools, files: backend.files });
      const lease = view.leases[0]!;
      return { ...view, leases: Array.from({ length: 4096 }, () => ({ ...lease, hostname: "x".repeat(250) })) };
    };
    const hv3 = startAgent(site, { hostname: "hv3", onShow: big });
    agents.push(hv1, hv2, hv3);
    await Promise.all(agents.map((a) => a.started));
    await site.cp.publish(assignmentFor("hv1", 1));
    await eventually(() => hv1.applied.length === 1, "hv1 applied revision 1");
    home = await writeControllerHome(site, join(site.dir, "no-site-folder"));
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) await a.client.stop();
    await site?.close();
  });

  const show = async (argv: string[], json: boolean) => {
    const out = memoryOutput(json);
    const code = await main(["show", ...argv, "--state-dir", home], out);
    return { code, out };
  };

  it("show HOST: the agent's view in ovs-vsctl show's layout, with the revision it runs", async () => {
    const { code, out } = await show(["hv1"], false);
    expect(out.stderr).toEqual([]);
    expect(code).toBe(0);
    const text = out.stdout.join("\n");
    expect(text.split("\n")[0]).toMatch(/^hv1: revision 1, assignment [0-9a-f]{12}, read 2026-/);
    expect(text).toContain("    Bridge br-secure  (netfleet lab)\n        fail_mode: secure\n");
    // The LEASE column depends on the wall clock (the captured leases end an hour after the capture): not checked here.
    expect(text).toMatch(/^ {2}v-vma3 +br-secure +4 +52:54:00:81:0a:03 +10\.81\.0\.13 +yes +\S+ +22 +9$/m);
    expect(text).toContain("libvirt networks");
  });

  it("show HOST --json: the HostView as the agent sent it; --limit asks several agents", async () => {
    const one = await show(["hv1", "--json"], true);
    expect(one.code).toBe(0);
    const doc = one.out.values[0] as { host: string; ok: boolean; revision: number; hash: string; view: unknown };
    expect(doc).toMatchObject({ host: "hv1", ok: true, revision: 1, hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const view = HostView.parse(doc.view);
    expect(view.vmPorts.map((p) => p.port)).toEqual(["v-vma1", "v-x-hosta", "v-vma3", "v-vma4", "v-vma2"]);

    const both = await show(["--limit", "hv1,hv2", "--json"], true);
    expect(both.code).toBe(0);
    const hosts = (both.out.values[0] as { hosts: { host: string; ok: boolean; revision: number; view: HostView }[] }).hosts;
    expect(hosts.map((h) => [h.host, h.ok, h.revision])).toEqual([
      ["hv1", true, 1],
      ["hv2", true, 0],
    ]);
    expect(hosts[1]!.view.nft!.sets.find((s) => s.name === "allow_all_tcp")!.elements).toEqual([{ value: "10.81.0.11 . 198.51.100.10" }]);
  });

  it("an unknown host, a --limit that selects nothing: one line, exit 2, no stack; a host whose agent is not connected: exit 1", async () => {
    const unknown = await show(["hv9"], false);
    expect(unknown.code).toBe(2);
    expect(unknown.out.stderr).toEqual(['netfleet show: unknown host "hv9": not in the inventory and never enrolled (known: hv1, hv2, hv3)']);
    const none = await show(["--limit", "db*"], false);
    expect(none.code).toBe(2);
    expect(none.out.stderr).toEqual(["netfleet show: --limit db*: matches no host, group, role or label of site lab"]);
    // A site folder that does not load: its problem, exit 2, nothing asked.
    const badSite = await show(["hv1", join(site.dir, "no-such-site")], false);
    expect(badSite.code).toBe(2);
    expect(badSite.out.stdout).toEqual([]);
    // An upper-case name is not a host name: a usage error that says why.
    const upper = await show(["HV1"], false).catch((err: Error) => ({ code: 64, out: { stderr: [err.message] } }));
    expect(upper.code).toBe(64);
    const jsonUnknown = await show(["hv9", "--json"], true);
    expect(jsonUnknown.code).toBe(2);
    expect(jsonUnknown.out.values).toEqual([]);
    // hv2 enrolled, then its agent stops: nobody answers on its subject.
    await agents[1]!.client.stop();
    const gone = await show(["hv2"], false);
    expect(gone.code).toBe(1);
    expect(gone.out.stderr).toEqual(["netfleet show: hv2: hv2's agent is not connected (or runs a version without show): nobody answers its show requests; netfleet status shows when it was last seen"]);
    expect([...unknown.out.stderr, ...none.out.stderr, ...gone.out.stderr].join("\n")).not.toMatch(/\n\s+at /);
  });

  it("a view over the server's max_payload: the agent says so at once instead of the request timing out (exit 1)", async () => {
    const started = Date.now();
    const { code, out } = await show(["hv3"], false);
    expect(code).toBe(1);
    expect(out.stderr).toEqual([expect.stringMatching(/^netfleet show: hv3: the view is \d+ bytes, over the server's max_payload of 1048576 bytes$/)]);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("another host's agent cannot ask for a host's view, answer for it, or hear the answer", async () => {
    const other = await agentFileConnection(site, "hv2");
    try {
      // Asking: hv2 may not publish on hv1's show subject (nor on its own: only the controller asks).
      await expect(other.nc.request(showSubject(SITE, "hv1"), encodeMessage({ kind: "show", site: SITE, host: "hv1" }), { timeout: 2000 })).rejects.toThrow(/Permissions Violation for Publish/);
      await expect(other.nc.request(showSubject(SITE, "hv2"), encodeMessage({ kind: "show", site: SITE, host: "hv2" }), { timeout: 2000 })).rejects.toThrow(/Permissions Violation for Publish/);
      // Answering or reading the requests: no subscription on hv1's subject, nor a wildcard over every host's.
      for (const subject of [showSubject(SITE, "hv1"), `nf.${SITE}.show.*`, `nf.${SITE}.>`, "_INBOX.>"]) {
        const sub = other.nc.subscribe(subject);
        const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r("still open"), 2000))]);
        expect(String((closed as Error | undefined)?.message ?? closed)).toContain(`Permissions Violation for Subscription to "${subject}"`);
      }
      // Control: hv1's own user may subscribe to its own show subject (what its agent does), and the controller still gets hv1's view.
      const own = await agentFileConnection(site, "hv1");
      try {
        const sub = own.nc.subscribe(showSubject(SITE, "hv1"), { max: 1 });
        await own.nc.flush();
        expect(own.errors).toEqual([]);
        sub.unsubscribe();
      } finally {
        await own.nc.close();
      }
      const still = await show(["hv1", "--json"], true);
      expect(still.code).toBe(0);
    } finally {
      await other.nc.close();
    }
  });

  it("the CLIs as processes: netfleet show --json and --help, netfleet-agent show --json on this machine", async () => {
    // Asynchronously: the agents answering run in this process.
    const node = (bin: string, args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile("sh", [join(REPO, "scripts/node.sh"), join(REPO, bin), ...args], { cwd: REPO, encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) =>
          resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
        );
      });
    const json = await node("packages/controller/bin/netfleet.mjs", ["show", "hv1", "--json", "--state-dir", home]);
    expect([json.status, json.stderr]).toEqual([0, ""]);
    expect(HostView.parse(JSON.parse(json.stdout).view).host).toBe("hv1");
    const help = await node("packages/controller/bin/netfleet.mjs", ["show", "--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("Usage: netfleet show [options] <host> [site-dir]\n       netfleet show [options] --limit <patterns> [site-dir]");
    const usage = await node("packages/controller/bin/netfleet.mjs", ["show", "--state-dir", home]);
    expect([usage.status, usage.stderr.trim()]).toEqual([64, "netfleet show: give a HOST or --limit PATTERNS (one of them)"]);
    const unknown = await node("packages/controller/bin/netfleet.mjs", ["show", "hv9", "--state-dir", home]);
    expect([unknown.status, unknown.stderr.trim()]).toEqual([2, 'netfleet show: unknown host "hv9": not in the inventory and never enrolled (known: hv1, hv2, hv3)']);
    // The agent's own show on this machine: real read-only commands; OVS and libvirt pointed at sockets that do not exist.
    const local = await node("packages/agent/bin/netfleet-agent.mjs", ["show", "--json", "--name", "here", "--ovs-db", "/nonexistent/db.sock", "--libvirt-uri", "qemu:///system?socket=/nonexistent/sock", "--run-dir", join(site.dir, "run")]);
    expect(local.status).toBe(0);
    const view = HostView.parse(JSON.parse(local.stdout));
    expect(view.host).toBe("here");
    expect(view.links.some((l) => l.name === "lo")).toBe(true);
    expect(view.bridges).toBeUndefined();
    expect(view.problems.map((p) => p.source.split(" ")[0])).toEqual(expect.arrayContaining(["ovs-vsctl", "virsh"]));
  }, 120_000);
});
