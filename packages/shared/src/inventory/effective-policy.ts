import { formatLimit } from "../bandwidth.ts";
import type { AllowEntry } from "./schema-network.ts";
import type { Inventory, Network, ProtoPorts, Vm } from "./model.ts";
import { POLICY_KEYS, type PolicyKey, type PolicySource } from "./profiles.ts";

/** One key of a VM's effective policy: its value, as data and as text, and where it came from. */
export interface PolicyEntry {
  key: PolicyKey;
  /** The value as the loaded model holds it (boolean, list, `{ rate, burst }` in bit/s and bits, or null: unlimited). */
  value: unknown;
  /** The value for people: `yes`, `none`, `203.0.113.10 tcp/443`, `50Mbit/s burst 1Mbit`, `unlimited`. */
  text: string;
  source: PolicySource;
  /** The source for people: `VM`, `profile web`, `network lan's profile web`, `network lan`, `default`. */
  sourceText: string;
}

/** A VM's effective policy in one network: every policy key, in `POLICY_KEYS` order. */
export interface EffectivePolicy {
  vm: string;
  network: string;
  host?: string;
  /** The profile it takes its policy from, if any. */
  profile?: string;
  entries: PolicyEntry[];
}

/**
 * The effective policy of VM `vm` in network `network`, with the source of
 * each value (the VM's own key, its profile, its network's default profile,
 * the network's setting, or the default). Pure: reads only the loaded
 * model (`loadInventory`). Undefined when there is no such VM in that
 * network. Used by `netfleet plan` and the dashboard.
 */
export function effectivePolicy(inventory: Inventory, network: string, vm: string): EffectivePolicy | undefined {
  const net = inventory.networks.find((n) => n.name === network);
  const v = net?.vms.find((x) => x.name === vm);
  return net && v ? policyOf(net, v) : undefined;
}

/** Every VM's effective policy, by network then VM name (the model's order). Pure. */
export function effectivePolicies(inventory: Inventory): EffectivePolicy[] {
  return inventory.networks.flatMap((net) => net.vms.map((v) => policyOf(net, v)));
}

function policyOf(net: Network, vm: Vm): EffectivePolicy {
  const entries = POLICY_KEYS.map((key): PolicyEntry => {
    const source = vm.sources?.[key] ?? fallbackSource(key, vm);
    const { value, text } = valueOf(key, vm, net);
    return { key, value, text, source, sourceText: sourceText(source, net.name) };
  });
  return { vm: vm.name, network: net.name, ...(vm.host ? { host: vm.host } : {}), ...(vm.profile ? { profile: vm.profile } : {}), entries };
}

/** A model built without the loader's sources (a hand-made Inventory): the network for isolation, else the default. */
function fallbackSource(key: PolicyKey, vm: Vm): PolicySource {
  if (key === "isolated" || (key === "cluster_groups" && vm.groups.length > 0)) return { from: "network" };
  return { from: "default" };
}

/**
 * A key's value and its text. The text adds what the network gives beside
 * the key so it does not read as less than it is: an open network's egress
 * (no allow list needed), the network's own gateway services.
 */
function valueOf(key: PolicyKey, vm: Vm, net: Network): { value: unknown; text: string } {
  const list = (items: string[]) => (items.length > 0 ? items.join(", ") : "none");
  switch (key) {
    case "isolated":
      return { value: vm.isolated, text: vm.isolated ? "yes" : "no" };
    case "cluster_groups":
      return { value: vm.groups, text: list(vm.groups) };
    case "allow":
      return { value: vm.allow, text: net.egress === "open" ? `none (network ${net.name}: egress open)` : list(vm.allow.map(allowText)) };
    case "gateway_services": {
      const own = list((vm.gateway_services ?? []).map(serviceText));
      const network = net.gateway_services.length > 0 ? ` (+ network ${net.name}'s ${net.gateway_services.map(serviceText).join(", ")})` : "";
      return { value: vm.gateway_services ?? [], text: `${own}${network}` };
    }
    case "extra_addresses":
      return { value: vm.extra_addresses, text: list(vm.extra_addresses) };
    case "bandwidth.egress":
    case "bandwidth.ingress": {
      const limit = vm.bandwidth?.[key === "bandwidth.egress" ? "egress" : "ingress"];
      return { value: limit ?? null, text: limit ? formatLimit(limit) : "unlimited" };
    }
  }
}

/** `203.0.113.10 tcp/443,8443`, `*.example.org`, `198.51.100.0/24` (every port). */
export function allowText(a: AllowEntry): string {
  return `${a.to ?? a.name}${a.ports ? ` ${a.proto}/${a.ports.join(",")}` : ""}`;
}

function serviceText(s: ProtoPorts): string {
  return `${s.proto}/${s.first === s.last ? s.first : `${s.first}-${s.last}`}`;
}

/** A source for people; `network` names the VM's network. */
export function sourceText(source: PolicySource, network: string): string {
  switch (source.from) {
    case "vm":
      return "VM";
    case "profile":
      return `profile ${source.profile}`;
    case "network-profile":
      return `network ${network}'s profile ${source.profile}`;
    case "network":
      return `network ${network}`;
    case "default":
      return "default";
  }
}
