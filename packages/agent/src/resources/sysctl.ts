import { ParseError, type SysctlSpec } from "@netfleet/shared";
import { mutate } from "../exec/runner.ts";
import type { ResourceHandler, ResourcePlan } from "./types.ts";

/** A kernel setting (`sysctl -n` to read, `sysctl -w name=value` to set), compared as the text the kernel prints. */
export const sysctl: ResourceHandler<SysctlSpec, { value: string }> = {
  kind: "sysctl",
  async observe(spec, ctx) {
    const out = await ctx.read(ctx.tools.sysctl("-n", spec.name));
    const value = out.stdout.trim();
    if (!/^-?\d+$/.test(value)) throw new ParseError("sysctl", `${spec.name} = ${JSON.stringify(value)} is not a number`);
    return { value };
  },
  // The kernel's default for what netfleet sets (net.ipv4.ip_forward): off.
  absent: () => ({ value: "0" }),
  plan(spec, observed, ctx): ResourcePlan {
    if (observed.value === spec.value) return { changes: {}, commands: [] };
    return {
      changes: { value: { old: observed.value, new: spec.value } },
      commands: [mutate(ctx.tools.sysctl("-w", `${spec.name}=${spec.value}`))],
    };
  },
};
