import { afterEach, describe, expect, it, vi } from "vitest";
import { main } from "./main.ts";

// The command line's surface; what apply and run do on a host is proven in test/kernel, test/lab and test/bootstrap.
describe("netfleet-agent command line", () => {
  const out: string[] = [];
  const err: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    out.length = 0;
    err.length = 0;
  });
  const capture = () => {
    vi.spyOn(process.stdout, "write").mockImplementation((text) => out.push(String(text)) > 0);
    vi.spyOn(process.stderr, "write").mockImplementation((text) => err.push(String(text)) > 0);
  };

  it("--help on every command, help and --version exit 0", async () => {
    capture();
    for (const argv of [["--help"], ["help"], ["apply", "--help"], ["run", "--help"], ["completion", "--help"], ["--version"]]) expect(await main(argv)).toBe(0);
    expect(out.join("")).toContain("Usage: netfleet-agent apply [options]");
    expect(out.join("")).toContain("--confirm-deadline <s>");
  });

  it("no command: the help on stdout and 64, as netfleet and netfleet-lab (was 0: `netfleet-agent $EMPTY` succeeded)", async () => {
    capture();
    expect(await main([])).toBe(64);
    expect(out.join("")).toMatch(/^Usage: netfleet-agent/);
  });

  it("help of an unknown command is that command's usage error", async () => {
    capture();
    expect(await main(["help", "aply"])).toBe(64);
    expect(err.join("")).toContain("netfleet-agent: unknown command 'aply'");
    expect(err.join("")).toContain("(Did you mean apply?)");
  });

  it("run --help shows its periods in seconds, and no commander default on a flag", async () => {
    capture();
    expect(await main(["run", "--help"])).toBe(0);
    const help = out.join("").replace(/\s+/g, " ");
    for (const d of ["(default 30)", "(default 2)", "(default 20)", "(default 15)"]) expect(help).toContain(d);
    expect(help).not.toContain("(default:");
    expect(await main(["apply", "--help"])).toBe(0);
    expect(out.join("")).toContain("(required)");
    expect(out.join("")).not.toContain("(default: false)");
  });

  it("options are per command; unknown ones and bad values are usage errors (64) with a suggestion", async () => {
    capture();
    expect(await main(["apply", "--assignment", "x.json", "--interval", "3"])).toBe(64);
    expect(await main(["aply"])).toBe(64);
    expect(err.join("")).toContain("(Did you mean apply?)");
    expect(await main(["run", "--nats", "http://x:1"])).toBe(64);
    expect(await main(["run", "--assignment", "x.json", "--interval", "0"])).toBe(64);
    expect(await main(["run", "--site", "lab", "--nats", "nats://10.0.0.1:4222"])).toBe(64);
    expect(err.join("")).toContain("netfleet-agent run: --token-file FILE (or - for stdin) is required");
  });

  it("--token is refused (a token on the command line is in ps), before anything runs; a host token must match --name", async () => {
    capture();
    expect(await main(["run", "--site", "lab", "--nats", "nats://10.0.0.1:4222", "--token", "abcdefgh.0123456789abcdefXYZ"])).toBe(64);
    expect(err.join("")).toContain("netfleet-agent run: --token is refused: a token on the command line is shown by ps to every local user; put it in a file (mode 0600) and give --token-file FILE, or pipe it in with --token-file -");
    expect(await main(["run", "--site", "lab", "--nats", "nats://10.0.0.1:4222", "--token-file", "/nonexistent/token"])).toBe(64);
    expect(err.join("")).toContain("netfleet-agent run: --token-file /nonexistent/token: ENOENT");
    const hostToken = `nfh1.abcdefgh.hv1.${(2_000_000_000).toString(36)}.0123456789abcdefgh.${"A".repeat(43)}`;
    expect(await main(["run", "--site", "lab", "--nats", "nats://10.0.0.1:4222", "--name", "hv2"], { token: hostToken })).toBe(64);
    expect(err.join("")).toContain("the token is a host token for hv1, not for --name hv2");
  });

  it("an assignment file that cannot be read changes nothing and exits 4", async () => {
    capture();
    expect(await main(["apply", "--assignment", "/nonexistent/hv1.json"])).toBe(4);
    expect(err.join("")).toContain("ENOENT");
    expect(err.join("")).toContain("netfleet-agent: cannot read assignment /nonexistent/hv1.json: no such file");
  });

  it("completion prints a bash and a zsh script", async () => {
    capture();
    expect(await main(["completion", "bash"])).toBe(0);
    expect(await main(["completion", "zsh"])).toBe(0);
    expect(out.join("")).toContain("--flow-interval");
  });
});
