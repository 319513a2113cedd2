import { ParseError, type SysctlSpec } from "@netfleet/shared";
import { mutate } from "../exec/runner.ts";
import type { ResourceHandler, ResourcePlan } from "./types.ts";

/**
 * Kernel parameters a write to another one can change, by name:
 * net.ipv4.ip_forward and net.ipv4.conf.all.forwarding set every
 * interface's IPv4 forwarding (devinet_sysctl_forward, net/ipv4/devinet.c),
 * net.ipv6.conf.all.forwarding every interface's IPv6 forwarding
 * (addrconf_fixup_forwarding, net/ipv6/addrconf.c), other conf.all and
 * conf.default keys stand for many interfaces; net.nf_conntrack_max and
 * net.netfilter.nf_conntrack_max are one value under two names
 * (nf_conntrack_standalone.c).
 */
const COUPLED_SYSCTL = /^net\.ipv4\.ip_forward$|^net\.ipv[46]\.conf\.|nf_conntrack/;

/** A kernel setting (`sysctl -n` to read, `sysctl -w name=value` to set), compared as the text the kernel prints. */
export const sysctl: ResourceHandler<SysctlSpec, { value: string }> = {
  kind: "sysctl",
  async observe(spec, ctx) {
    const out = await ctx.read(ctx.tools.sysctl("-n", spec.name));
    const value = out.stdout.trim();
    if (!/^-?\d+$/.test(value)) throw new ParseError("sysctl", `${spec.name} = ${JSON.stringify(value)} is not a number`);
    return { value };
  },
  // Another sysctl's write leaves this one as read, unless either is of the coupled families; anything else
  // applied may (libvirt turns net.ipv4.ip_forward on when it starts a NAT network; a new link adds its conf keys).
  unaffectedBy: (spec, applied) => applied.kind === "sysctl" && applied.name !== spec.name && !COUPLED_SYSCTL.test(spec.name) && !COUPLED_SYSCTL.test(applied.name),
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
