/**
 * Adds show's counter reads (ovsStats, and bondShow / lacpShow as readHost
 * would make them) to a capture made before they existed, read live from a
 * lab host of the same site: run inside that host's namespace, e.g.
 *   ip netns exec cntc-hosta sh scripts/node.sh packages/agent/src/show/__fixtures__/augment.ts \
 *     packages/agent/src/show/__fixtures__/hosta '{"ovsDb":"/tmp/cntc-lab/hosts/hosta/ovs/db.sock","ovsRundir":"/tmp/cntc-lab/hosts/hosta/ovs"}'
 * The output is kept as printed; the argv recorded is the one the capture's
 * own paths give (readHost replays by argv), and `augmented` in reads.json
 * says where and when the reads were made.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ExecaRunner } from "../../exec/runner.ts";
import { Toolbox, type ToolPaths } from "../../tools.ts";
import { countersReadsOf } from "../read-counters.ts";
import { showArgv } from "../read.ts";

const [dir, livePaths] = process.argv.slice(2) as [string, string];
const doc = JSON.parse(readFileSync(join(dir, "reads.json"), "utf8")) as { paths: ToolPaths; reads: { name: string; argv: string[]; exitCode: number; stderr: string; file: string }[]; augmented?: unknown };
const live = new Toolbox(JSON.parse(livePaths) as ToolPaths);
const recorded = new Toolbox(doc.paths);
const runner = new ExecaRunner();
const ovs = readFileSync(join(dir, doc.reads.find((r) => r.name === "ovs")!.file), "utf8");
const wanted = countersReadsOf(ovs);
const names: ("ovsStats" | "bondShow" | "lacpShow")[] = ["ovsStats", ...(wanted.bond ? (["bondShow"] as const) : []), ...(wanted.lacp ? (["lacpShow"] as const) : [])];
for (const name of names) {
  const r = await runner.run({ argv: showArgv[name](live), mutating: false }, { allowFailure: true });
  writeFileSync(join(dir, `${name}.out`), r.stdout);
  doc.reads = doc.reads.filter((x) => x.name !== name);
  doc.reads.push({ name, argv: showArgv[name](recorded), exitCode: r.exitCode, stderr: r.stderr, file: `${name}.out` });
}
doc.augmented = { reads: names, from: JSON.parse(livePaths) as unknown, at: new Date().toISOString() };
writeFileSync(join(dir, "reads.json"), JSON.stringify(doc, null, 2) + "\n");
process.stdout.write(`${dir}: added ${names.join(", ")}\n`);
