/**
 * sh scripts/node.sh test/bench/nft-apply.ts [--rounds N]
 *
 * The gateway firewall's cost on real nft (run as root): in a scratch
 * network namespace (made and deleted here), for a small table (the unit
 * fixture's spec) and a large one (24 networks, a /24 port range on each,
 * 2,000 allow entries, 1,000 name-set elements carried), it measures
 * - generate: nftRuleset + normaliseListing of the desired table, ms;
 * - apply: `nft -f` of the whole table (replace, elements carried), ms;
 * - observe: the two listings the agent reads each pass (`nft -t list table`, `nft -j list ruleset`), ms;
 * - plan: the plan on what was read (must be empty: no flapping), ms;
 * - in-place: one allow entry changed (set edit, no rule touched), ms.
 * A benchmark, not a test: it prints figures and fails only when a part
 * could not be measured (or the second plan is not empty).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { NftTableSpec } from "@netfleet/shared";
import { fixtureContext } from "../../packages/agent/src/resources/fixtures.ts";
import { nftTable, nftRuleset, nftStructure, normaliseListing } from "../../packages/agent/src/resources/nft.ts";
import { parseNftJson } from "../../packages/agent/src/resources/nft-live.ts";
import { foreignDrops } from "../../packages/agent/src/resources/nft-foreign.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const rounds = Math.max(1, Number(values.rounds));
const NS = `nfbench-nft-${process.pid}`;
const live = { externalSubnets: ["203.0.113.0/24"] };

const small = NftTableSpec.parse(JSON.parse(readFileSync(join(import.meta.dirname, "../../packages/agent/src/resources/__fixtures__/nft/gateway-spec.json"), "utf8")));

function large(): NftTableSpec {
  const networks = Array.from({ length: 24 }, (_, i) => ({
    name: `net${i}`,
    interface: `gw-net${i}`,
    cidr: `10.${100 + i}.0.0/24`,
    gateway: `10.${100 + i}.0.1`,
    egress: (i % 2 ? "open" : "allowlist") as "open" | "allowlist",
    deny: ["10.99.0.0/24", "169.254.0.0/16", ...Array.from({ length: 24 }, (_, j) => `10.${100 + j}.0.0/24`).filter((_, j) => j !== i)],
    services: [{ proto: "tcp" as const, ports: { first: 8000, last: 8100 } }],
    auditGroup: 1000 + i,
  }));
  const allow = Array.from({ length: 2000 }, (_, k) => ({ vm: `10.${100 + 2 * (k % 12)}.0.${10 + (k % 200)}`, to: `198.51.${k % 250}.${1 + (k % 7)}`, proto: "tcp" as const, ports: [443] }));
  const forwards = networks.map((n, i) => ({ proto: "tcp" as const, listen: 20000 + i * 256 + 2, count: 253, vm: n.cidr.replace(/0\/24$/, "2"), port: 22, interface: n.interface, from: [] as string[] }));
  return { kind: "nft-table", name: "netfleet", externalInterfaces: ["wan0", "wan1"], networks, allow, dnsSets: ["dns_0123456789ab"], dnsSetTimeout: 3600, forwards };
}

const ns = (...argv: string[]) => execFileSync("ip", ["netns", "exec", NS, ...argv], { maxBuffer: 256 * 1024 * 1024 }).toString();
const nftIn = (input: string) => execFileSync("ip", ["netns", "exec", NS, "nft", "-f", "-"], { input, maxBuffer: 64 * 1024 * 1024 });
const time = (f: () => unknown) => {
  const t = performance.now();
  f();
  return performance.now() - t;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function measure(label: string, spec: NftTableSpec): void {
  const carried = { [spec.dnsSets[0]!]: Array.from({ length: label === "large" ? 1000 : 1 }, (_, k) => ({ val: `192.0.${2 + Math.floor(k / 250)}.${1 + (k % 250)}`, expires: 1800 })) };
  const gen: number[] = [], apply: number[] = [], observe: number[] = [], plan: number[] = [], inPlace: number[] = [];
  let text = "";
  for (let r = 0; r < rounds; r++) {
    gen.push(time(() => {
      text = nftRuleset(spec, live, carried).text;
      normaliseListing(nftStructure(spec, live).text);
    }));
    apply.push(time(() => nftIn(text)));
    let listing = "", ruleset = "";
    observe.push(time(() => {
      listing = ns("nft", "-t", "list", "table", "inet", "netfleet");
      ruleset = ns("nft", "-j", "list", "ruleset");
    }));
    const ours = () => ({ exists: true, ...parseNftJson(ruleset, { family: "inet", table: "netfleet" }) });
    let p: ReturnType<typeof nftTable.plan> | undefined;
    plan.push(time(() => {
      const o = { ...ours(), lines: normaliseListing(listing), externalSubnets: live.externalSubnets, missingExternal: [], foreign: foreignDrops(ruleset, spec.networks.map((n) => n.interface)) };
      p = nftTable.plan(spec, o, fixtureContext);
    }));
    if (p!.commands.length) throw new Error(`${label}: the plan right after the apply is not empty: ${JSON.stringify(p!.changes).slice(0, 500)}`);
    const first = spec.allow.find((a) => a.to)!;
    const changed = { ...spec, allow: [{ ...first, ports: [8443] }, ...spec.allow.slice(1)] };
    const o2 = { ...ours(), lines: normaliseListing(listing), externalSubnets: live.externalSubnets, missingExternal: [], foreign: [] };
    const edit = nftTable.plan(changed, o2, fixtureContext).commands[0]!.stdin!;
    inPlace.push(time(() => nftIn(edit)));
  }
  const lines = text.split("\n").length;
  process.stdout.write(
    `${label.padEnd(6)} ${String(lines).padStart(6)} lines  generate ${median(gen).toFixed(1).padStart(7)} ms  apply ${median(apply).toFixed(0).padStart(5)} ms  ` +
      `observe ${median(observe).toFixed(0).padStart(5)} ms  plan ${median(plan).toFixed(1).padStart(6)} ms (empty)  in-place edit ${median(inPlace).toFixed(0).padStart(4)} ms  (median of ${rounds})\n`,
  );
}

execFileSync("ip", ["netns", "add", NS]);
try {
  measure("small", small);
  measure("large", large());
} finally {
  execFileSync("ip", ["netns", "del", NS]);
}
