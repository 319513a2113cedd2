import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Toolbox } from "../tools.ts";
import { ovsObserveArgv, parseOvsState } from "../resources/ovsdb.ts";
import { ovsdbListRead, readOvsdbLists, renderLists } from "./ovsdb-socket.ts";
import { ExecaRunner, ExecError } from "./runner.ts";
import { ipBatchCommand, ipBatchKey, splitIpBatch } from "./ip-batch.ts";
import { sysctlReadPath } from "./proc-sys.ts";
import { splitVirshBatch, virshBatchArgv, virshBatchKey } from "./virsh-batch.ts";

const fx = (name: string) => readFileSync(join(import.meta.dirname, "__fixtures__", name), "utf8");
const tools = new Toolbox({ ovsDb: "/tmp/nfx-lab/hosts/hosta/ovs/db.sock" });
const ctx = { owner: "lab", tools };

/** The six lists the lab capture asked (README.ovsdb.txt): ovs.ts's three, then vm-bandwidth-qos's three. */
const CAPTURED = tools.ovsVsctl(
  "--format=json",
  ...["--", "--columns=_uuid,name,datapath_type,fail_mode,ports,external_ids", "list", "Bridge"],
  ...["--", "--columns=_uuid,name,interfaces,tag,trunks,bond_mode,lacp,vlan_mode,external_ids", "list", "Port"],
  ...["--", "--columns=_uuid,name,type,options,external_ids,ofport,mac_in_use,mtu_request,mtu", "list", "Interface"],
  ...["--", "--columns=_uuid,name,qos", "list", "Port"],
  ...["--", "--columns=_uuid,type,other_config,queues,external_ids", "list", "QoS"],
  ...["--", "--columns=_uuid,other_config,external_ids", "list", "Queue"],
);

/** A table line with its rows in _uuid order (ovs-vsctl and the server list rows in their own orders). */
const sorted = (line: string) => {
  const t = JSON.parse(line) as { headings: string[]; data: unknown[][] };
  const u = t.headings.indexOf("_uuid");
  return { headings: t.headings, data: [...t.data].sort((a, b) => JSON.stringify(a[u]).localeCompare(JSON.stringify(b[u]))) };
};

describe("OVS database reads over its socket (RFC 7047 transact) instead of an ovs-vsctl process", () => {
  it("takes exactly the list reads: the socket, each table with its columns", () => {
    expect(ovsdbListRead(ovsObserveArgv(ctx))).toEqual({
      socket: "/tmp/nfx-lab/hosts/hosta/ovs/db.sock",
      timeoutMs: 30_000,
      tables: [
        { table: "Bridge", columns: ["_uuid", "name", "datapath_type", "fail_mode", "ports", "external_ids"] },
        { table: "Port", columns: ["_uuid", "name", "interfaces", "tag", "trunks", "bond_mode", "lacp", "vlan_mode", "external_ids"] },
        { table: "Interface", columns: ["_uuid", "name", "type", "options", "external_ids", "ofport", "mac_in_use", "mtu_request", "mtu"] },
      ],
    });
    // no --db: ovs-vsctl's default socket under $OVS_RUNDIR
    expect(ovsdbListRead(new Toolbox().ovsVsctl("--format=json", "--", "--columns=name", "list", "Bridge"), { OVS_RUNDIR: "/run/ovs" })?.socket).toBe("/run/ovs/db.sock");
    // anything else runs as ovs-vsctl: writes, text output, a named record, a find, no columns
    for (const argv of [
      tools.ovsVsctl("--may-exist", "add-br", "br0"),
      tools.ovsVsctl("--", "--columns=name", "list", "Bridge"),
      tools.ovsVsctl("--format=json", "--", "--columns=name", "list", "Bridge", "br0"),
      tools.ovsVsctl("--format=json", "--", "--columns=name", "find", "Bridge", "name=br0"),
      tools.ovsVsctl("--format=json", "--", "list", "Bridge"),
      tools.ovsVsctl("--format=json", "--", "--columns=name;x", "list", "Bridge"),
      ["ovs-ofctl", "dump-flows", "br0"],
    ])
      expect(ovsdbListRead(argv), argv.join(" ")).toBeUndefined();
  });

  it("renders the server's reply as the very text ovs-vsctl printed for the same lists (lab capture)", () => {
    const read = ovsdbListRead(CAPTURED)!;
    const reply = JSON.parse(fx("lab-vmhost-transact-reply.json")) as { result: unknown };
    const ours = renderLists(read, reply.result).split("\n").filter(Boolean);
    const theirs = fx("lab-vmhost-ovs-vsctl-list.jsonl").split("\n").filter(Boolean);
    expect(ours).toHaveLength(6);
    expect(ours.map(sorted)).toEqual(theirs.map(sorted));
    // and the resources' parser reads both alike
    const three = (lines: string[]) => lines.slice(0, 3).join("\n") + "\n";
    expect(parseOvsState(three(ours))).toEqual(parseOvsState(three(theirs)));
  });

  it("an OVSDB error in a result is an error (the runner then runs ovs-vsctl)", () => {
    const read = ovsdbListRead(tools.ovsVsctl("--format=json", "--", "--columns=nosuch", "list", "Bridge"))!;
    expect(() => renderLists(read, [{ error: "unknown column", details: "No column nosuch in table Bridge." }])).toThrow(/unknown column: No column nosuch/);
  });

  it("one round trip on the socket: the transact asked, the reply read in pieces", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nf-ovsdb-"));
    const path = join(dir, "db.sock");
    const asked: unknown[] = [];
    const reply = JSON.parse(fx("lab-vmhost-transact-reply.json")) as { result: unknown };
    const server = createServer((c) => {
      c.setEncoding("utf8");
      c.on("data", (d: string) => {
        const req = JSON.parse(d) as { id: number };
        asked.push(req);
        const text = JSON.stringify({ id: req.id, result: reply.result, error: null });
        // in two writes: the reader waits for the whole object
        c.write(text.slice(0, 100));
        setTimeout(() => c.write(text.slice(100)), 20);
      });
    });
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const read = ovsdbListRead(tools.ovsVsctl("--format=json", ...CAPTURED.slice(CAPTURED.indexOf("--format=json") + 1)).map((a) => a.replace(/^--db=unix:.*/, `--db=unix:${path}`)))!;
      expect(read.socket).toBe(path);
      const text = await readOvsdbLists(read);
      expect(text.split("\n").filter(Boolean).map(sorted)).toEqual(fx("lab-vmhost-ovs-vsctl-list.jsonl").split("\n").filter(Boolean).map(sorted));
      expect(asked).toHaveLength(1);
      expect((asked[0] as { method: string; params: unknown[] }).method).toBe("transact");
      expect((asked[0] as { params: unknown[] }).params[0]).toBe("Open_vSwitch");
      expect((asked[0] as { params: unknown[] }).params.slice(1)).toContainEqual({ op: "select", table: "QoS", where: [], columns: ["_uuid", "type", "other_config", "queues", "external_ids"] });
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("no server on the socket: ovs-vsctl runs and its own message is the error", async () => {
    const runner = new ExecaRunner({ timeoutMs: 10_000 });
    const argv = new Toolbox({ ovsDb: "/nonexistent/db.sock" }).ovsVsctl("--format=json", "--", "--columns=name", "list", "Bridge").map((a) => (a === "--timeout=30" ? "--timeout=2" : a));
    const err = await runner.run({ argv, mutating: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecError);
    expect((err as ExecError).stderr).toMatch(/database connection failed/);
    expect(runner.log.map((l) => l.command.argv[0])).toEqual(["ovs-vsctl"]);
  });
});

describe("virsh reads of one turn in one virsh process", () => {
  const v = new Toolbox({ libvirtUri: "qemu:///system?socket=/tmp/nfx-lab/hosts/hosta/libvirt/run/libvirt/libvirt-sock" }).virsh.bind(new Toolbox({ libvirtUri: "qemu:///system?socket=/tmp/nfx-lab/hosts/hosta/libvirt/run/libvirt/libvirt-sock" }));
  const marker = "@@netfleet-0123456789ab@@";

  it("batches net-list and net-dumpxml of one connection, nothing else", () => {
    expect(virshBatchKey(v("net-list", "--all"))).toBe(virshBatchKey(v("net-dumpxml", "--inactive", "secure")));
    expect(virshBatchKey(new Toolbox().virsh("net-list", "--all"))).not.toBe(virshBatchKey(v("net-list", "--all")));
    expect(virshBatchKey(v("net-define", "/tmp/x.xml"))).toBeUndefined();
    expect(virshBatchKey(v("net-dumpxml", "--inactive", "a;net-destroy"))).toBeUndefined();
    expect(virshBatchArgv([v("net-list", "--all"), v("net-dumpxml", "--inactive", "nosuch"), v("net-dumpxml", "--inactive", "secure")], marker)).toEqual([
      ...v().slice(0, 4),
      `net-list --all; echo ${marker}; net-dumpxml --inactive nosuch; echo ${marker}; net-dumpxml --inactive secure`,
    ]);
  });

  it("splits virsh's real output into each command's own (lab capture): a failed one prints nothing", () => {
    const parts = splitVirshBatch(fx("virsh-batch.stdout"), 3, marker)!;
    expect(parts[0]).toBe(fx("virsh-net-list.stdout"));
    expect(parts[1]).toBe("");
    expect(parts[2]).toBe(fx("virsh-dumpxml-secure.stdout"));
    expect(fx("virsh-batch.stderr")).toMatch(/Network not found: no network with matching name 'nosuch'/);
    expect(splitVirshBatch(fx("virsh-batch.stdout"), 2, marker)).toBeUndefined();
  });
});

describe("ip -json reads of one turn in one `ip -batch -`", () => {
  it("batches show reads with the same global options, nothing else", () => {
    const t = new Toolbox();
    expect(ipBatchKey(t.ip("-json", "addr", "show"))).toBe(ipBatchKey(t.ip("-json", "route", "show")));
    expect(ipBatchKey(t.ip("-j", "addr", "show", "dev", "wan0"))).toBe(ipBatchKey(t.ip("-json", "addr", "show")));
    expect(ipBatchKey(t.ip("-details", "-json", "link", "show"))).not.toBe(ipBatchKey(t.ip("-json", "addr", "show")));
    for (const argv of [t.ip("link", "show"), t.ip("-json", "route", "get", "10.0.0.1"), t.ip("-json", "link", "set", "dev", "x", "up"), t.ip("-json", "addr", "show", "dev", "a b")])
      expect(ipBatchKey(argv), argv.join(" ")).toBeUndefined();
    expect(ipBatchCommand([t.ip("-json", "addr", "show"), t.ip("-json", "route", "show"), t.ip("-json", "addr", "show", "dev", "wan0")])).toEqual({
      argv: ["ip", "-json", "-batch", "-"],
      stdin: "addr show\nroute show\naddr show dev wan0\n",
    });
  });

  it("splits ip's real output into each command's own bytes (lab capture); a failed command stops the batch: each runs alone", () => {
    expect(splitIpBatch(fx("ip-batch.stdout"), 3)).toEqual([fx("ip-addr.stdout"), fx("ip-route.stdout"), fx("ip-addr-wan0.stdout")]);
    expect(fx("ip-batch-fail.stderr")).toMatch(/Command failed -:1/);
    expect(splitIpBatch(fx("ip-batch-fail.stdout"), 2)).toBeUndefined();
  });
});

describe("sysctl -n from /proc/sys", () => {
  it("maps the name's dots to the path, and only `sysctl -n NAME`", () => {
    expect(sysctlReadPath(["sysctl", "-n", "net.ipv4.ip_forward"])).toBe("/proc/sys/net/ipv4/ip_forward");
    for (const argv of [["sysctl", "-w", "net.ipv4.ip_forward=1"], ["sysctl", "-n", "../etc/passwd"], ["sysctl", "-n", "net/ipv4/ip_forward"], ["sysctl", "-n", "a", "b"]])
      expect(sysctlReadPath(argv), argv.join(" ")).toBeUndefined();
  });

  it("the runner answers it with what sysctl prints, and logs the file it read", async () => {
    const runner = new ExecaRunner();
    const r = await runner.run({ argv: ["sysctl", "-n", "kernel.ostype"], mutating: false });
    expect(r.stdout).toBe("Linux\n");
    expect(runner.log.map((l) => l.command.argv)).toEqual([["read", "/proc/sys/kernel/ostype"]]);
    // no such key: sysctl runs and its message is the error
    const err = await runner.run({ argv: ["sysctl", "-n", "net.nosuch.key"], mutating: false }).catch((e: unknown) => e);
    expect((err as ExecError).stderr).toMatch(/net.nosuch.key/);
  });
});

describe("ExecaRunner: reads of one turn share a process, each gets its own output", () => {
  it("three ip reads started together: one ip process, the same stdout each would print alone", async () => {
    const runner = new ExecaRunner();
    const t = new Toolbox();
    const alone = await Promise.all([t.ip("-json", "addr", "show"), t.ip("-json", "route", "show")].map(async (argv) => (await new ExecaRunner().run({ argv: [...argv], mutating: false })).stdout));
    const together = await Promise.all([t.ip("-json", "addr", "show"), t.ip("-json", "route", "show"), t.ip("-json", "addr", "show", "dev", "lo")].map((argv) => runner.run({ argv, mutating: false })));
    // (this host's addresses may change meanwhile: other tests' links; its routes do not)
    expect(together[1]!.stdout).toBe(alone[1]);
    expect((JSON.parse(together[0]!.stdout) as { ifname: string }[]).map((l) => l.ifname)).toContain("lo");
    expect((JSON.parse(alone[0]!) as { ifname: string }[]).map((l) => l.ifname)).toContain("lo");
    expect(JSON.parse(together[2]!.stdout)[0].ifname).toBe("lo");
    expect(runner.log.map((l) => l.command.argv)).toEqual([["ip", "-json", "-batch", "-"]]);
    // one that fails: the batch stops there, each runs alone and the failing one keeps its own error
    const r2 = new ExecaRunner();
    const settled = await Promise.allSettled([t.ip("-json", "addr", "show", "dev", "nosuch0"), t.ip("-json", "route", "show")].map((argv) => r2.run({ argv, mutating: false })));
    expect(settled[0]).toMatchObject({ status: "rejected", reason: { stderr: expect.stringMatching(/Device "nosuch0" does not exist/) } });
    expect(settled[1]).toMatchObject({ status: "fulfilled", value: { stdout: alone[1] } });
  });
});
