/**
 * Runs each argv of its JSON argument in turn (no shell) and prints one JSON
 * array: [{argv, code, out}] (out: stdout and stderr, cut to 2000
 * characters). The systemd suite starts it inside the machine under the
 * agent unit's settings (systemd-run -p ...), so each command meets the
 * sandbox the agent's own commands meet, from a Node process as the agent is.
 *
 *   node probe.ts '[["ip","link","show"],["touch","/etc/x"]]'
 */
import { spawnSync } from "node:child_process";

const list = JSON.parse(process.argv[2] ?? "[]") as string[][];
const results = list.map((argv) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 20_000 });
  return { argv, code: r.status ?? -1, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error.message) : ""}`.slice(0, 2000) };
});
process.stdout.write(JSON.stringify(results) + "\n");
