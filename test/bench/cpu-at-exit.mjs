// node --import ./cpu-at-exit.mjs: the process's own CPU (user + system, ms) as a last stderr line, `[cpu-ms] N`.
// The fleet benches (status.ts) load it into the CLI they time, so that a figure taken on a busy machine still says what the command itself cost.
process.on("exit", () => {
  const u = process.cpuUsage();
  process.stderr.write(`\n[cpu-ms] ${Math.round((u.user + u.system) / 1000)}\n`);
});
