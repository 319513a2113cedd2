/**
 * --live's states on the lab site, from HostViews the agent's own show
 * parsers made of real captured command output (agent show/__fixtures__
 * hosta and backend, observed once into __fixtures__/*-view.json).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HostView, loadInventory } from "@netfleet/shared";
import { buildGraph, liveStates, renderDot, type HostLiveInput, type LiveStates } from "./index.ts";
import { readDot } from "./__fixtures__/pictures.ts";

const REPO = new URL("../../../..", import.meta.url).pathname;
const model = buildGraph(loadInventory(join(REPO, "inventories", "lab")));
const view = (name: string): HostView => HostView.parse(JSON.parse(readFileSync(join(import.meta.dirname, "__fixtures__", `${name}-view.json`), "utf8")));

/** The state of each listed element id. */
const pick = (live: LiveStates, ids: string[]) => Object.fromEntries(ids.map((id) => [id, live[id]?.state]));

describe("live states", () => {
  it("a converged host's elements converged by what its agent sees; an unreachable host's all down; a network between: drift", () => {
    const live = liveStates(
      model,
      new Map<string, HostLiveInput>([
        ["hosta", { health: "converged", view: view("hosta") }],
        ["backend", { health: "converged", view: view("backend") }],
        ["hostb", { health: "unreachable" }],
      ]),
    );
    const hosta = model.elements.filter((e) => e.host === "hosta").map((e) => e.id);
    expect(Object.values(pick(live, hosta))).toEqual(hosta.map(() => "converged"));
    const backend = model.elements.filter((e) => e.host === "backend").map((e) => e.id);
    expect(Object.values(pick(live, backend))).toEqual(backend.map(() => "converged"));
    expect(live["backend/gateway:gateway"]!.reason).toBe("nft table inet netfleet present");
    expect(live["vm:secure/vma1"]!.reason).toBe("port v-vma1 on br-secure with its rules");
    const hostb = model.elements.filter((e) => e.host === "hostb").map((e) => e.id);
    expect(Object.values(pick(live, hostb))).toEqual(hostb.map(() => "down"));
    expect(pick(live, ["net:secure", "net:service", "switch", "outside"])).toEqual({ "net:secure": "drift", "net:service": "drift", switch: undefined, outside: undefined });
  });

  it("what the view shows decides: a member down, a VM without rules or not running, a missing bridge, no nft table; a drifted host's box", () => {
    const a = view("hosta");
    const bent: HostView = {
      ...a,
      links: a.links.map((l) => (l.name === "eth1" ? { ...l, up: false, state: "DOWN" } : l)),
      vmPorts: a.vmPorts.filter((p) => p.port !== "v-vma2").map((p) => (p.port === "v-vma3" ? { ...p, hasRules: false } : p)),
      bridges: a.bridges!.filter((b) => b.name !== "br-datain"),
    };
    const b = view("backend");
    const live = liveStates(
      model,
      new Map<string, HostLiveInput>([
        ["hosta", { health: "drift", view: bent }],
        ["backend", { health: "failed", view: { ...b, nft: { ...b.nft!, exists: false } } }],
        ["hostb", { health: "converged", error: "hostb's agent did not answer within 10 s" }],
      ]),
    );
    expect(pick(live, ["host:hosta", "hosta/nic:eth0", "hosta/nic:eth1", "vm:secure/vma1", "vm:secure/vma3", "vm:service/vma2", "hosta/bridge:br-secure", "hosta/bridge:br-datain"])).toEqual({
      "host:hosta": "drift",
      "hosta/nic:eth0": "converged",
      "hosta/nic:eth1": "down",
      "vm:secure/vma1": "converged",
      "vm:secure/vma3": "drift",
      "vm:service/vma2": "down",
      "hosta/bridge:br-secure": "converged",
      "hosta/bridge:br-datain": "drift",
    });
    expect(live["hosta/nic:eth1"]!.reason).toBe("eth1 is down (DOWN)");
    expect(pick(live, ["host:backend", "backend/gateway:gateway", "backend/exit:wan0"])).toEqual({ "host:backend": "drift", "backend/gateway:gateway": "drift", "backend/exit:wan0": "converged" });
    // A converged host whose agent did not answer: its box converged, its elements unknown, with the reason.
    expect(pick(live, ["host:hostb", "vm:secure/vmb1"])).toEqual({ "host:hostb": "converged", "vm:secure/vmb1": "unknown" });
    expect(live["vm:secure/vmb1"]!.reason).toBe("no view from its agent: hostb's agent did not answer within 10 s");
  });

  it("an OVS bond as bond/show reads it: a member disabled, LACP not negotiated, every member disabled", () => {
    const a = view("hosta");
    const withBond = (bond: NonNullable<HostView["bridges"]>[number]["ports"][number]["bond"]): HostView => ({
      ...a,
      bridges: a.bridges!.map((b) => ({ ...b, ports: b.ports.map((p) => (p.name === "bond0" ? { ...p, bond } : p)) })),
    });
    const real = a.bridges!.flatMap((b) => b.ports).find((p) => p.name === "bond0")!.bond!;
    expect(real).toMatchObject({ lacpStatus: "off", members: [{ name: "eth0", enabled: true }, { name: "eth1", enabled: true }] });
    const states = (v: HostView) => {
      const live = liveStates(model, new Map<string, HostLiveInput>([["hosta", { health: "converged", view: v }]]));
      return [live["hosta/bond:bond0"]!.state, live["hosta/nic:eth0"]!.state, live["hosta/nic:eth1"]!.state, live["hosta/nic:eth1"]!.reason];
    };
    expect(states(withBond(real))).toEqual(["converged", "converged", "converged", "eth1 is up"]);
    const oneDown = { ...real, members: [real.members[0]!, { ...real.members[1]!, enabled: false, mayEnable: false }] };
    expect(states(withBond(oneDown))).toEqual(["drift", "converged", "down", "eth1 disabled in bond bond0 (carrier or LACP partner missing)"]);
    expect(states(withBond({ ...real, lacpStatus: "configured" }))[0]).toBe("drift");
    expect(states(withBond({ ...real, members: real.members.map((m) => ({ ...m, enabled: false })) }))[0]).toBe("down");
  });

  it("the DOT of a live picture carries each element's state as its class and colour, and a legend", () => {
    const live = liveStates(model, new Map<string, HostLiveInput>([["hosta", { health: "converged", view: view("hosta") }], ["hostb", { health: "unreachable" }], ["backend", { health: "drift" }]]));
    const read = readDot(renderDot(model, live));
    for (const e of model.elements) {
      const got = e.kind === "host" ? read.boxes.get(e.id) : read.nodes.get(e.id);
      expect(got!.class!.split(" "), e.id).toContain(live[e.id] ? `nf-${live[e.id]!.state}` : `nf-${e.kind}`);
    }
    expect([...read.nodes.keys()].filter((k) => k.startsWith("legend:")).sort()).toEqual(["legend:converged", "legend:down", "legend:drift", "legend:unknown"]);
  });
});
