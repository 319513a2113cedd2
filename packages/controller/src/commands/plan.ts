import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { formatLimit, resourceId, samplingSummary, type Bandwidth, type HostAssignment, type ResourceSpec } from "@netfleet/shared";
import { planAbsent, Toolbox } from "@netfleet/agent";
import { compileSite } from "../compile/compile.ts";
import type { CommandOutput } from "../output.ts";
import { LimitError, selectLimit } from "../select/limit.ts";
import { EXIT_INVALID, loadOrReport } from "./validate.ts";
import { plannedPolicies, renderPolicies } from "./plan-policy.ts";
import { mirrorSummary } from "../compile/mirrors.ts";

/** One host's plan as `netfleet plan` shows it (and `--json` emits it). */
export interface HostPlan {
  host: string;
  role: string;
  hash: string;
  resources: { id: string; spec: ResourceSpec }[];
  /** What a first apply on a freshly installed host would run, per resource. */
  firstApply: { id: string; commands: string[]; blocked?: string }[];
}

/**
 * Each host's resources and the commands of a first apply on a freshly
 * installed host (the agent's planAbsent: every resource planned on its
 * absent observation, with the agent's default paths; nothing is read).
 */
function planHosts(assignments: readonly HostAssignment[]): HostPlan[] {
  const tools = new Toolbox();
  return assignments.map((a) => ({
    host: a.host,
    role: a.role,
    hash: a.hash,
    resources: a.resources.map((spec) => ({ id: resourceId(spec), spec })),
    firstApply: planAbsent(a.resources, { owner: a.site, tools }).map((r) => ({ id: r.id, commands: r.commands, ...(r.result === false ? { blocked: r.error ?? r.comment } : {}) })),
  }));
}

/**
 * What `netfleet plan` says first, and `--json` carries as `note`: it plans
 * against an empty host, and where the live diff is.
 */
export function emptyHostNote(dir: string): string {
  return `netfleet plan shows what a first apply does on an empty (freshly installed) host: it reads no host. For what would change on the hosts as they are now (unified diffs of the firewall, dnsmasq, libvirt XML and VM port rules), run: netfleet rollout ${shellWord(dir)} --check`;
}

/** `word` as one POSIX shell word: as it is when it holds only safe characters, else single-quoted ('\'' for a quote). */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The hosts `--limit` picks (target's selectLimit: patterns, `!`, `&`,
 * labels); undefined with no limit, or after saying why the limit is
 * refused (`<command>: <reason>` on stderr) when it is (`refused: true`).
 */
function limited(inventory: NonNullable<ReturnType<typeof loadOrReport>>, limit: readonly string[] | undefined, command: string, out: CommandOutput): { hosts?: Set<string>; refused?: true } {
  if (!limit?.length) return {};
  try {
    return { hosts: selectLimit(inventory.hosts, limit, inventory.site.name) };
  } catch (err) {
    if (!(err instanceof LimitError)) throw err;
    out.error(`netfleet ${command}: ${err.message}`);
    return { refused: true };
  }
}

/**
 * `netfleet plan <dir> [--host NAME] [--limit PATTERN...]`: each host's resources and first-apply commands on an
 * empty host (emptyHostNote); EXIT_INVALID on a bad inventory, an unknown host or a refused limit.
 */
export async function planCommand(dir: string, options: { host?: string; limit?: readonly string[] }, out: CommandOutput): Promise<number> {
  const inventory = loadOrReport(dir, out);
  if (!inventory) return EXIT_INVALID;
  let assignments = compileSite(inventory);
  const limit = limited(inventory, options.limit, "plan", out);
  if (limit.refused) return EXIT_INVALID;
  if (limit.hosts) assignments = assignments.filter((a) => limit.hosts!.has(a.host));
  if (options.host !== undefined) {
    const known = inventory.hosts.some((h) => h.name === options.host);
    assignments = assignments.filter((a) => a.host === options.host);
    if (assignments.length === 0) {
      out.error(
        known
          ? `netfleet plan: --host ${options.host} and --limit ${(options.limit ?? []).join(",")} select no host together (${options.host} is not in the limit)`
          : `netfleet plan: no host ${JSON.stringify(options.host)} in site ${inventory.site.name} (hosts: ${inventory.hosts.map((h) => h.name).join(", ")})`,
      );
      return EXIT_INVALID;
    }
  }
  const plans = planHosts(assignments);
  const selected = limit.hosts || options.host !== undefined ? new Set(assignments.map((a) => a.host)) : undefined;
  const vms = plannedPolicies(inventory, selected);
  if (out.json) {
    out.emit({ site: inventory.site.name, basis: "empty-host", note: emptyHostNote(dir), vms, hosts: plans });
    return 0;
  }
  out.line(`# ${emptyHostNote(dir)}`);
  out.line("");
  for (const l of renderPolicies(vms)) out.line(l);
  for (const p of plans) {
    out.line(`host ${p.host} (${p.role})  assignment ${p.hash.slice(0, 12)}`);
    for (const r of p.resources) out.line(`  ${r.id.padEnd(34)} ${summarizeSpec(r.spec)}`);
    out.line("  first apply on an empty host:");
    for (const step of p.firstApply) {
      if (step.blocked) out.line(`    # ${step.id}: blocked: ${step.blocked}`);
      if (step.commands.length === 0) continue;
      out.line(`    # ${step.id}`);
      for (const c of step.commands) for (const l of shortened(c.split("\n"))) out.line(`    ${l}`);
    }
    out.line("");
  }
  return 0;
}

/**
 * A command script as the plan prints it: a line longer than
 * PLAN_MAX_WIDTH (a range forward's map of 30000 elements) is cut, and a
 * script past PLAN_MAX_LINES is cut in the middle. `--json` has every byte.
 */
export const PLAN_MAX_WIDTH = 240;
/** See PLAN_MAX_WIDTH: lines of one command script shown before it is cut in the middle. */
const PLAN_MAX_LINES = 400;
function shortened(lines: string[]): string[] {
  const narrow = lines.map((l) => (l.length <= PLAN_MAX_WIDTH ? l : `${l.slice(0, PLAN_MAX_WIDTH)} ... (${l.length - PLAN_MAX_WIDTH} more characters; netfleet plan --json has them)`));
  if (narrow.length <= PLAN_MAX_LINES) return narrow;
  const head = narrow.slice(0, PLAN_MAX_LINES - 10);
  const tail = narrow.slice(-5);
  return [...head, `# ... ${narrow.length - head.length - tail.length} more lines (netfleet plan --json has them)`, ...tail];
}

function summarizeSpec(spec: ResourceSpec): string {
  switch (spec.kind) {
    case "kernel-bond":
      return `mode ${spec.mode}, members ${spec.members.join("+")}, miimon ${spec.miimon}, mtu ${spec.mtu}`;
    case "vlan-interface":
      return `vlan ${spec.vlan} on ${spec.parent}, mtu ${spec.mtu}`;
    case "interface-address":
      return `${spec.addresses.join(", ")}${spec.mac ? ` mac ${spec.mac}` : ""}`;
    case "ovs-bridge":
      return `datapath ${spec.datapath}${spec.mtu ? `, mtu ${spec.mtu}` : ""}; ports ${spec.ports.map((p) => `${p.name}(${p.type}${p.tag ? ` tag ${p.tag}` : ""}${p.trunks ? ` trunks ${p.trunks.join(",")}` : ""}${p.mtu ? ` mtu ${p.mtu}` : ""})`).join(" ")}`;
    case "libvirt-network":
      return `bridge ${spec.bridge}, portgroups ${spec.portgroups.map((p) => p.name).join(",")}`;
    case "sysctl":
      return `${spec.name} = ${spec.value}`;
    case "vm-port-policy":
      return `OpenFlow for VM ports (cookie ${spec.cookie}): anti-spoofing; isolated ${spec.vms.filter((v) => v.isolated).map((v) => v.name).join(",") || "none"}${spec.isolatedDefault ? " (network default: isolated)" : ""}${bandwidthSummary(spec.vms)}`;
    case "dnsmasq":
      return `${spec.dhcp ? `DHCP ${spec.dhcp.start}-${spec.dhcp.end} (${spec.router ? "default route" : "no default route"}, mtu ${spec.mtu})` : "no DHCP"} and DNS (${spec.dns}, ttl cap ${spec.maxTtl}s${spec.allowNames.length > 0 ? `, ${spec.allowNames.length} names` : ""}) on ${spec.address}, ${spec.hosts.length} static hosts`;
    case "nft-table":
      return [
        `table inet netfleet: NAT out of ${spec.externalInterfaces.join(",")}, ${spec.allow.length} allow rules, name sets ${spec.dnsSetTimeout}s`,
        ...spec.networks.map((n) => `${n.name}: egress ${n.egress}, deny ${n.deny.join(" ")}; services ${n.services.map((x) => `${x.proto}/${x.ports.first === x.ports.last ? x.ports.first : `${x.ports.first}-${x.ports.last}`}`).join(",") || "none"}; audit ${n.auditGroup !== undefined ? `nflog group ${n.auditGroup}` : "off"}`),
        ...spec.forwards.map((f) => `forward ${f.proto} ${f.count === 1 ? f.listen : `${f.listen}-${f.listen + f.count - 1}`} -> ${f.count === 1 ? f.vm : `${f.vm} (+${f.count - 1} addresses)`}:${f.port}${f.from.length > 0 ? ` from ${f.from.join(",")}` : ""}`),
      ].join("\n" + " ".repeat(39));
    case "prune":
      return "remove what netfleet created here and no longer wants";
    case "ovs-sampling":
      return samplingSummary(spec);
    case "ovs-mirror":
      return mirrorSummary(spec);
    default:
      // A kind without its own line yet (a resource added since): its fields, compact; --json has them whole.
      return compactSpec(spec);
  }
}

/** `; bandwidth vm1 egress 50Mbit/s burst 1Mbit ingress ...` for the VMs with a limit, "" when none has one. */
function bandwidthSummary(vms: readonly { name: string; bandwidth?: Bandwidth }[]): string {
  const limited = vms.filter((v) => v.bandwidth?.egress || v.bandwidth?.ingress);
  if (limited.length === 0) return "";
  const one = (b: Bandwidth) => (["egress", "ingress"] as const).flatMap((d) => (b[d] ? [`${d} ${formatLimit(b[d])}`] : [])).join(" ");
  return `; bandwidth ${limited.map((v) => `${v.name} ${one(v.bandwidth!)}`).join(", ")}`;
}

/** `key=value` for each scalar field of a spec but kind and name, lists as their length. */
function compactSpec(spec: ResourceSpec): string {
  const fields = Object.entries(spec as Record<string, unknown>).filter(([k]) => k !== "kind" && k !== "name");
  return fields.map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.length}]` : typeof v === "object" && v !== null ? "{...}" : String(v)}`).join(" ") || "(no settings)";
}

/**
 * Makes compile's --out folder one level at a time, or says why it cannot
 * (e.g. "--out /tmp/f: /tmp/f is not a folder"): Node's recursive mkdir
 * spins forever on some paths it cannot create (under /proc).
 * Returns undefined when `out` is a folder now.
 */
function makeOutDir(out: string): string | undefined {
  const missing: string[] = [];
  let dir = resolve(out);
  for (;;) {
    try {
      if (!statSync(dir).isDirectory()) return `--out ${out}: ${dir} is not a folder`;
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") return `--out ${out}: ${(err as Error).message}`;
      missing.unshift(dir);
      dir = dirname(dir);
    }
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (err) {
      return `--out ${out}: cannot create ${d}: ${(err as Error).message}`;
    }
  }
  return undefined;
}

/**
 * `netfleet compile <dir> <out> [--limit PATTERN...]`: writes one assignment JSON per host (of the limit) into `outDir`
 * (created if missing); EXIT_INVALID when it cannot be, or the limit is refused (then nothing is written).
 */
export function compileCommand(dir: string, outDir: string, out: CommandOutput, options: { limit?: readonly string[] } = {}): number {
  const inventory = loadOrReport(dir, out);
  if (!inventory) return EXIT_INVALID;
  const limit = limited(inventory, options.limit, "compile", out);
  if (limit.refused) return EXIT_INVALID;
  const refused = makeOutDir(outDir);
  if (refused !== undefined) {
    out.error(`netfleet compile: ${refused}`);
    return EXIT_INVALID;
  }
  const written = compileSite(inventory).filter((a) => !limit.hosts || limit.hosts.has(a.host)).map((a) => {
    const path = join(outDir, `${a.host}.json`);
    writeFileSync(path, JSON.stringify(a, null, 2) + "\n");
    return { host: a.host, hash: a.hash, path };
  });
  if (out.json) out.emit({ site: inventory.site.name, assignments: written });
  else for (const w of written) out.line(`${w.path}  ${w.hash.slice(0, 12)}`);
  return 0;
}
