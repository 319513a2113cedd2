import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import writeFileAtomic from "write-file-atomic";
import type { AgentBundle } from "./bundle.ts";
import { renderConfig, type AgentConfig } from "@netfleet/agent/config";
import { REMOTE, renderUnit } from "./layout.ts";

/** One file written for the image (`path` inside it) and whether its bytes changed. */
export interface ImageFile {
  path: string;
  changed: boolean;
}

const WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/netfleet-agent.service";

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function readOrEmpty(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch {
    return Buffer.alloc(0);
  }
}

/**
 * The agent's files for a host image, under `root` (the image's mounted
 * file system): the bundle, a Node binary, agent.json without a name (the
 * host enrolls by its hostname or management MAC under the controller's
 * approval rules), the unit, and the multi-user.target.wants link that
 * `systemctl enable` would make, so the first boot starts the agent.
 * Files that already hold the same bytes are left alone; the others are
 * written atomically (write-file-atomic).
 */
export function writeImageFiles(root: string, o: { bundle: AgentBundle; node: string; config: AgentConfig }): ImageFile[] {
  const at = (path: string) => join(root, path);
  const out: ImageFile[] = [];
  const put = (path: string, data: Buffer, mode: number) => {
    const file = at(path);
    const changed = sha256(readOrEmpty(file)) !== sha256(data);
    if (changed) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileAtomic.sync(file, data, { mode });
    }
    out.push({ path, changed });
  };
  put(REMOTE.agent, o.bundle.code, 0o644);
  const nodeFile = at(REMOTE.node);
  const node = readFileSync(o.node);
  const nodeChanged = sha256(readOrEmpty(nodeFile)) !== sha256(node);
  if (nodeChanged) {
    mkdirSync(dirname(nodeFile), { recursive: true });
    writeFileAtomic.sync(nodeFile, node, { mode: statSync(o.node).mode & 0o7777 });
  }
  out.push({ path: REMOTE.node, changed: nodeChanged });
  mkdirSync(at(REMOTE.configDir), { recursive: true, mode: 0o700 });
  put(REMOTE.config, Buffer.from(renderConfig(o.config)), 0o600);
  put(REMOTE.unit, Buffer.from(renderUnit(REMOTE.node)), 0o644);
  const link = at(WANTS_LINK);
  let linked = false;
  try {
    linked = readlinkSync(link) === REMOTE.unit;
  } catch {
    /* absent */
  }
  if (!linked) {
    mkdirSync(dirname(link), { recursive: true });
    rmSync(link, { force: true });
    symlinkSync(REMOTE.unit, link);
  }
  out.push({ path: WANTS_LINK, changed: !linked });
  return out;
}
