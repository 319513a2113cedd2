import { readFileSync } from "node:fs";
import { join } from "node:path";
import { RecordingRunner } from "../exec/recording-runner.ts";
import type { HostAccess } from "../resources/types.ts";
import { Toolbox, type ToolPaths } from "../tools.ts";
import type { RawObservation, RawRead } from "./read.ts";

/** A capture of __fixtures__/capture.ts: what show read on a lab host (reads.json, one file per command, the lease files). */
export interface Capture {
  host: string;
  at: number;
  tools: Toolbox;
  /** Replays every captured read by its argv (any other argv is an error: nothing reaches a real tool). */
  runner: RecordingRunner;
  /** The captured lease files at their paths on the host; nothing else exists. */
  files: HostAccess;
  /** The capture as readHost returned it. */
  raw: RawObservation;
}

interface ReadsFile {
  host: string;
  at: number;
  paths: ToolPaths;
  reads: { name: string; argv: string[]; exitCode: number; stderr: string; file: string }[];
  files: Record<string, string>;
}

/** Loads the capture in `__fixtures__/<name>`. */
export function loadCapture(name: string): Capture {
  const dir = join(import.meta.dirname, "__fixtures__", name);
  const doc = JSON.parse(readFileSync(join(dir, "reads.json"), "utf8")) as ReadsFile;
  const runner = new RecordingRunner();
  const byName = new Map<string, RawRead>();
  for (const r of doc.reads) {
    const read: RawRead = { argv: r.argv, stdout: readFileSync(join(dir, r.file), "utf8"), stderr: r.stderr, exitCode: r.exitCode };
    byName.set(r.name, read);
    runner.reply(r.argv, { stdout: read.stdout, stderr: read.stderr, exitCode: read.exitCode });
  }
  const files = Object.fromEntries(Object.entries(doc.files).map(([path, file]) => [path, readFileSync(join(dir, file), "utf8")]));
  const dirs = new Map<string, string[]>();
  for (const path of Object.keys(files)) {
    const at = path.lastIndexOf("/");
    dirs.set(path.slice(0, at), [...(dirs.get(path.slice(0, at)) ?? []), path.slice(at + 1)].sort());
  }
  const access: HostAccess = { readFile: async (p) => files[p], listDir: async (p) => dirs.get(p), processArgv: async () => undefined };
  const pick = (prefix: string) => Object.fromEntries([...byName].filter(([n]) => n.startsWith(prefix)).map(([n, r]) => [n.slice(prefix.length), r]));
  const raw: RawObservation = {
    host: doc.host,
    links: byName.get("links")!,
    addrs: byName.get("addrs")!,
    ovs: byName.get("ovs")!,
    flows: pick("flows-"),
    netList: byName.get("netList")!,
    netXml: pick("net-"),
    nftJson: byName.get("nftJson")!,
    nftText: byName.get("nftText")!,
    ...Object.fromEntries((["ovsStats", "bondShow", "lacpShow"] as const).filter((k) => byName.has(k)).map((k) => [k, byName.get(k)!])),
    files,
    at: doc.at,
  };
  return { host: doc.host, at: doc.at, tools: new Toolbox(doc.paths), runner, files: access, raw };
}
