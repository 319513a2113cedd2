import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { formatMetricsListen, MetricsServer, parseMetricsListen } from "./metrics-http.ts";

describe("the metrics listener setting", () => {
  it("takes off, PORT (loopback), ADDRESS:PORT and [IPv6]:PORT", () => {
    expect(parseMetricsListen("off")).toBeUndefined();
    expect(parseMetricsListen("OFF")).toBeUndefined();
    expect(parseMetricsListen("9471")).toEqual({ host: "127.0.0.1", port: 9471 });
    expect(parseMetricsListen("0.0.0.0:9471")).toEqual({ host: "0.0.0.0", port: 9471 });
    expect(parseMetricsListen("localhost:9471")).toEqual({ host: "localhost", port: 9471 });
    expect(parseMetricsListen("[::1]:9471")).toEqual({ host: "::1", port: 9471 });
    expect(formatMetricsListen({ host: "::1", port: 9471 })).toBe("[::1]:9471");
    expect(formatMetricsListen({ host: "10.0.0.1", port: 9471 })).toBe("10.0.0.1:9471");
  });

  it("refuses anything else, naming the option", () => {
    for (const bad of ["", "on", "0", "65536", "host.example:9471", "::1:9471", "1.2.3:9471", "127.0.0.1:", "127.0.0.1:http"]) {
      expect(() => parseMetricsListen(bad, "--metrics"), bad).toThrow(`--metrics: want off, PORT or ADDRESS:PORT (e.g. 127.0.0.1:9471), not ${JSON.stringify(bad)}`);
    }
  });
});

describe("MetricsServer (a real listener on loopback, port 9490)", () => {
  it("serves /metrics from the render callback, 404 elsewhere, 405 for other methods, 500 with the error's message", async () => {
    let fail = false;
    const server = await MetricsServer.start({ host: "127.0.0.1", port: 9490 }, async () => {
      if (fail) throw new Error("status read failed");
      return { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "up 1\n" };
    });
    try {
      const base = `http://127.0.0.1:${server.address.port}`;
      const ok = await fetch(`${base}/metrics`);
      expect(ok.status).toBe(200);
      expect(ok.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      expect(await ok.text()).toBe("up 1\n");
      expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
      expect(await (await fetch(`${base}/`)).text()).toContain("/metrics");
      expect((await fetch(`${base}/other`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
      fail = true;
      const broken = await fetch(`${base}/metrics`);
      expect(broken.status).toBe(500);
      expect(await broken.text()).toBe("status read failed\n");
    } finally {
      await server.close();
    }
    await expect(fetch("http://127.0.0.1:9490/metrics")).rejects.toThrow();
  });

  it("a port in use is one error line naming the address", async () => {
    const taken = createServer().listen(9491, "127.0.0.1");
    await new Promise((r) => taken.once("listening", r));
    try {
      await expect(MetricsServer.start({ host: "127.0.0.1", port: 9491 }, async () => ({ contentType: "text/plain", body: "" }))).rejects.toThrow(
        "metrics: cannot listen on 127.0.0.1:9491: address in use",
      );
    } finally {
      taken.close();
    }
  });
});
