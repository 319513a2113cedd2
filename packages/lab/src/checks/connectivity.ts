import { join } from "node:path";
import PQueue from "p-queue";
import { ExecaRunner, type Runner } from "@netfleet/agent";
import { intToIpv4, ipv4ToInt, parseIpv4Cidr, type Inventory, type Ipv4Cidr, type Network, type Vm } from "@netfleet/shared";
import type { LabStatus, LabVm } from "../types.ts";
import { unusedAddress } from "./addresses.ts";
import { isReply, isRequest, OneWay, sourceOf, synFrom, type OneWaySpec, type Send } from "./one-way.ts";
import { dhcpExchange, dhcpProbeHook, ping, tcpConnect, type Frame } from "./probes.ts";
import type { Answer, CheckRow, Outcome, Probe } from "./rows.ts";
import { allowed, pingAnswer, resolve, tcpAnswer } from "./two-way.ts";

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
  // A's own frame on-link to B must not reach B; the controls: A's frame reaches its gateway, the backend's reaches B.
  const onLinkBlocked = (check: string, a: LabVm, b: LabVm) => {
    const send = ow.onLink(a, b);
    const ctl = [ow.senderControl(a), ow.targetControl(b)];
    oneWay(`${check} (${where(a, b)})`, a.name, b.name, "blocked", {
      sends: [send, ...ctl.map((c) => c.send)],
      target: { at: ow.vmPoint(b), what: `any frame from ${a.name}'s MAC`, match: fromMacOrMarker(a, send) },
      controls: ctl.map((c) => c.watch),
    });
  };
  for (const [x, y] of pairs) {
    if (mayTalk(x, y)) continue;
    for (const [a, b] of [[x, y], [y, x]] as const) onLinkBlocked("isolated port", a, b);
  }

  // --- VLANs apart: every ordered pair of networks, a target on each host; A's own frames, on-link to B
  for (const x of networksWithVms) {
    const a = sender(x.name)!;
    for (const y of networksWithVms) {
      if (x === y) continue;
      const hosts = [...new Set(vms.filter((v) => v.network === y.name).map((v) => v.host))].sort();
      for (const h of hosts) {
        onLinkBlocked("vlans apart", a, byPreference(vms.filter((v) => v.network === y.name && v.host === h))[0]!);
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
    const fake = unusedAddress(net.cidr, taken, intToIpv4((parseIpv4Cidr(net.cidr) as Ipv4Cidr).last - 1));
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
