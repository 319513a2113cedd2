import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJoinToken } from "@netfleet/shared";
import { REMOTE, agentExecArgv } from "../../packages/controller/src/bootstrap/layout.ts";
import { hostTokens } from "../../packages/controller/src/bootstrap/tokens.ts";
import { NATS_PORT, SUBNET, agentPid, bootImage, buildWorld, changeHostKey, commandLines, destroyWorld, hostFile, runAgent, runAgentRaw, runBootstrap, sshRun, type World } from "./harness.ts";

const PREFIX = "nfb";
let w: World;

interface Outcome {
  host: string;
  status: string;
  changes: string[];
  runtime?: string;
  error?: { kind: string; message: string };
}
const parse = (stdout: string) => JSON.parse(stdout) as { summary: Record<string, number>; hosts: Outcome[] };

async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const approved = async (hosts: string[]) => {
  const rows = await w.controller.status();
  return hosts.every((h) => rows.find((r) => r.host === h)?.state === "approved");
};

beforeAll(async () => {
  w = await buildWorld(PREFIX, [
    { name: "hv1", kind: "sshd" },
    { name: "hv2", kind: "sshd" },
    { name: "hv3", kind: "bare" },
    { name: "hv4", kind: "sshd", optSize: "40m" },
    { name: "backend", kind: "sshd", dpkgWithout: ["nftables", "dnsmasq-base"] },
  ]);
});

afterAll(async () => {
  await destroyWorld(PREFIX, w?.dir);
});

describe("netfleet bootstrap against real sshd in namespaces", () => {
  it("bootstraps two hosts in parallel: agent, Node, config (0600) and unit installed, agents started, both enroll", async () => {
    const r = await runBootstrap(w, ["--limit", "hv1,hv2", "--accept-new", "--identity", w.clientKey, "--json", "--concurrency", "2"]);
    expect(r.code, r.stderr).toBe(0);
    const doc = parse(r.stdout);
    expect(doc.summary).toEqual({ changed: 2, unchanged: 0, failed: 0 });
    for (const h of doc.hosts) {
      expect(h.status).toBe("changed");
      expect(h.runtime).toBe("detached");
      expect(h.changes).toEqual(["host-key-recorded", "node", "agent", "config", "unit", "started"]);
    }
    expect(readFileSync(w.knownHosts, "utf8").trim().split("\n")).toHaveLength(2);
    const config = hostFile(w, "hv1", REMOTE.config);
    expect(statSync(config).mode & 0o777).toBe(0o600);
    // Each host got its own host token, minted for it; not the site's join token.
    const written = JSON.parse(readFileSync(config, "utf8")) as { token: string };
    expect(written).toEqual({ site: "boot", nats: [`nats://${SUBNET}.1:${NATS_PORT}`], token: expect.stringMatching(/^nfh1\./), name: "hv1" });
    expect(parseJoinToken(written.token).host).toBe("hv1");
    expect(parseJoinToken(JSON.parse(readFileSync(hostFile(w, "hv2", REMOTE.config), "utf8")).token).host).toBe("hv2");
    expect(readFileSync(hostFile(w, "hv2", REMOTE.unit), "utf8")).toContain(`ExecStart=${agentExecArgv(REMOTE.node).join(" ")}`);
    expect(agentPid(w, "hv1")).toBeGreaterThan(1);
    await eventually("hv1 and hv2 enrolled and approved", 30_000, () => approved(["hv1", "hv2"]));
    console.log(`first bootstrap of 2 hosts: ${r.ms} ms`);
  }, 300_000);

  it("a second run reports unchanged and changes nothing", async () => {
    const files = ["hv1", "hv2"].flatMap((h) => [REMOTE.agent, REMOTE.node, REMOTE.config, REMOTE.unit].map((p) => hostFile(w, h, p)));
    const before = files.map((f) => statSync(f).mtimeMs);
    const pids = [agentPid(w, "hv1"), agentPid(w, "hv2")];
    const knownHosts = readFileSync(w.knownHosts, "utf8");
    const r = await runBootstrap(w, ["--limit", "hv1,hv2", "--accept-new", "--identity", w.clientKey]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^hv1: unchanged, agent via detached/m);
    expect(r.stdout).toMatch(/^hv2: unchanged, agent via detached/m);
    expect(r.stdout).toMatch(/boot: 0 changed, 2 unchanged, 0 failed/);
    expect(r.stdout).not.toMatch(/uploading/);
    expect(files.map((f) => statSync(f).mtimeMs)).toEqual(before);
    expect([agentPid(w, "hv1"), agentPid(w, "hv2")]).toEqual(pids);
    expect(readFileSync(w.knownHosts, "utf8")).toBe(knownHosts);
    console.log(`no-op re-run: ${r.ms} ms`);
  });

  it("reports every other host's problem on one line of its own: missing packages, no disk space, unreachable; nothing installed there", async () => {
    const r = await runBootstrap(w, ["--accept-new", "--identity", w.clientKey, "--concurrency", "3"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^hv1: unchanged/m);
    expect(r.stdout).toMatch(/^hv2: unchanged/m);
    const failed = r.stderr.trim().split("\n").sort();
    expect(failed).toHaveLength(3);
    expect(failed[0]).toBe("backend: FAILED: missing packages: dnsmasq-base, nftables (apt-get install dnsmasq-base nftables)");
    expect(failed[1]).toBe("hv3: FAILED: unreachable: root@10.97.0.13:22: connection refused (is sshd running?)");
    expect(failed[2]).toMatch(/^hv4: FAILED: no disk space: \/opt has 40 MB free, the agent needs \d+ MB$/);
    expect(r.stdout).toMatch(/boot: 0 changed, 2 unchanged, 3 failed/);
    for (const h of ["backend", "hv4"]) {
      expect(existsSync(hostFile(w, h, REMOTE.config))).toBe(false);
      expect(existsSync(hostFile(w, h, REMOTE.agent))).toBe(false);
    }
    // Their host keys were new: recorded, as --accept-new asked.
    expect(readFileSync(w.knownHosts, "utf8").trim().split("\n")).toHaveLength(4);
  });

  it("refuses a client key the host does not accept, with one clear line", async () => {
    const r = await runBootstrap(w, ["--limit", "hv1", "--identity", w.otherKey]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hv1: FAILED: authentication failed: root@10\.97\.0\.11:22 did not accept key .*id_other$/m);
    const json = parse((await runBootstrap(w, ["--limit", "hv1", "--identity", w.otherKey, "--json"])).stdout);
    expect(json.hosts[0]!.error!.kind).toBe("authentication");
  });

  it("refuses a changed host key, even with --accept-new, and touches nothing", async () => {
    const knownHosts = readFileSync(w.knownHosts, "utf8");
    const config = statSync(hostFile(w, "hv2", REMOTE.config)).mtimeMs;
    await changeHostKey(w, "hv2");
    const r = await runBootstrap(w, ["--limit", "hv2", "--accept-new", "--identity", w.clientKey, "--json"]);
    expect(r.code).toBe(1);
    const out = parse(r.stdout).hosts[0]!;
    expect(out.status).toBe("failed");
    expect(out.error!.kind).toBe("host-key-changed");
    expect(out.error!.message).toMatch(/^host key changed: .*known_hosts:\d+ records ssh-ed25519 SHA256:\S+, the host now offers SHA256:\S+\. Refused/);
    expect(readFileSync(w.knownHosts, "utf8")).toBe(knownHosts);
    expect(statSync(hostFile(w, "hv2", REMOTE.config)).mtimeMs).toBe(config);
    const human = await runBootstrap(w, ["--limit", "hv2", "--identity", w.clientKey]);
    expect(human.stderr).toMatch(/^hv2: FAILED: host key changed: /m);
  });

  it("an image for any host carries the site's join token (from stdin), no name; without --host or --token-file it is refused", async () => {
    const root = join(w.dir, "image-any");
    mkdirSync(root, { recursive: true });
    const refused = await runBootstrap(w, ["--image-root", root], { inNamespace: false });
    expect(refused.code).toBe(64);
    expect(refused.stderr).toMatch(/^netfleet bootstrap: --image-root without --host writes an image for any host, which can only carry the site's join token: give --host NAME/);
    const made = await runBootstrap(w, ["--image-root", root, "--json"], { inNamespace: false, siteToken: true });
    expect(made.code, made.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(root, REMOTE.config), "utf8"))).toEqual({ site: "boot", nats: [`nats://${SUBNET}.1:${NATS_PORT}`], token: w.join.token });
  });

  it("a host whose image carries the agent and its own host token (--host) enrolls on first boot, approved by the token", async () => {
    // The image, written by `netfleet bootstrap --image-root --host`: the same files, the host's name and a token minted for it.
    const root = join(w.hosts.get("hv3")!.dir, "upper");
    mkdirSync(root, { recursive: true });
    const made = await runBootstrap(w, ["--image-root", root, "--host", "hv3", "--json"], { inNamespace: false });
    expect(made.code, made.stderr).toBe(0);
    expect(JSON.parse(made.stdout)).toMatchObject({ status: "changed" });
    const again = await runBootstrap(w, ["--image-root", root, "--host", "hv3", "--json"], { inNamespace: false });
    const second = JSON.parse(again.stdout) as { status: string; files: { path: string; changed: boolean }[] };
    expect(second.files.filter((f) => f.changed).map((f) => f.path)).toEqual([]);
    expect(second.status).toBe("unchanged");
    const written = JSON.parse(readFileSync(hostFile(w, "hv3", REMOTE.config), "utf8")) as { token: string };
    expect(written).toEqual({ site: "boot", nats: [`nats://${SUBNET}.1:${NATS_PORT}`], token: expect.stringMatching(/^nfh1\./), name: "hv3" });
    expect(parseJoinToken(written.token).host).toBe("hv3");
    expect(statSync(hostFile(w, "hv3", REMOTE.config)).mode & 0o777).toBe(0o600);
    expect(readlinkSync(hostFile(w, "hv3", "/etc/systemd/system/multi-user.target.wants/netfleet-agent.service"))).toBe(REMOTE.unit);
    bootImage(w, "hv3");
    await eventually("hv3 enrolled and approved", 30_000, () => approved(["hv3"]));
    const enroll = w.controller.events.find((e) => e.event === "enroll" && e.host === "hv3" && e.state === "approving");
    expect(enroll).toMatchObject({ host: "hv3", matchedBy: "token" });
  });

  it("no process shows a token on its command line: netfleet-agent run with --token-file FILE and with --token-file - (stdin) enrolls; --token is refused", async () => {
    // Host tokens as `netfleet hosts token` mints them, from the same state dir.
    const mint = await hostTokens(w.stateDir, "boot", 3600_000);
    const fileToken = await mint.forHost("hv4");
    const stdinToken = await mint.forHost("backend");
    const tokenFile = join(w.dir, "hv4.token");
    writeFileSync(tokenFile, `${fileToken}\n`, { mode: 0o600 });
    const fromFile = runAgent(w, "hv4", { file: tokenFile });
    const fromStdin = runAgent(w, "backend", { stdin: stdinToken });
    try {
      // Positive control: both enroll with the token they were given (approved: a host token approves at once).
      await eventually("hv4 and backend enrolled and approved", 30_000, () => approved(["hv4", "backend"]));
      const lines = commandLines();
      const agents = [fromFile.child.pid!, fromStdin.child.pid!];
      for (const pid of agents) expect(lines.get(pid), `the agent's own command line (pid ${pid})`).toMatch(/cli\.ts run --site boot .*--token-file/);
      // The secrets that exist here: the site's join token (and its secret half), the tokens just minted, those bootstrap wrote to hv1..hv3.
      const written = ["hv1", "hv2", "hv3"].map((h) => (JSON.parse(readFileSync(hostFile(w, h, REMOTE.config), "utf8")) as { token: string }).token);
      const secrets = [w.join.token, w.join.token.split(".")[1]!, fileToken, stdinToken, ...written];
      const leaks = [...lines].filter(([, line]) => secrets.some((t) => line.includes(t))).map(([pid, line]) => `${pid}: ${line.slice(0, 120)}`);
      expect(leaks).toEqual([]);
      console.log(`cmdline of ${lines.size} processes checked for ${secrets.length} secrets, agents ${agents.join(", ")} and bootstrap's (${agentPid(w, "hv1")}) among them`);
      expect(lines.has(agentPid(w, "hv1")!)).toBe(true);
    } finally {
      await Promise.all(
        [fromFile, fromStdin].map(
          (a) =>
            new Promise<void>((resolve) => {
              if (a.child.exitCode !== null) return resolve();
              const timer = setTimeout(() => (a.child.kill("SIGKILL"), resolve()), 15_000);
              a.child.once("exit", () => (clearTimeout(timer), resolve()));
              a.child.kill("SIGTERM");
            }),
        ),
      );
    }
    // The old way is refused before anything runs, saying what to do instead (a made-up token: this one is in ps).
    const refused = runAgentRaw(w, "hv4", ["--token", "abcdefgh.0123456789abcdefXYZ"]);
    expect(await refused.code).toBe(64);
    expect(refused.output()).toContain("--token is refused: a token on the command line is shown by ps to every local user");
  });

  it("over SSH: a link at /etc/netfleet on the host is refused, no token written through it; control: without it the host gets agent.json 0600 in /etc/netfleet 0700", async () => {
    // /var is the host's own (an overlay of this test); the link points there.
    sshRun(w, "hv1", "mkdir -p /var/outside && rm -rf /etc/netfleet && ln -s /var/outside /etc/netfleet");
    const r = await runBootstrap(w, ["--limit", "hv1", "--identity", w.clientKey]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hv1: FAILED: \/etc\/netfleet on the host is a symbolic link; refused, the token is not written through it$/m);
    expect(readdirSync(hostFile(w, "hv1", "/var/outside"))).toEqual([]);
    sshRun(w, "hv1", "rm /etc/netfleet");
    const fixed = await runBootstrap(w, ["--limit", "hv1", "--identity", w.clientKey, "--json"]);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(parse(fixed.stdout).hosts[0]!.changes).toContain("config");
    expect(statSync(hostFile(w, "hv1", REMOTE.config)).mode & 0o777).toBe(0o600);
    expect(statSync(hostFile(w, "hv1", REMOTE.configDir)).mode & 0o777).toBe(0o700);
    expect(parseJoinToken(JSON.parse(readFileSync(hostFile(w, "hv1", REMOTE.config), "utf8")).token).host).toBe("hv1");
    // Two bootstrap runs; the second restarts the agent (and re-uploads the bundle when the tree changed): minutes at load 10.
  }, 300_000);
});
