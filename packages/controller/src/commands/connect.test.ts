import { describe, expect, it } from "vitest";
import { connectAdvice } from "./connect.ts";

/** An error shaped as nats.js 3 throws it from connect() (name, message, cause), captured against a real nats-server. */
function natsError(name: string, message: string, cause?: { message: string; code: string }): Error {
  const err = new Error(message, cause ? { cause: Object.assign(new Error(cause.message), { code: cause.code }) } : undefined);
  err.name = name;
  return err;
}

describe("connectAdvice: why a controller connection failed, and what to do", () => {
  const next = "Is netfleet serve running? Start it (netfleet serve <site-dir> --state-dir /var/lib/netfleet), or pass --nats URL[,URL...] of the servers it runs";

  it("says what each failure nats.js reports means", () => {
    // nats-server on 33331 with --user a --pass b, dialled as user x.
    expect(connectAdvice(natsError("AuthorizationError", "Authorization Violation"), "/var/lib/netfleet")).toBe(
      "the server refused the controller's credentials (/var/lib/netfleet/secrets.json): is this the state dir of the netfleet serve behind these servers? Pass --state-dir",
    );
    // Nothing listening on 127.0.0.1:33399.
    expect(connectAdvice(natsError("ConnectionError", "connection refused", { message: "connect ECONNREFUSED 127.0.0.1:33399", code: "ECONNREFUSED" }), "/var/lib/netfleet")).toBe(
      `connection refused (nothing listens there). ${next}`,
    );
    // An address nobody answers (10.99.0.254:4222 off the lab), timeout 1500 ms.
    expect(connectAdvice(natsError("TimeoutError", "timeout"), "/var/lib/netfleet")).toBe(`no answer within 3 s. ${next}`);
    // The report: a reset connection.
    expect(connectAdvice(natsError("ConnectionError", "read ECONNRESET", { message: "read ECONNRESET", code: "ECONNRESET" }), "/var/lib/netfleet")).toBe(
      `the connection was reset (not a NATS server, or one refusing this client). ${next}`,
    );
    expect(connectAdvice(natsError("Error", "getaddrinfo ENOTFOUND nats.example", { message: "getaddrinfo ENOTFOUND nats.example", code: "ENOTFOUND" }), "/s")).toMatch(/^the host name does not resolve\. /);
    expect(connectAdvice(new Error("something else"), "/s")).toMatch(/^something else\. Is netfleet serve running\?/);
  });
});
