import { describe, expect, it } from "vitest";
import { forbiddenMessage, normalizeToken, validTokenChars, withAuth, wsProtocols } from "./auth";

describe("auth headers", () => {
  it("adds Authorization: Bearer with a token", () => {
    expect(withAuth({ Accept: "application/json" }, "wt_abc")).toEqual({ Accept: "application/json", Authorization: "Bearer wt_abc" });
  });
  it("adds nothing without a token", () => {
    expect(withAuth({ Accept: "application/json" }, null)).toEqual({ Accept: "application/json" });
    expect(withAuth(undefined, null)).toEqual({});
    expect(withAuth(undefined, "")).toEqual({});
  });
  it("replaces an Authorization already there (any case)", () => {
    expect(withAuth({ authorization: "Basic x" }, "wt_1")).toEqual({ Authorization: "Bearer wt_1" });
    expect(withAuth([["Content-Type", "application/json"]], "wt_2")).toEqual({ "Content-Type": "application/json", Authorization: "Bearer wt_2" });
  });
  it("takes a Headers object", () => {
    const h = new Headers({ Accept: "text/plain" });
    expect(withAuth(h, "t")).toEqual({ accept: "text/plain", Authorization: "Bearer t" });
  });
});

describe("WebSocket subprotocols", () => {
  it("offers wiretrail beside bearer.<token>", () => {
    expect(wsProtocols("wt_AbC-_9")).toEqual(["wiretrail", "bearer.wt_AbC-_9"]);
  });
  it("offers none without a token", () => {
    expect(wsProtocols(null)).toEqual([]);
    expect(wsProtocols("")).toEqual([]);
  });
  it("accepts base64url tokens as subprotocol tokens, refuses spaces and commas", () => {
    expect(validTokenChars("wt_" + "A-z_0".repeat(9))).toBe(true);
    expect(validTokenChars("wt a")).toBe(false);
    expect(validTokenChars("a,b")).toBe(false);
    expect(validTokenChars("")).toBe(false);
  });
});

describe("token input", () => {
  it("trims and drops a pasted Bearer scheme", () => {
    expect(normalizeToken("  wt_x \n")).toBe("wt_x");
    expect(normalizeToken("Bearer wt_y")).toBe("wt_y");
    expect(normalizeToken("bearer   wt_z ")).toBe("wt_z");
  });
});

describe("403 message", () => {
  it("says the role may not, with the server's reason", () => {
    expect(forbiddenMessage("vera (role viewer) may not POST /api/v1/snapshots: it needs the role admin")).toBe(
      "Your role may not do this: vera (role viewer) may not POST /api/v1/snapshots: it needs the role admin",
    );
    expect(forbiddenMessage(undefined)).toMatch(/^Your role may not/);
  });
});
