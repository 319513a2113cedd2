/**
 * Captures what `show` reads on a real host into a fixture folder: one file
 * per command's stdout, `reads.json` (argv, exit code, stderr, file of
 * each read) and the lease files under `files/`. Run inside the host's
 * namespace of a lab, e.g.
 *   ip netns exec nfs-hosta sh scripts/node.sh packages/agent/src/show/__fixtures__/capture.ts \
 *     packages/agent/src/show/__fixtures__/hosta hosta '{"ovsDb":".../db.sock","ovsRundir":"...","libvirtUri":"...","runDir":"...","stateDir":"..."}'
 * fixtures.ts (loadCapture) reads a folder back as a RawObservation.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { localHost } from "../../engine.ts";
import { ExecaRunner } from "../../exec/runner.ts";
import { Toolbox, type ToolPaths } from "../../tools.ts";
import { readHost, type RawRead } from "../read.ts";

const [out, host, paths] = process.argv.slice(2) as [string, string, string];
const raw = await readHost({ host, runner: new ExecaRunner(), tools: new Toolbox(JSON.parse(paths) as ToolPaths), files: localHost });
mkdirSync(join(out, "files"), { recursive: true });
const reads: { name: string; argv: string[]; exitCode: number; stderr: string; file: string }[] = [];
const keep = (name: string, r: RawRead) => {
  const file = `${name}.out`;
  writeFileSync(join(out, file), r.stdout);
  reads.push({ name, argv: r.argv, exitCode: r.exitCode, stderr: r.stderr, file });
};
for (const key of ["links", "addrs", "ovs", "netList", "nftJson", "nftText"] as const) keep(key, raw[key]);
for (const key of ["ovsStats", "bondShow", "lacpShow"] as const) if (raw[key]) keep(key, raw[key]);
for (const [bridge, r] of Object.entries(raw.flows)) keep(`flows-${bridge}`, r);
for (const [network, r] of Object.entries(raw.netXml)) keep(`net-${network}`, r);
const files: Record<string, string> = {};
Object.keys(raw.files).forEach((path, i) => {
  const file = `files/${i}-${path.split("/").pop()}`;
  writeFileSync(join(out, file), raw.files[path]!);
  files[path] = file;
});
writeFileSync(join(out, "reads.json"), JSON.stringify({ host, at: raw.at, paths: JSON.parse(paths), reads, files }, null, 2) + "\n");
process.stdout.write(`${out}: ${reads.length} reads, ${Object.keys(files).length} files\n`);
