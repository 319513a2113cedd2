import { randomBytes, randomInt } from "node:crypto";
import { join } from "node:path";
import type { Runner } from "@netfleet/agent";
import type { Inventory, Network } from "@netfleet/shared";
import type { LabStatus, LabVm } from "../types.ts";
import { Capture, inNs, ping, tcpSyn, type CaptureResult, type Frame, type PingResult, type SynResult } from "./probes.ts";
import type { Answer, Outcome } from "./rows.ts";

/** The one-way phase of the connectivity matrix: sends from VMs, captures at the targets. */

/** A network's gateway as the backend holds it, read live. */
interface LiveGateway {
  ip: string;
  mac: string;
  iface: string;
}

type SendKind = "control" | "ping" | "on-link" | "address" | "spoof-mac" | "tcp";

/** One frame (or connection attempt) the one-way phase sends; `marker` is in its payload (ICMP) or `localPort` is its source port (TCP). */
export interface Send {
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
export interface OneWaySpec {
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
/** True for an ICMP echo request, as tcpdump prints it. */
export const isRequest = (f: Frame) => / ICMP echo request/.test(f.text);
/** True for an ICMP echo reply, as tcpdump prints it. */
export const isReply = (f: Frame) => / ICMP echo reply/.test(f.text);
/** A matcher for a TCP SYN from source port `sport` to `dst`:`dport` (tcpdump's `.SPORT > DST.DPORT: Flags [S]`). */
export const synFrom = (sport: number, dst: string, dport: number) => (f: Frame) => new RegExp(`\\.${sport} > ${dst.replace(/\./g, "\\.")}\\.${dport}: Flags \\[S\\]`).test(f.text);
/** The source address of a TCP or UDP frame as tcpdump prints it (`: A.B.C.D.PORT > `), undefined for others. */
export const sourceOf = (f: Frame) => /: (\d+\.\d+\.\d+\.\d+)\.\d+ > /.exec(f.text)?.[1];

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
export class OneWay {
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
