import { hostname } from "node:os";
import type { HostView } from "@netfleet/shared";
import type { Runner } from "../exec/runner.ts";
import type { HostAccess } from "../resources/types.ts";
import type { Toolbox } from "../tools.ts";
import { leaseFiles, readHost } from "./read.ts";
import { buildHostView } from "./view.ts";

export { buildHostView } from "./view.ts";
export { readHost, showArgv, leaseDirs, type RawObservation, type RawRead } from "./read.ts";
export { renderHostView } from "./render.ts";

/** What observeHost reads with: the host's name in the view, the runner (read-only commands only), tool paths, files. */
export interface ObserveHostOptions {
  /** The name the view carries (default: the hostname's first label). */
  host?: string;
  runner: Runner;
  tools: Toolbox;
  /** Lease files are read through it (default: this host's, read as read.ts leaseFiles does: regular files only, non-blocking, size-capped). */
  files?: Pick<HostAccess, "listDir" | "readFile">;
}

/**
 * What `show` reports of this host now: every read is read-only (the
 * runner is only handed `mutating: false` commands), a tool that fails or
 * is missing leaves its section out and is named in `problems`. Never
 * throws for the host's state; only for a bug.
 */
export async function observeHost(o: ObserveHostOptions): Promise<HostView> {
  const raw = await readHost({ host: o.host ?? hostname().split(".")[0]!, runner: o.runner, tools: o.tools, files: o.files ?? leaseFiles });
  return buildHostView(raw);
}
