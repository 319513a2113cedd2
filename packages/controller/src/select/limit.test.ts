import { describe, expect, it } from "vitest";
import { LimitError, parseLimit, selectHosts, selectLimit, type Selectable } from "./limit.ts";

/** Hosts as the inventory gives them (Host's name, groups, role, labels). */
const hosts: Selectable[] = [
  { name: "gw1", groups: ["edge"], role: "backend", labels: { rack: "a", room: "r1" } },
  { name: "hv1", groups: ["rack-a", "gpu"], role: "vmhost", labels: { rack: "a", room: "r1" } },
  { name: "hv2", groups: ["rack-a"], role: "vmhost", labels: { rack: "a", room: "r2" } },
  { name: "hv3", groups: ["rack-b", "gpu"], role: "vmhost", labels: { rack: "b", room: "r2" } },
  { name: "hv4", groups: ["rack-b"], role: "vmhost", labels: {} },
];
const names = (limit: string) => [...selectLimit(hosts, limit, "lab")].sort();

describe("--limit (select/limit.ts)", () => {
  it("unions plain terms, separated by , or : (Ansible's a:b)", () => {
    expect(names("hv1,hv2")).toEqual(["hv1", "hv2"]);
    expect(names("hv1:gw1")).toEqual(["gw1", "hv1"]);
    expect(names("backend")).toEqual(["gw1"]);
    expect(names("gpu")).toEqual(["hv1", "hv3"]);
    expect(names("hv?")).toEqual(["hv1", "hv2", "hv3", "hv4"]);
  });

  it("& intersects and ! excludes, applied after the union whatever their place (Ansible's order)", () => {
    expect(names("vmhost:&gpu")).toEqual(["hv1", "hv3"]);
    expect(names("vmhost:!gpu")).toEqual(["hv2", "hv4"]);
    expect(names("!gpu:vmhost")).toEqual(["hv2", "hv4"]);
    expect(names("rack-a:rack-b:&gpu:!hv3")).toEqual(["hv1"]);
    // Only exclusions: all hosts but those (Ansible starts from "all").
    expect(names("!vmhost")).toEqual(["gw1"]);
  });

  it("label selectors key=value match the host's labels (value a glob); a host without the key never matches", () => {
    expect(names("rack=a")).toEqual(["gw1", "hv1", "hv2"]);
    expect(names("room=r*:&rack=b")).toEqual(["hv3"]);
    expect(names("vmhost:!rack=a")).toEqual(["hv3", "hv4"]);
    expect(names("rack=*")).toEqual(["gw1", "hv1", "hv2", "hv3"]);
  });

  it("only * and ? are special: brackets, braces, extglobs, ~regex and ranges are literal (and match nothing)", () => {
    expect(selectHosts(hosts, "hv[12],hv{1,2},+(hv)1,~hv.*").unmatched).toEqual(["hv[12]", "hv{1", "2}", "+(hv)1", "~hv.*"]);
  });

  it("names each term matching no host, and a limit that selects nothing", () => {
    expect(() => selectLimit(hosts, "hv1,db*,rack=z", "lab")).toThrow(new LimitError("--limit db*, rack=z: match no host, group, role or label of site lab"));
    expect(() => selectLimit(hosts, "vmhost:&!x", "lab")).toThrow(/one operator per term/);
    expect(() => selectLimit(hosts, "gpu:&backend", "lab")).toThrow(new LimitError("--limit gpu:&backend selects no host of site lab"));
    expect(() => selectLimit(hosts, "!hv*,!gw1", "lab")).toThrow(/selects no host of site lab/);
  });

  it("refuses terms it cannot read, naming them", () => {
    expect(() => parseLimit("hv1:&")).toThrow('--limit "&": "&" needs a pattern after it');
    expect(() => parseLimit("!")).toThrow(/"!" needs a pattern/);
    expect(() => parseLimit("Rack=a")).toThrow(/"Rack" is not a label key/);
    expect(() => parseLimit("=a")).toThrow(/"" is not a label key/);
    expect(() => parseLimit("rack=")).toThrow(/give the label's value/);
    expect(() => parseLimit(" , :")).toThrow(/--limit is empty/);
    expect(parseLimit(["hv1", "&rack=a:!hv2"])).toEqual([
      { op: "or", text: "hv1", pattern: "hv1" },
      { op: "and", text: "&rack=a", label: { key: "rack", value: "a" } },
      { op: "not", text: "!hv2", pattern: "hv2" },
    ]);
  });

  it("selects among enrolled hosts the inventory does not list, by name only", () => {
    expect([...selectHosts([{ name: "stray1" }, ...hosts], "stray*,rack=b").hosts].sort()).toEqual(["hv3", "stray1"]);
  });
});
