import { describe, expect, it } from "vitest";
import { emptyState, parseUrl, toUrl, viewOfPath } from "./url";

describe("URL state", () => {
  it("round-trips every parameter of the traffic view", () => {
    const s = {
      ...emptyState(),
      kfl: 'request.headers["Authorization"] == r"Token.*" and src.pod == "a&b=c"',
      from: "2026-11-25T03:13:34.643854Z",
      to: "2026-11-25T03:13:59.096286Z",
      nodes: ["node-a", "node-b"],
      entry: "01KBX0ABCDEFGHJKMNPQRSTVWX",
      stack: "protocol" as const,
      live: true,
    };
    const url = toUrl(s);
    expect(url.startsWith("/?")).toBe(true);
    const u = new URL(url, "http://x");
    const back = parseUrl(u.pathname, u.search);
    expect(back).toEqual(s);
  });

  it("round-trips the map view with compare window and group-by", () => {
    const s = { ...emptyState(), view: "map" as const, groupBy: "pod" as const, cfrom: "-2h", cto: "-1h", from: "-1h", to: "now", top: 12 };
    const u = new URL(toUrl(s), "http://x");
    expect(u.pathname).toBe("/map");
    expect(u.searchParams.get("group_by")).toBe("pod");
    expect(parseUrl(u.pathname, u.search)).toEqual(s);
  });

  it("leaves defaults out and keeps a fixed order", () => {
    expect(toUrl(emptyState())).toBe("/");
    expect(toUrl({ ...emptyState(), view: "sql", sql: "select 1", to: "now", from: "-15m" })).toBe("/sql?from=-15m&to=now&sql=select+1");
    expect(toUrl({ ...emptyState(), view: "snapshots", entry: "x", live: true })).toBe("/snapshots");
  });

  it("reads paths and ignores bad values", () => {
    expect(viewOfPath("/")).toBe("traffic");
    expect(viewOfPath("/traffic")).toBe("traffic");
    expect(viewOfPath("/map/")).toBe("map");
    expect(viewOfPath("/sql")).toBe("sql");
    const s = parseUrl("/map", "?group_by=galaxy&stack=weird&live=yes&nodes=,a,,b,");
    expect(s.groupBy).toBe("service");
    expect(s.stack).toBe("status");
    expect(s.live).toBe(false);
    expect(s.nodes).toEqual(["a", "b"]);
  });
});
