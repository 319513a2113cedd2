import type { Command } from "../exec/runner.ts";
import { describeHold, describeUpperHold, managementHolds, upperHold, type ManagementView } from "./management-view.ts";

/**
 * The second half of the management guard (engine.ts, per plan): a plan
 * that takes down, releases the members of, changes the mode of or deletes
 * a link holding the management path is refused.
 */

/** What a planned command does to a link that matters to the management path. */
export interface LinkDisruption {
  op: "down" | "nomaster" | "mode" | "del";
  link: string;
}

/**
 * The link-level disruptions in planned commands: `ip link set dev X down`,
 * `... nomaster`, `... type bond mode M`, `ip link del [dev] X` (alone or in an
 * `ip -batch -`), and `ovs-vsctl ... del-br X`.
 */
export function disruptions(commands: readonly Command[]): LinkDisruption[] {
  const out: LinkDisruption[] = [];
  const ipLine = (args: string[]) => {
    let i = 0;
    while (i < args.length && args[i]!.startsWith("-")) i++;
    const a = args.slice(i);
    if (a[0] !== "link" && a[0] !== "l") return;
    if (a[1] === "del" || a[1] === "delete") {
      const name = a[2] === "dev" ? a[3] : a[2];
      if (name) out.push({ op: "del", link: name });
      return;
    }
    if (a[1] !== "set") return;
    const name = a[2] === "dev" ? a[3] : a[2];
    if (!name) return;
    const rest = a.slice(a[2] === "dev" ? 4 : 3);
    if (rest.includes("down")) out.push({ op: "down", link: name });
    if (rest.includes("nomaster")) out.push({ op: "nomaster", link: name });
    const t = rest.indexOf("type");
    if (t >= 0 && rest.slice(t + 1).includes("mode")) out.push({ op: "mode", link: name });
  };
  for (const c of commands) {
    if (c.builtin || !c.mutating) continue;
    const tool = c.argv[0]?.split("/").pop();
    if (tool === "ip") {
      const args = c.argv.slice(1);
      if (args.includes("-batch")) for (const line of (c.stdin ?? "").split("\n")) ipLine(line.trim().split(/\s+/).filter(Boolean));
      else ipLine(args);
    } else if (tool === "ovs-vsctl") {
      c.argv.forEach((a, i) => {
        if (a === "del-br" && c.argv[i + 1]) out.push({ op: "del", link: c.argv[i + 1]! });
      });
    }
  }
  return out;
}

/**
 * Why a plan may not run because it takes down, releases the members of,
 * changes the mode of or deletes a link holding the management path (or a
 * link under one that does); undefined when it may. `exempt`: the member a
 * sanctioned management move takes down (its address goes onto the bond).
 */
export function disruptionRefusal(ops: readonly LinkDisruption[], view: ManagementView, exempt?: string): string | undefined {
  // Here a link holds the path when it carries the default route, the route to a controller or
  // another routed (not `proto kernel`) route: an address alone is what every gateway VLAN of a
  // backend has, and those are deleted and re-made by ordinary plans.
  const holds = new Map([...managementHolds(view)].filter(([, h]) => h.defaultRoute !== undefined || h.controller !== undefined || h.routes.length > 0));
  const reasons: string[] = [];
  const said = new Set<string>();
  for (const { op, link } of ops) {
    if (op === "down" && link === exempt) continue;
    let what: string | undefined;
    let holder: string | undefined;
    const direct = holds.get(link);
    if (op === "nomaster") {
      const master = view.links.get(link)?.master;
      if (master === undefined || master === "ovs-system") continue;
      const m = holds.get(master);
      const u = m ? undefined : upperHold(master, view.links, holds);
      if (!m && !u) continue;
      what = `releasing ${link} from ${master} would cut this host off its controller: ${m ? describeHold(m) : describeUpperHold(u!)}`;
      holder = m ? master : u!.hold.link;
    } else {
      const u = direct ? undefined : upperHold(link, view.links, holds);
      if (!direct && !u) continue;
      const verb = op === "down" ? `taking ${link} down` : op === "mode" ? `changing the mode of ${link} (the kernel wants it down and its members released for that)` : `deleting ${link}`;
      what = `${verb} would cut this host off its controller: ${direct ? describeHold(direct) : describeUpperHold(u!)}`;
      holder = direct ? link : u!.hold.link;
    }
    if (said.has(what)) continue;
    said.add(what);
    reasons.push(`${what}; move the management address and routes off ${holder} first, or make this change from the console`);
  }
  return reasons.length > 0 ? reasons.join("; ") : undefined;
}
