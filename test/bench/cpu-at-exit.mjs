// node --import ./cpu-at-exit.mjs: the process's own CPU (user + system, ms) and its peak RSS (MB, getrusage(2)
// ru_maxrss) as a last stderr line, `[cpu-ms] N [max-rss-mb] M`.
// The fleet benches (status.ts) load it into the CLI they time, so that a figure taken on a busy machine still says what the command itself cost.
process.on("exit", () => {
  const u = process.cpuUsage();
  process.stderr.write(`\n[cpu-ms] ${Math.round((u.user + u.system) / 1000)} [max-rss-mb] ${Math.round(process.resourceUsage().maxRSS / 1024)}\n`);
});
