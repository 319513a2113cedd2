import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { basename, dirname } from "node:path";
import { DirectoryHandle } from "@netfleet/agent";
import type { AgentBundle } from "./bundle.ts";
import { checkAgentConfig, renderConfig, type AgentConfig } from "@netfleet/agent/config";
import { REMOTE, renderUnit } from "./layout.ts";

/** One file written for the image (`path` inside it) and whether its bytes changed. */
export interface ImageFile {
  path: string;
  changed: boolean;
}

const WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/netfleet-agent.service";
/** Directories made on the way (/opt/netfleet, /etc/systemd/...): what a package would make. */
const DIR_MODE = 0o755;
/** /etc/netfleet holds the token: only root may list or enter it. */
const SECRET_DIR_MODE = 0o700;
/** agent.json holds the token. */
const SECRET_MODE = 0o600;

function sha256(data: Buffer | undefined): string {
  return createHash("sha256").update(data ?? Buffer.alloc(0)).digest("hex");
}

/**
 * The agent.json already in the image under `root`, or undefined when there
 * is none or it is not a valid config. Read like it is written: every
 * directory opened O_DIRECTORY|O_NOFOLLOW, the file O_NOFOLLOW, nothing created.
 * @throws UnsafePathError on a symlink on the way (the write would refuse it too).
 */
export function readImageConfig(root: string): AgentConfig | undefined {
  const top = DirectoryHandle.openRoot(root);
  const handles = [top];
  try {
    let dir = top;
    for (const name of dirname(REMOTE.config).split("/").filter(Boolean)) {
      try {
        dir = dir.dir(name);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
      handles.push(dir);
    }
    const text = dir.read(basename(REMOTE.config));
    if (text === undefined) return undefined;
    try {
      return checkAgentConfig(JSON.parse(text.toString("utf8")));
    } catch {
      return undefined;
    }
  } finally {
    for (const h of handles) h.close();
  }
}

/**
 * The agent's files for a host image, under `root` (the image's mounted
 * file system): the bundle, a Node binary, agent.json (the site, NATS and
 * `config.token`; `config.name` when the image is for one host), the unit,
 * and the multi-user.target.wants link that `systemctl enable` would make,
 * so the first boot starts the agent. Files that already hold the same
 * bytes (and mode) are left alone.
 *
 * Nothing is written outside `root`: every directory below it is opened
 * with O_DIRECTORY|O_NOFOLLOW (open(2)) from the one above, through its
 * file descriptor (DirectoryHandle), so a symlink anywhere below `root`
 * (at /etc, /etc/netfleet or agent.json itself) is refused, and the check
 * cannot be raced: it is the same open(2) the write goes through. (An lstat
 * walk from the root was the alternative; it leaves a window between the
 * check and the write in which a directory can become a link.) Each file is
 * a fresh temp file (O_CREAT|O_EXCL|O_NOFOLLOW, random name: a stale temp
 * file is never written through), fchmod to its fixed mode (agent.json
 * 0600 in /etc/netfleet 0700), fsync, rename(2).
 * @throws UnsafePathError (from @netfleet/agent) naming the link or non-directory; the fs error otherwise.
 */
export function writeImageFiles(root: string, o: { bundle: AgentBundle; node: string; config: AgentConfig }): ImageFile[] {
  const top = DirectoryHandle.openRoot(root);
  const out: ImageFile[] = [];
  /** `secretDir`: the file's directory gets exactly SECRET_DIR_MODE, also when it exists. */
  const put = (path: string, data: Buffer, mode: number, secretDir = false) => {
    const dir = top.walk(dirname(path), DIR_MODE, secretDir ? SECRET_DIR_MODE : undefined);
    try {
      const name = basename(path);
      const old = dir.read(name);
      const changed = old === undefined || sha256(old) !== sha256(data) || (dir.lstat(name)!.mode & 0o7777) !== mode;
      if (changed) dir.write(name, data, mode);
      out.push({ path, changed });
    } finally {
      dir.close();
    }
  };
  try {
    put(REMOTE.agent, o.bundle.code, 0o644);
    put(REMOTE.node, readFileSync(o.node), statSync(o.node).mode & 0o7777);
    put(REMOTE.config, Buffer.from(renderConfig(o.config)), SECRET_MODE, true);
    put(REMOTE.unit, Buffer.from(renderUnit(REMOTE.node)), 0o644);
    const wants = top.walk(dirname(WANTS_LINK), DIR_MODE);
    try {
      const name = basename(WANTS_LINK);
      const at = wants.lstat(name);
      let linked = false;
      if (at?.isSymbolicLink()) linked = wants.readLink(name) === REMOTE.unit;
      if (!linked) wants.symlink(name, REMOTE.unit);
      out.push({ path: WANTS_LINK, changed: !linked });
    } finally {
      wants.close();
    }
  } finally {
    top.close();
  }
  return out;
}
