import type { ResourceSpec } from "@netfleet/shared";
import type { Command } from "../exec/runner.ts";
import type { Toolbox } from "../tools.ts";

/** What a plan would change, Salt-style: `{ key: { old, new } }`. */
export type Changes = Record<string, { old: unknown; new: unknown }>;

/** What `plan` decides: the differences, and the argv commands that remove them. */
export interface ResourcePlan {
  changes: Changes;
  commands: Command[];
  /** Set when the resource cannot be converged as asked (e.g. it is not ours); nothing runs. */
  blocked?: string;
  /** Notes for the operator that do not block (e.g. "exists, not ours, matches"). */
  comment?: string;
  /**
   * The changes follow a VM's lifecycle (a port appeared or went, a lease
   * came or ended), not drift: a daemon pass that makes them is not
   * reported as corrective.
   */
  lifecycle?: boolean;
  /**
   * For a resource made of text (the nft ruleset, dnsmasq's files, libvirt
   * network XML, a bridge's OpenFlow rules per VM port): the unified diff
   * from what the host has to what the plan makes (`--- live`, `+++
   * desired`; @netfleet/shared unifiedDiff). Set whenever that text differs.
   */
  diff?: string;
}

/** What a pure plan may know besides the spec and the observation. */
export interface PlanContext {
  /** The owner marker value: the site name. */
  owner: string;
  tools: Toolbox;
}

/** What the agent reads of the host itself, without running a program. */
export interface HostAccess {
  /** A file's content, or undefined when it does not exist. */
  readFile(path: string): Promise<string | undefined>;
  /** The names in a directory, sorted, or undefined when it does not exist. */
  listDir(path: string): Promise<string[] | undefined>;
  /** A live process's argv, or undefined when no such process runs. */
  processArgv(pid: number): Promise<string[] | undefined>;
}

/** Reads only. Memoised per pass so that resources of one kind share a single call. */
export interface ObserveContext extends PlanContext, HostAccess {
  read(argv: string[], options?: { allowFailure?: boolean }): Promise<{ stdout: string; exitCode: number; stderr: string }>;
  /**
   * What handlers learnt of this host in earlier passes of the same daemon
   * (ReconcileOptions.carry), by key (a handler's own prefix and one
   * object's name, so bounded by the host's objects); absent in one-off
   * passes (apply, check), which then read everything.
   */
  carry?: Map<string, unknown>;
}

/**
 * A kind of resource. `observe` runs read-only commands; `plan` is pure and
 * is what unit tests drive with fixtures of real command output.
 */
export interface ResourceHandler<S extends ResourceSpec = ResourceSpec, O = unknown> {
  kind: S["kind"];
  observe(spec: S, ctx: ObserveContext): Promise<O>;
  plan(spec: S, observed: O, ctx: PlanContext): ResourcePlan;
  /**
   * What `observe` returns on a freshly installed host: none of netfleet's
   * devices, files, tables or daemons, the physical NICs the spec names
   * present, kernel settings at their defaults. Pure: `netfleet plan` shows
   * `plan(spec, absent(spec))` as the first apply, with no host to read.
   */
  absent(spec: S): O;
  /**
   * Whether what `observe` saw of `spec` still holds after `applied` was
   * applied earlier in the same pass (the engine then plans on it instead of
   * observing again). Absent: never.
   */
  unaffectedBy?(spec: S, applied: ResourceSpec): boolean;
  /**
   * What of an observation the pass's `observed` hash covers (engine.ts
   * observedHash): everything a plan depends on, nothing that moves on an
   * unchanged host (counters, timestamps, lease expiry, pids, elements
   * the data path adds itself), nothing of what it does not name (another
   * link, a VM's tap). Absent: the observation as it is.
   */
  stable?(observed: O, spec: S): unknown;
  /**
   * How long, in milliseconds, what `observe` reads may lag a write that
   * already succeeded: while the read-back after an apply still differs (or
   * is refused), the engine waits 100 ms and reads again, until it has waited
   * this long (the reads' own time comes on top: at most settleMs / 100 + 1
   * reads), before it calls the resource "still differs". For status columns a daemon fills on its own cycle, such as
   * OVS's `Interface.mac_in_use`, which ovs-vswitchd writes in a separate
   * status transaction after it set the device's address (ovs-vswitchd.conf.db(5),
   * "Interface Status"). Absent: 0, one read-back.
   */
  settleMs?: number;
}

/**
 * One resource's result of a pass, as a Salt state result: `result` is true
 * (in desired state, or changed and verified), false (failed or refused;
 * `comment` or `error` says why) or null (check mode: would change);
 * `changes` maps what differs to `{ old, new }`; `commands` as displayed.
 */
export interface ResourceResult {
  id: string;
  result: boolean | null;
  changed: boolean;
  changes: Changes;
  commands: string[];
  comment: string;
  /** The message of an error thrown while observing, planning or applying. */
  error?: string;
  /** Wall time of the resource's observe, plan and apply, in milliseconds (0.1 ms steps). */
  durationMs: number;
  /** Changed for a VM's lifecycle only (see ResourcePlan.lifecycle). */
  lifecycle?: boolean;
  /** The plan's unified diff, live → desired (see ResourcePlan.diff). */
  diff?: string;
}

/** The owner mark netfleet sets on links (alias) and looks for: `netfleet-owner=<site>`. */
export function ownerMarker(owner: string): string {
  return `netfleet-owner=${owner}`;
}
