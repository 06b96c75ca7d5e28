import { describe, expect, it } from "vitest";
import { curlCommand, requestUrl, shQuote } from "./curl";
import type { FullEntry } from "./types";

const id = { ip: "127.0.10.2", port: 8080, name: "api", namespace: "shop", pod: "api-1", service: "api", workload: "api", node: "node-a" };

function entry(over: Partial<FullEntry>): FullEntry {
  return {
    id: "X",
    ts: "",
    ts_us: 0,
    protocol: "http",
    method: "GET",
    path: "/api/v1/orders?x=1&y=[2]",
    status: 200,
    status_text: "OK",
    elapsed_us: 10,
    node: "node-a",
    capture: "pcap",
    request_size: 10,
    response_size: 10,
    src: { ...id, ip: "127.0.10.1", port: 40000 },
    dst: id,
    request_headers: [
      { name: "Host", value: "api.shop:8080" },
      { name: "Authorization", value: "Token tk_live_4f9a'x" },
    ],
    response_headers: [],
    request_body: null,
    response_body: null,
    request: {},
    response: {},
    ...over,
  };
}

describe("shell quoting", () => {
  it("quotes what the shell would interpret", () => {
    expect(shQuote("GET")).toBe("GET");
    expect(shQuote("a b")).toBe("'a b'");
    expect(shQuote("it's")).toBe("'it'\\''s'");
    expect(shQuote("$(rm -rf /)")).toBe("'$(rm -rf /)'");
    expect(shQuote("")).toBe("''");
    expect(shQuote("x\ny")).toBe("'x\ny'");
  });
});

describe("copy as curl", () => {
  it("uses the Host header and the exact path", () => {
    expect(requestUrl(entry({}))).toBe("http://api.shop:8080/api/v1/orders?x=1&y=[2]");
    expect(requestUrl(entry({ request_headers: [] }))).toBe("http://127.0.10.2:8080/api/v1/orders?x=1&y=[2]");
  });

  it("sends the method, every header and the body", () => {
    const c = curlCommand(
      entry({ method: "POST", request_body: { encoding: "utf8", data: '{"a":"it\'s"}', truncated: false, size: 12 } }),
    );
    expect(c).toBe(
      [
        "curl --globoff --path-as-is",
        "-X POST",
        "'http://api.shop:8080/api/v1/orders?x=1&y=[2]'",
        "-H 'Host: api.shop:8080'",
        "-H 'Authorization: Token tk_live_4f9a'\\''x'",
        "--data-binary '{\"a\":\"it'\\''s\"}'",
      ].join(" \\\n  "),
    );
  });

  it("pipes binary bodies through printf and skips pseudo headers", () => {
    const c = curlCommand(
      entry({
        protocol: "http2",
        request_headers: [
          { name: ":authority", value: "h2.local" },
          { name: ":path", value: "/p" },
          { name: "content-type", value: "application/grpc" },
          { name: "x-empty", value: "" },
        ],
        request_body: { encoding: "base64", data: btoa("\u0000\u0001A'"), truncated: false, size: 4 },
      }),
    );
    expect(c.startsWith("printf '%b' '\\0000\\0001A\\0047' | curl --globoff --path-as-is \\\n  --http2-prior-knowledge")).toBe(true);
    expect(c).toContain("'http://h2.local/api/v1/orders?x=1&y=[2]'");
    expect(c).not.toContain(":path");
    expect(c).toContain("-H 'x-empty;'");
    expect(c).toContain("--data-binary @-");
  });

  it("drops Content-Length of a truncated body and uses --head for HEAD", () => {
    const c = curlCommand(
      entry({
        method: "PUT",
        request_headers: [{ name: "Content-Length", value: "999999" }],
        request_body: { encoding: "utf8", data: "abc", truncated: true, size: 3 },
      }),
    );
    expect(c).not.toContain("Content-Length");
    expect(curlCommand(entry({ method: "HEAD" }))).toContain("--head");
  });
});
