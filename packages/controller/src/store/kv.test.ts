import { NoRespondersError, RequestError, TimeoutError } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { DecodeError } from "@netfleet/shared";
import { isStoreHiccup, isTransient } from "./kv.ts";

describe("isStoreHiccup: a store request that got no answer, judged by the error's name alone", () => {
  it("nats.js's timeout, no-responders and JetStream-not-enabled errors are hiccups, also as a cause", () => {
    expect(isStoreHiccup(new TimeoutError())).toBe(true);
    expect(isStoreHiccup(new NoRespondersError("$JS.API.STREAM.INFO.KV_x"))).toBe(true);
    // nats.js's JetStreamNotEnabled (jserrors.js), as nats-server's reload makes it: a request with no responder.
    const notEnabled = Object.assign(new Error("JetStream not enabled for account"), { name: "JetStreamNotEnabled" });
    expect(isStoreHiccup(notEnabled)).toBe(true);
    expect(isStoreHiccup(new RequestError("request failed", { cause: new NoRespondersError("$JS.API.DIRECT.GET.KV_x") }))).toBe(true);
  });

  it("a refusal whose text a sender chose is not one, whatever it says; isTransient, which reads texts, would retry it", () => {
    const refused = new DecodeError("nf.lab.enroll.leader1", "site", "facts are for site timeout");
    expect(isStoreHiccup(refused)).toBe(false);
    expect(isTransient(refused)).toBe(true);
    expect(isStoreHiccup(new Error("timeout: no responders, jetstream is not enabled"))).toBe(false);
    expect(isStoreHiccup(new Error("wrapped", { cause: refused }))).toBe(false);
    expect(isStoreHiccup("timeout")).toBe(false);
  });
});
