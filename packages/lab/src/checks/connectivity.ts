import { randomBytes, randomInt } from "node:crypto";
import { join } from "node:path";
import PQueue from "p-queue";
import { ExecaRunner, type Runner } from "@netfleet/agent";
import { cidrContains, intToIpv4, ipv4ToInt, parseIpv4Cidr, type Inventory, type Ipv4Cidr, type Network, type Vm } from "@netfleet/shared";
import type { LabStatus, LabVm } from "../types.ts";
import { Capture, dhcpExchange, dhcpProbeHook, dig, inNs, ping, tcpConnect, tcpSyn, type CaptureResult, type Frame, type PingResult, type SynResult, type TcpResult } from "./probes.ts";

/**
 * What a probe saw: traffic got through or not; a lease or none; a name
 * resolved to the expected address, or refused; an answer that is not the
 * right one (a lease or a name); traffic arrived from the backend's address
 * (masqueraded) or from the VM's own.
 */
export type Outcome = "reach" | "blocked" | "lease" | "no-lease" | "resolve" | "refused" | "wrong-answer" | "masqueraded" | "unmasqueraded";

/**
 * One row of the connectivity report. `got` is "error" when the probe could
 * not tell (a tool that did not run, a capture that did not start, a positive
 * control that was not seen): never a pass. `ms` is the row's wall time; the
 * one-way rows share one phase and each carries that phase's time.
 */
export interface CheckRow {
  check: string;
  from: string;
  to: string;
  expect: Outcome;
  got: Outcome | "error";
  ok: boolean;
  detail?: string;
  ms?: number;
}

interface Answer {
  got: Outcome | "error";
  detail?: string;
}

/** One row to run: what it claims, and the probe that checks the claim. */
export interface Probe {
  check: string;
  from: string;
  to: string;
  expect: Outcome;
  /** Rows of the one-way phase (captures, VMs changed for a moment): run after the others, alone. */
  exclusive?: boolean;
  run: (runner: Runner) => Promise<Answer>;
}

// --- two-way probes: a positive answer proves the path; silence is "blocked" only when the tool ran

function pingAnswer(p: PingResult): Answer {
  if (!p.ran) return { got: "error", detail: p.why };
  return p.received > 0 ? { got: "reach", detail: p.summary } : { got: "blocked", detail: p.summary };
}

function tcpAnswer(c: TcpResult, masqueradeAddress: string): Answer {
  if (!c.ran) return { got: "error", detail: c.why };
  if (!c.connected) return { got: "blocked", detail: `${c.reason}: ${c.message}` };
  return c.peer === masqueradeAddress ? { got: "masqueraded", detail: `arrived from ${c.peer}` } : { got: "unmasqueraded", detail: `arrived from ${c.peer}` };
}

/** Asks `server` for `name`: "resolve" when `expected` is among the A records; a denial (REFUSED, NXDOMAIN, no records) is "refused". */
async function resolve(runner: Runner, vm: LabVm, server: string, name: string, expected: string): Promise<Answer> {
  const r = await dig(runner, vm.namespace, server, name);
  if (!r.ran) return { got: "error", detail: r.why };
  if (r.answers.includes(expected)) return { got: "resolve", detail: r.answers.join(",") };
  if (r.answers.length > 0) return { got: "wrong-answer", detail: `${r.status}: ${r.answers.join(",")} (expected ${expected})` };
  if (r.status === "REFUSED" || r.status === "NXDOMAIN" || r.status === "NOERROR") return { got: "refused", detail: r.status };
  return { got: "error", detail: `the server answered ${r.status}` };
}

/** Whether the inventory lets `vm` open TCP `port` on `address` (by address, or by a name that resolves to it). */
function allowed(net: Network, vmName: string, address: string, port: number, names: Record<string, string>): boolean {
  if (net.egress === "open") return true;
  const vm = net.vms.find((v) => v.name === vmName);
  if (!vm?.ip) return false;
  return vm.allow.some((a) => {
    if (a.proto !== "tcp" || (a.ports && !a.ports.includes(port))) return false;
    if (a.to) {
      const cidr = parseIpv4Cidr(a.to.includes("/") ? a.to : `${a.to}/32`);
      return typeof cidr !== "string" && cidrContains(cidr, ipv4ToInt(address));
    }
    return a.name !== undefined && names[a.name] === address;
  });
}

function unusedAddress(cidrText: string, taken: string[]): string {
  const cidr = parseIpv4Cidr(cidrText) as Ipv4Cidr;
  const used = new Set(taken.filter(Boolean).map(ipv4ToInt));
  for (let n = cidr.last - 2; n > cidr.first; n--) if (!used.has(n)) return intToIpv4(n);
  throw new Error(`no free address in ${cidrText}`);
}

// --- the one-way phase: sends from VMs, captures at the targets

/** A network's gateway as the backend holds it, read live. */
interface LiveGateway {
  ip: string;
  mac: string;
  iface: string;
}

type SendKind = "control" | "ping" | "on-link" | "address" | "spoof-mac" | "tcp";

/** One frame (or connection attempt) the one-way phase sends; `marker` is in its payload (ICMP) or `localPort` is its source port (TCP). */
interface Send {
  id: number;
  kind: SendKind;
  marker: string;
  target: string;
  /** on-link: the target's MAC; spoof-mac: the MAC sent from. */
  mac?: string;
  /** address: the source address added for the send. */
  source?: string;
  port?: number;
  localPort?: number;
}

/** Who sends: a VM namespace or the backend, with the sends in the order they were asked for. */
interface Actor {
  key: string;
  namespace: string;
  iface?: string;
  mac?: string;
  network?: string;
  sends: Send[];
}

/** A condition on the frames of one capture point. */
interface Watch {
  at: string;
  what: string;
  match: (f: Frame) => boolean;
}

/** What a one-way row needs: its sends ran, its controls were seen, and whether its frame reached the target. */
interface OneWaySpec {
  sends: Send[];
  target: Watch;
  controls: Watch[];
  /** The outcome when the target saw the frame (default "reach"). */
  seenAs?: (frames: Frame[]) => Outcome;
  /** Put before the detail, e.g. what kind of VM sent. */
  note?: string;
}

interface Observed {
  points: Map<string, CaptureResult>;
  sends: Map<number, { ran: boolean; why?: string }>;
  ms: number;
}

const pointLabel = (key: string) => key.replace(/^vm:/, "").replace(/^gw:/, "gw-");
const isRequest = (f: Frame) => / ICMP echo request/.test(f.text);
const isReply = (f: Frame) => / ICMP echo reply/.test(f.text);
const synFrom = (sport: number, dst: string, dport: number) => (f: Frame) => new RegExp(`\\.${sport} > ${dst.replace(/\./g, "\\.")}\\.${dport}: Flags \\[S\\]`).test(f.text);
const sourceOf = (f: Frame) => /: (\d+\.\d+\.\d+\.\d+)\.\d+ > /.exec(f.text)?.[1];

/**
 * The one-way phase of the matrix. Rows register the frames their VMs send
 * and the captures that must (not) see them; the first row to run starts one
 * tcpdump per capture point (every VM namespace involved, the backend's
 * gateway interfaces, the internet namespace), sends everything, waits,
 * stops the captures by pid, and every row judges from the same frames.
 * VMs are changed only for the moment of the send (on-link routes,
 * permanent neighbour entries, an added address, a changed MAC) and put back
 * in a finally.
 */
class OneWay {
  private readonly nonce = randomBytes(4).toString("hex");
  private nextId = 0;
  /** TCP source ports of this run: below the ephemeral range, a random base so runs back to back do not reuse one. */
  private nextPort = 20000 + randomInt(0, 8000);
  private readonly actors = new Map<string, Actor>();
  private readonly points = new Map<string, { namespace: string; iface?: string; network?: string; inet?: boolean }>();
  private readonly controls = new Map<string, Watch>();
  private result?: Promise<Observed>;

  private readonly status: LabStatus;
  private readonly inventory: Inventory;
  private readonly backendNs: string;

  constructor(status: LabStatus, inventory: Inventory, backendNs: string) {
    this.status = status;
    this.inventory = inventory;
    this.backendNs = backendNs;
  }

  private actor(vm: LabVm | "backend"): Actor {
    const key = vm === "backend" ? "backend" : vm.name;
    let a = this.actors.get(key);
    if (!a) {
      a = vm === "backend" ? { key, namespace: this.backendNs, sends: [] } : { key, namespace: vm.namespace, iface: vm.interface, mac: vm.mac, network: vm.network, sends: [] };
      this.actors.set(key, a);
    }
    return a;
  }

  private send(vm: LabVm | "backend", kind: SendKind, target: string, extra: Partial<Send> = {}): Send {
    const id = this.nextId++;
    const s: Send = { id, kind, target, marker: `6e66${this.nonce}${id.toString(16).padStart(4, "0")}`, ...extra };
    if (kind === "tcp") s.localPort = this.nextPort++;
    this.actor(vm).sends.push(s);
    return s;
  }

  /** The capture point in a VM's namespace. */
  vmPoint(vm: LabVm): string {
    const key = `vm:${vm.name}`;
    this.points.set(key, { namespace: vm.namespace, iface: vm.interface });
    return key;
  }

  /** The capture point on the backend's gateway interface of `network`. */
  gwPoint(network: string): string {
    const key = `gw:${network}`;
    this.points.set(key, { namespace: this.backendNs, network });
    return key;
  }

  /** The capture point in the lab's internet namespace. */
  inetPoint(): string {
    this.points.set("inet", { namespace: this.status.inet!.namespace, inet: true });
    return "inet";
  }

  /** A's echo request to its own gateway, from its own address and MAC, seen at the backend (after a neighbour flush, so its ARP broadcast goes out first). */
  senderControl(a: LabVm): { send: Send; watch: Watch } {
    const key = `from:${a.name}`;
    const gw = this.network(a.network).gateway;
    let send = this.actor(a).sends.find((s) => s.kind === "control");
    if (!send) send = this.send(a, "control", gw);
    let watch = this.controls.get(key);
    if (!watch) {
      const marker = send.marker;
      watch = { at: this.gwPoint(a.network), what: `${a.name}'s own echo request to its gateway at gw-${a.network}`, match: (f) => isRequest(f) && f.hex.includes(marker) };
      this.controls.set(key, watch);
    }
    return { send, watch };
  }

  /** The backend's echo request to B, seen in B's namespace: B's capture works and frames reach B. */
  targetControl(b: LabVm): { send: Send; watch: Watch } {
    const key = `to:${b.name}`;
    const existing = this.actor("backend").sends.find((s) => s.kind === "ping" && s.target === b.ip);
    const send = existing ?? this.send("backend", "ping", b.ip!);
    let watch = this.controls.get(key);
    if (!watch) {
      const marker = send.marker;
      watch = { at: this.vmPoint(b), what: `the gateway's echo request in ${b.name}`, match: (f) => isRequest(f) && f.hex.includes(marker) };
      this.controls.set(key, watch);
    }
    return { send, watch };
  }

  /** A TCP connection from the backend itself to `web`, seen in the internet namespace: the internet capture works. */
  inetControl(web: string): { send: Send; watch: Watch } {
    const existing = this.actor("backend").sends.find((s) => s.kind === "tcp");
    const send = existing ?? this.send("backend", "tcp", web, { port: 80 });
    let watch = this.controls.get("inet");
    if (!watch) {
      watch = { at: this.inetPoint(), what: `the backend's own SYN to ${send.target}:80 in the internet`, match: synFrom(send.localPort!, send.target, 80) };
      this.controls.set("inet", watch);
    }
    return { send, watch };
  }

  /** A unicast ICMP echo from A to B's MAC and address, on-link (a /32 route and a permanent neighbour entry in A). */
  onLink(a: LabVm, b: LabVm): Send {
    return this.send(a, "on-link", b.ip!, { mac: b.mac });
  }

  /** An ICMP echo from A to `target` by A's routes (through its gateway when off-link). */
  ping(a: LabVm, target: string): Send {
    return this.send(a, "ping", target);
  }

  /** An ICMP echo from A to its gateway from `source`, added to A's interface for the moment. */
  fromAddress(a: LabVm, source: string): Send {
    return this.send(a, "address", this.network(a.network).gateway, { source });
  }

  /** An ICMP echo from A to its gateway with A's MAC changed to `mac` for the moment. */
  fromMac(a: LabVm, mac: string): Send {
    return this.send(a, "spoof-mac", this.network(a.network).gateway, { mac });
  }

  /** A TCP SYN from A to `target`:`port` from a fixed local port. */
  tcp(a: LabVm, target: string, port: number): Send {
    return this.send(a, "tcp", target, { port });
  }

  /** The probe of one row: runs the phase (once for all rows) and judges this row from what was seen. */
  row(spec: OneWaySpec): (runner: Runner) => Promise<Answer> {
    return async (runner) => {
      this.result ??= this.execute(runner);
      const a = judge(spec, await this.result);
      return spec.note ? { ...a, detail: `${spec.note}: ${a.detail ?? ""}` } : a;
    };
  }

  private network(name: string): Network {
    return this.inventory.networks.find((n) => n.name === name)!;
  }

  private async execute(runner: Runner): Promise<Observed> {
    const t0 = performance.now();
    const gateways = await liveGateways(runner, this.backendNs, this.inventory.networks);
    // the link towards the backend (the web servers sit on lo beyond it; the resolver is on the link itself)
    const inetIface = this.status.inet ? await ifaceHolding(runner, this.status.inet.namespace, this.status.inet.resolver) : undefined;
    const points = new Map<string, CaptureResult>();
    const captures = new Map<string, Capture>();
    const sends = new Map<number, { ran: boolean; why?: string }>();
    try {
      await Promise.all(
        [...this.points].map(async ([key, p]) => {
          const iface = p.iface ?? (p.network ? gateways.get(p.network)?.iface : p.inet ? inetIface : undefined);
          if (!iface) {
            points.set(key, { frames: [], problem: `no interface found for capture point ${pointLabel(key)}` });
            return;
          }
          try {
            captures.set(key, await Capture.start(pointLabel(key), p.namespace, iface));
          } catch (err) {
            points.set(key, { frames: [], problem: (err as Error).message });
          }
        }),
      );
      await Promise.all([...this.actors.values()].map((a) => this.perform(runner, a, gateways, sends)));
      await new Promise((r) => setTimeout(r, 1000)); // frames in flight through the userspace datapaths
    } finally {
      await Promise.all(
        [...captures].map(async ([key, c]) => {
          points.set(key, await c.stop());
        }),
      );
    }
    return { points, sends, ms: Math.round(performance.now() - t0) };
  }

  /** Runs one actor's sends; a VM is put back as it was (routes, neighbours, addresses, MAC) whatever happens. */
  private async perform(runner: Runner, a: Actor, gateways: Map<string, LiveGateway>, out: Map<number, { ran: boolean; why?: string }>): Promise<void> {
    const record = (s: Send, r: PingResult | SynResult) => out.set(s.id, r.ran ? { ran: true } : { ran: false, why: r.why });
    const fail = (list: Send[], why: string) => list.forEach((s) => out.set(s.id, { ran: false, why }));
    const pingOnce = (s: Send, source?: string) => ping(runner, a.namespace, s.target, { count: 1, waitS: 0.5, pattern: s.marker, ...(source ? { source } : {}) }).then((r) => record(s, r));
    const of = (kind: SendKind) => a.sends.filter((s) => s.kind === kind);
    const tcpAll = (list: Send[]) => Promise.all(list.map((s) => tcpSyn(runner, a.namespace, s.target, s.port!, s.localPort!).then((r) => record(s, r))));
    if (a.key === "backend") {
      await Promise.all([...of("ping").map((s) => pingOnce(s)), tcpAll(of("tcp"))]);
      return;
    }
    const ipBatch = (lines: string[][], force = false) =>
      runner.run({ argv: ["ip", "-n", a.namespace, ...(force ? ["-force"] : []), "-batch", "-"], stdin: lines.map((l) => l.join(" ")).join("\n") + "\n", mutating: true }, { allowFailure: force });
    const dev = a.iface!;
    const gw = gateways.get(a.network!);
    const onLink = of("on-link");
    const spoofing = [...of("address"), ...of("spoof-mac")];
    const added: string[] = [];
    let macChanged = false;
    try {
      // 1. the control: a fresh ARP broadcast for the gateway, then an echo request to it
      const [, have] = await Promise.all([
        runner.run({ argv: inNs(a.namespace, "ip", "neigh", "flush", "dev", dev), mutating: true }),
        spoofing.length > 0 ? addressesOf(runner, a.namespace, dev) : Promise.resolve([]),
      ]);
      for (const s of of("control")) await ping(runner, a.namespace, s.target, { count: 1, waitS: 1, pattern: s.marker }).then((r) => record(s, r));
      // 2. on-link routes and permanent neighbours (unicast frames go out without ARP), the added
      //    source addresses (the kernel keeps choosing the VM's own address for everything else)
      const setup: string[][] = [];
      for (const s of onLink) setup.push(["route", "replace", `${s.target}/32`, "dev", dev], ["neigh", "replace", s.target, "lladdr", s.mac!, "dev", dev, "nud", "permanent"]);
      if (spoofing.length > 0) {
        if (!gw) fail(spoofing, `the backend holds no gateway address for ${a.network}`);
        else {
          setup.push(["neigh", "replace", gw.ip, "lladdr", gw.mac, "dev", dev, "nud", "permanent"]);
          added.push(...new Set(of("address").map((s) => s.source!).filter((x) => !have.includes(x))));
          for (const x of added) setup.push(["addr", "add", `${x}/32`, "dev", dev, "nodad"]);
        }
      }
      if (setup.length > 0) await ipBatch(setup);
      // 3. every send at once but the spoofed MAC's
      await Promise.all([
        ...onLink.map((s) => pingOnce(s)),
        ...of("ping").map((s) => pingOnce(s)),
        ...(gw ? of("address").map((s) => pingOnce(s, s.source)) : []),
        tcpAll(of("tcp")),
      ]);
      // 4. from another MAC, last and alone (every frame of the VM carries it meanwhile)
      for (const s of gw ? of("spoof-mac") : []) {
        macChanged = true;
        await runner.run({ argv: ["ip", "-n", a.namespace, "link", "set", "dev", dev, "address", s.mac!], mutating: true });
        await pingOnce(s);
      }
    } catch (err) {
      fail(a.sends.filter((s) => !out.has(s.id)), (err as Error).message);
    } finally {
      // 5. put the VM back as it was, in one batch that goes on past errors (`-force`); `neigh flush`
      //    rather than `neigh del`, which exits the batch when the entry is gone (a MAC change flushes
      //    every neighbour entry, permanent ones too)
      const undo: string[][] = [];
      if (macChanged) undo.push(["link", "set", "dev", dev, "address", a.mac!]);
      for (const x of added) undo.push(["addr", "del", `${x}/32`, "dev", dev]);
      for (const s of onLink) undo.push(["route", "del", `${s.target}/32`, "dev", dev]);
      const pinned = [...onLink.map((s) => s.target), ...(spoofing.length > 0 && gw ? [gw.ip] : [])];
      for (const ip of new Set(pinned)) undo.push(["neigh", "flush", "to", ip, "dev", dev, "nud", "permanent"]);
      if (undo.length > 0) await ipBatch(undo, true);
    }
  }
}

function judge(spec: OneWaySpec, o: Observed): Answer {
  for (const s of spec.sends) {
    const r = o.sends.get(s.id);
    if (!r?.ran) return { got: "error", detail: `could not send (${s.kind} to ${s.target}): ${r?.why ?? "not attempted"}` };
  }
  const seen = (w: Watch) => (o.points.get(w.at)?.frames ?? []).filter(w.match);
  const frames = seen(spec.target);
  if (frames.length > 0) return { got: spec.seenAs?.(frames) ?? "reach", detail: `seen at ${pointLabel(spec.target.at)}: ${frames[0]!.src} > ${frames[0]!.dst}, ${frames[0]!.text.slice(0, 160)}` };
  for (const at of new Set([spec.target.at, ...spec.controls.map((c) => c.at)])) {
    const p = o.points.get(at);
    if (!p) return { got: "error", detail: `no capture at ${pointLabel(at)}` };
    if (p.problem) return { got: "error", detail: `capture at ${pointLabel(at)}: ${p.problem}` };
  }
  const missing = spec.controls.filter((c) => seen(c).length === 0);
  if (missing.length > 0) return { got: "error", detail: `control not seen, so silence proves nothing: ${missing.map((c) => c.what).join("; ")}` };
  return { got: "blocked", detail: `nothing at ${pointLabel(spec.target.at)} (${spec.target.what}); seen: ${spec.controls.map((c) => c.what).join("; ") || "-"}` };
}

/** Each network's gateway on the backend: the interface holding its address, and that interface's MAC. */
async function liveGateways(runner: Runner, backendNs: string, networks: Network[]): Promise<Map<string, LiveGateway>> {
  const r = await runner.run({ argv: ["ip", "-n", backendNs, "-j", "addr", "show"], mutating: false });
  const links = JSON.parse(r.stdout || "[]") as { ifname: string; address?: string; addr_info?: { family: string; local: string }[] }[];
  const out = new Map<string, LiveGateway>();
  for (const n of networks) {
    const l = links.find((x) => x.addr_info?.some((a) => a.family === "inet" && a.local === n.gateway));
    if (l?.address) out.set(n.name, { ip: n.gateway, mac: l.address.toLowerCase(), iface: l.ifname });
  }
  return out;
}

async function addressesOf(runner: Runner, namespace: string, dev: string): Promise<string[]> {
  const r = await runner.run({ argv: ["ip", "-n", namespace, "-j", "addr", "show", "dev", dev], mutating: false });
  const links = JSON.parse(r.stdout || "[]") as { addr_info?: { family: string; local: string }[] }[];
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === "inet").map((a) => a.local));
}

async function ifaceHolding(runner: Runner, namespace: string, address: string): Promise<string | undefined> {
  const r = await runner.run({ argv: ["ip", "-n", namespace, "-j", "addr", "show"], mutating: false });
  const links = JSON.parse(r.stdout || "[]") as { ifname: string; addr_info?: { family: string; local: string }[] }[];
  return links.find((x) => x.addr_info?.some((a) => a.family === "inet" && a.local === address))?.ifname;
}

// --- the matrix

/**
 * The connectivity matrix of a lab, from the inventory and `lab status`
 * (VMs with or without a static ip, isolated VMs, cluster groups, extra
 * addresses, VMs the inventory does not know). Every row tells policy from
 * breakage: a tool that did not run, a capture that did not start, a
 * positive control that was not seen make it "error", never a pass.
 *
 * Two-way rows (a reply proves the path): fresh DHCP exchanges, gateways,
 * VMs of a network that may talk, cluster group members, names, DNS policy,
 * egress by allow list and masqueraded, forwarded ICMP, port-forwards.
 *
 * One-way rows (the frame looked for where it would land, beside a control
 * seen in the same run): isolation within a network, VLANs apart for every
 * pair of networks (same host and across hosts), networks never routed to
 * each other, a VM reaching no gateway but its own, spoofed source address
 * and MAC from one VM of each kind, extra addresses, blocked egress (TCP
 * and ICMP) observed in the internet.
 *
 * Throws when a VM of the lab is on a network the inventory does not have
 * (the lab was built from another inventory).
 */
export function connectivityProbes(inventory: Inventory, status: LabStatus): Probe[] {
  const probes: Probe[] = [];
  const all = status.vms.filter((v) => v.kind !== "domain");
  const vms = all.filter((v) => v.ip);
  const foreign = all.filter((v) => !inventory.networks.some((n) => n.name === v.network));
  if (foreign.length > 0) throw new Error(`the lab's VMs ${foreign.map((v) => `${v.name} (${v.network})`).join(", ")} are on networks ${inventory.dir} does not have: run netfleet-lab up`);
  const network = (name: string) => inventory.networks.find((n) => n.name === name)!;
  const spec = (vm: LabVm): Vm | undefined => network(vm.network).vms.find((v) => v.name === vm.name && v.mac.toLowerCase() === vm.mac.toLowerCase());
  const isolated = (vm: LabVm) => spec(vm)?.isolated ?? network(vm.network).isolated_ports;
  const groups = (vm: LabVm) => spec(vm)?.groups ?? [];
  const mayTalk = (a: LabVm, b: LabVm) => (!isolated(a) && !isolated(b)) || groups(a).some((g) => groups(b).includes(g));
  const domain = inventory.site.domain;
  const backend = status.hosts.find((h) => h.role === "backend");
  const byPreference = (list: LabVm[]) => [...list].sort((a, b) => Number(isolated(a)) - Number(isolated(b)) || Number(!spec(a)) - Number(!spec(b)) || a.name.localeCompare(b.name));
  /** The VM of a network whose port lets it send the most: not isolated, in the inventory. */
  const sender = (net: string) => byPreference(vms.filter((v) => v.network === net))[0];
  const networksWithVms = inventory.networks.filter((n) => vms.some((v) => v.network === n.name));

  // --- DHCP: a fresh exchange with the network's dnsmasq, the answer checked field by field
  let hook: string | undefined; // written on first use (synchronously: no two probes race to write it)
  const dhcpHook = () => (hook ??= dhcpProbeHook(join(status.runDir, "vms")));
  for (const vm of all) {
    const net = network(vm.network);
    const s = spec(vm);
    probes.push({
      check: "dhcp lease",
      from: vm.name,
      to: `gw-${vm.network}`,
      expect: "lease",
      run: async (runner) => {
        const r = await dhcpExchange(runner, { namespace: vm.namespace, iface: vm.interface, hostname: vm.name, hook: dhcpHook(), ...(vm.ip ? { requestIp: vm.ip } : {}) });
        if (!r.ran) return { got: "error", detail: r.why };
        const l = r.answer;
        if (!l) return { got: "no-lease", detail: r.log || "no answer" };
        const problems: string[] = [];
        if (s?.ip && l.ip !== s.ip) problems.push(`offered ${l.ip}, static lease is ${s.ip}`);
        if (!s?.ip && !(ipv4ToInt(l.ip) >= ipv4ToInt(net.dhcp!.start) && ipv4ToInt(l.ip) <= ipv4ToInt(net.dhcp!.end))) problems.push(`${l.ip} outside the range`);
        if (!s?.ip && vm.ip && l.ip !== vm.ip) problems.push(`offered ${l.ip}, the VM holds ${vm.ip}`);
        if (l.router !== net.gateway) problems.push(`router ${l.router}`);
        if (l.dns !== net.gateway) problems.push(`dns ${l.dns}`);
        if (l.serverid !== net.gateway) problems.push(`served by ${l.serverid}`);
        if (l.domain !== `${net.name}.${domain}`) problems.push(`domain ${l.domain}`);
        return problems.length ? { got: "wrong-answer", detail: problems.join("; ") } : { got: "lease", detail: `${l.ip} for ${l.lease} s from ${l.serverid}` };
      },
    });
  }

  // --- two-way: gateways, VMs that may talk, cluster groups
  for (const vm of vms) {
    const gw = network(vm.network).gateway;
    probes.push({ check: "gateway", from: vm.name, to: `gw-${vm.network}`, expect: "reach", run: async (r) => pingAnswer(await ping(r, vm.namespace, gw)) });
  }
  const pairs: [LabVm, LabVm][] = [];
  for (let i = 0; i < vms.length; i++) for (let j = i + 1; j < vms.length; j++) if (vms[i]!.network === vms[j]!.network) pairs.push([vms[i]!, vms[j]!]);
  const where = (a: LabVm, b: LabVm) => (a.host === b.host ? "same host" : "across hosts");
  for (const [a, b] of pairs) {
    if (!mayTalk(a, b)) continue;
    const group = isolated(a) || isolated(b) ? groups(a).find((g) => groups(b).includes(g)) : undefined;
    const check = group ? `cluster group (${where(a, b)})` : `same-network (${where(a, b)})`;
    probes.push({
      check,
      from: a.name,
      to: b.name,
      expect: "reach",
      run: async (r) => {
        const answer = pingAnswer(await ping(r, a.namespace, b.ip!));
        return group ? { ...answer, detail: `group ${group}: ${answer.detail ?? ""}` } : answer;
      },
    });
  }

  // --- DNS: VM names across hosts, and each network's DNS policy (the gateway is every network's resolver)
  const inet = status.inet;
  for (const a of vms.filter((v) => spec(v))) {
    const b = vms.find((x) => x.network === a.network && x.host !== a.host && spec(x));
    if (!b) continue;
    const fqdn = `${b.name}.${a.network}.${domain}`;
    probes.push({ check: "dns (vm names)", from: a.name, to: fqdn, expect: "resolve", run: (r) => resolve(r, a, network(a.network).gateway, fqdn, b.ip!) });
  }
  for (const net of inventory.networks) {
    const vm = sender(net.name);
    if (!vm || !inet) continue;
    const allowNames = new Set([...net.dns_names, ...net.vms.flatMap((v) => v.allow.flatMap((a) => (a.name ? [a.name] : [])))]);
    for (const [name, address] of Object.entries(inet.names)) {
      const expect: Outcome = net.dns === "open" || allowNames.has(name) ? "resolve" : "refused";
      probes.push({ check: `dns policy (${net.dns})`, from: vm.name, to: name, expect, run: (r) => resolve(r, vm, net.gateway, name, address) });
    }
  }

  // --- egress that is allowed: a connection whose greeting shows the backend's address; ICMP where egress is open
  if (inet) {
    for (const vm of vms) {
      const net = network(vm.network);
      for (const address of inet.web) {
        if (!allowed(net, vm.name, address, 80, inet.names)) continue;
        const viaName = spec(vm)?.allow.find((a) => a.name && inet.names[a.name] === address)?.name;
        probes.push({
          check: `egress (${net.egress})`,
          from: vm.name,
          to: `${viaName ?? address}:80`,
          expect: "masqueraded",
          run: async (r) => {
            if (viaName) {
              const first = await resolve(r, vm, net.gateway, viaName, address); // dnsmasq fills the nft set as it answers
              if (first.got !== "resolve") return { got: "error", detail: `${viaName} did not resolve first: ${first.got} ${first.detail ?? ""}` };
            }
            return tcpAnswer(await tcpConnect(r, vm.namespace, address, 80), inet.backendAddress);
          },
        });
      }
    }
    for (const net of networksWithVms.filter((n) => n.egress === "open")) {
      const vm = sender(net.name)!;
      const web = inet.web[0]!;
      probes.push({ check: `egress icmp (open)`, from: vm.name, to: web, expect: "reach", run: async (r) => pingAnswer(await ping(r, vm.namespace, web)) });
    }
    for (const net of inventory.networks) {
      for (const pf of net.port_forwards.filter((p) => p.proto === "tcp")) {
        probes.push({
          check: "port-forward",
          from: "internet",
          to: `${inet.backendAddress}:${pf.listen} -> ${pf.vm}:${pf.port}`,
          expect: "reach",
          run: async (r) => {
            const c = await tcpConnect(r, inet.namespace, inet.backendAddress, pf.listen);
            if (!c.ran) return { got: "error", detail: c.why };
            if (!c.connected) return { got: "blocked", detail: `${c.reason}: ${c.message}` };
            return c.server === pf.vm ? { got: "reach", detail: `${c.server} saw ${c.peer}` } : { got: "blocked", detail: `answered by ${c.server}` };
          },
        });
      }
    }
  }

  if (!backend) return probes;
  const ow = new OneWay(status, inventory, backend.namespace);
  const oneWay = (check: string, from: string, to: string, expect: Outcome, s: OneWaySpec) => probes.push({ check, from, to, expect, exclusive: true, run: ow.row(s) });
  const fromMacOrMarker = (a: LabVm, send: Send) => (f: Frame) => f.src === a.mac || f.hex.includes(send.marker);

  // --- isolation within a network: A's unicast to B's MAC, on-link; B must see nothing of A (no unicast, no flooded broadcast)
  for (const [x, y] of pairs) {
    if (mayTalk(x, y)) continue;
    for (const [a, b] of [[x, y], [y, x]] as const) {
      const send = ow.onLink(a, b);
      const ctl = [ow.senderControl(a), ow.targetControl(b)];
      oneWay(`isolated port (${where(a, b)})`, a.name, b.name, "blocked", {
        sends: [send, ...ctl.map((c) => c.send)],
        target: { at: ow.vmPoint(b), what: `any frame from ${a.name}'s MAC`, match: fromMacOrMarker(a, send) },
        controls: ctl.map((c) => c.watch),
      });
    }
  }

  // --- VLANs apart: every ordered pair of networks, a target on each host; A's own frames, on-link to B
  for (const x of networksWithVms) {
    const a = sender(x.name)!;
    for (const y of networksWithVms) {
      if (x === y) continue;
      const hosts = [...new Set(vms.filter((v) => v.network === y.name).map((v) => v.host))].sort();
      for (const h of hosts) {
        const b = byPreference(vms.filter((v) => v.network === y.name && v.host === h))[0]!;
        const send = ow.onLink(a, b);
        const ctl = [ow.senderControl(a), ow.targetControl(b)];
        oneWay(`vlans apart (${where(a, b)})`, a.name, b.name, "blocked", {
          sends: [send, ...ctl.map((c) => c.send)],
          target: { at: ow.vmPoint(b), what: `any frame from ${a.name}'s MAC`, match: fromMacOrMarker(a, send) },
          controls: ctl.map((c) => c.watch),
        });
      }
    }
  }

  // --- through the backend: networks never routed to each other; no gateway but one's own
  for (const x of networksWithVms) {
    const a = sender(x.name)!;
    const atGw = ow.gwPoint(x.name);
    for (const y of networksWithVms) {
      if (x === y) continue;
      const b = byPreference(vms.filter((v) => v.network === y.name))[0]!;
      const routed = ow.ping(a, b.ip!);
      const tc = ow.targetControl(b);
      oneWay("networks apart (routed)", a.name, b.name, "blocked", {
        sends: [routed, tc.send],
        target: { at: ow.vmPoint(b), what: `${a.name}'s echo request`, match: (f) => f.hex.includes(routed.marker) },
        controls: [{ at: atGw, what: `${a.name}'s echo request to ${b.ip} at gw-${x.name}`, match: (f) => isRequest(f) && f.hex.includes(routed.marker) }, tc.watch],
      });
      const other = ow.ping(a, y.gateway);
      oneWay("only its own gateway", a.name, `gw-${y.name}`, "blocked", {
        sends: [other],
        target: { at: atGw, what: `an echo reply from ${y.gateway}`, match: (f) => isReply(f) && f.hex.includes(other.marker) },
        controls: [{ at: atGw, what: `${a.name}'s echo request to ${y.gateway} at gw-${x.name}`, match: (f) => isRequest(f) && f.hex.includes(other.marker) }],
      });
    }
  }

  // --- anti-spoofing: one VM of each kind sends from another address and from another MAC; observed at the gateway
  const kinds: [string, (v: LabVm) => boolean][] = [
    ["static", (v) => !!spec(v)?.ip && !isolated(v)],
    ["dhcp", (v) => !!spec(v) && !spec(v)!.ip],
    ["isolated", (v) => isolated(v) && groups(v).length === 0],
    ["cluster", (v) => groups(v).length > 0],
    ["unknown MAC", (v) => !spec(v)],
  ];
  const spoofers: LabVm[] = [];
  for (const [, is] of kinds) {
    const v = vms.find((x) => is(x) && !spoofers.includes(x)) ?? vms.find((x) => is(x));
    if (v && !spoofers.includes(v)) spoofers.push(v);
  }
  for (const v of vms) if ((spec(v)?.extra_addresses ?? []).length > 0 && !spoofers.includes(v)) spoofers.push(v);
  const taken = [...inventory.networks.flatMap((n) => [n.gateway, ...n.vms.flatMap((v) => [v.ip ?? "", ...v.extra_addresses])]), ...all.map((v) => v.ip ?? "")];
  for (const a of spoofers) {
    const net = network(a.network);
    const gwTo = `gw-${a.network}`;
    const atGw = ow.gwPoint(a.network);
    const ctl = ow.senderControl(a);
    const kind = kinds.filter(([, is]) => is(a)).map(([k]) => k).join(", ");
    oneWay("anti-spoofing (own address)", a.name, gwTo, "reach", {
      note: `${kind} VM`,
      sends: [ctl.send],
      target: ctl.watch,
      controls: [],
    });
    const fake = unusedAddress(net.cidr, taken);
    const byIp = ow.fromAddress(a, fake);
    oneWay("anti-spoofing (source IP)", a.name, gwTo, "blocked", {
      note: `${kind} VM`,
      sends: [byIp, ctl.send],
      target: { at: atGw, what: `${a.name}'s echo request from ${fake}`, match: (f) => f.hex.includes(byIp.marker) },
      controls: [ctl.watch],
    });
    const mac = "52:54:00:de:ad:01";
    const byMac = ow.fromMac(a, mac);
    oneWay("anti-spoofing (source MAC)", a.name, gwTo, "blocked", {
      note: `${kind} VM`,
      sends: [byMac, ctl.send],
      target: { at: atGw, what: `${a.name}'s echo request from ${mac}`, match: (f) => f.hex.includes(byMac.marker) },
      controls: [ctl.watch],
    });
    for (const extra of spec(a)?.extra_addresses ?? []) {
      const send = ow.fromAddress(a, extra);
      oneWay("anti-spoofing (extra IP)", a.name, gwTo, "reach", {
        note: `${kind} VM`,
        sends: [send, ctl.send],
        target: { at: atGw, what: `${a.name}'s echo request from ${extra}`, match: (f) => f.hex.includes(send.marker) },
        controls: [ctl.watch],
      });
    }
  }

  // --- egress that is not allowed: the VM's SYN reaches the backend and never the internet
  if (inet) {
    const ic = ow.inetControl(inet.web[0]!);
    const seenAs = (frames: Frame[]): Outcome => (frames.some((f) => sourceOf(f) === inet.backendAddress) ? "masqueraded" : "unmasqueraded");
    for (const vm of vms) {
      const net = network(vm.network);
      for (const address of inet.web) {
        if (allowed(net, vm.name, address, 80, inet.names)) continue;
        const syn = ow.tcp(vm, address, 80);
        oneWay(`egress (${net.egress})`, vm.name, `${address}:80`, "blocked", {
          sends: [syn, ic.send],
          target: { at: ow.inetPoint(), what: `a SYN from port ${syn.localPort} to ${address}:80`, match: synFrom(syn.localPort!, address, 80) },
          controls: [{ at: ow.gwPoint(vm.network), what: `${vm.name}'s SYN at gw-${vm.network}`, match: (f) => synFrom(syn.localPort!, address, 80)(f) && sourceOf(f) === vm.ip }, ic.watch],
          seenAs,
        });
      }
    }
    for (const net of networksWithVms.filter((n) => n.egress !== "open")) {
      const vm = sender(net.name)!;
      const web = inet.web[0]!;
      const echo = ow.ping(vm, web);
      oneWay(`egress icmp (${net.egress})`, vm.name, web, "blocked", {
        sends: [echo, ic.send],
        target: { at: ow.inetPoint(), what: `${vm.name}'s echo request`, match: (f) => f.hex.includes(echo.marker) },
        controls: [{ at: ow.gwPoint(net.name), what: `${vm.name}'s echo request at gw-${net.name}`, match: (f) => isRequest(f) && f.hex.includes(echo.marker) }, ic.watch],
      });
    }
  }
  return probes;
}

/**
 * Runs the rows: two-way rows six at a time, then the one-way phase alone
 * (its first row runs the phase, the others judge from the same captures).
 * A row whose probe throws is "error" with the message. Rows come back in
 * the order of `probes`.
 */
export async function runProbes(probes: Probe[], runner: Runner = new ExecaRunner({ timeoutMs: 15_000 })): Promise<CheckRow[]> {
  const queue = new PQueue({ concurrency: 6 });
  const row = async (p: Probe): Promise<CheckRow> => {
    const t = performance.now();
    let a: Answer;
    try {
      a = await p.run(runner);
    } catch (err) {
      a = { got: "error", detail: (err as Error).message };
    }
    const ms = Math.round(performance.now() - t);
    return { check: p.check, from: p.from, to: p.to, expect: p.expect, got: a.got, ok: a.got === p.expect, ...(a.detail ? { detail: a.detail } : {}), ms };
  };
  const out = new Map<Probe, CheckRow>();
  await Promise.all(probes.filter((p) => !p.exclusive).map((p) => queue.add(async () => out.set(p, await row(p)))));
  let phaseMs: number | undefined;
  for (const p of probes.filter((x) => x.exclusive)) {
    const r = await row(p);
    phaseMs ??= r.ms;
    out.set(p, { ...r, ms: phaseMs });
  }
  return probes.map((p) => out.get(p)!);
}
