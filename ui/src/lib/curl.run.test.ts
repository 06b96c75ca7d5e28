// Runs the generated command with bash and curl against a local server: the shell quoting and
// the binary body survive for real.
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlCommand } from "./curl";
import type { FullEntry } from "./types";

let hasCurl = true;
try {
  execFileSync("curl", ["--version"], { stdio: "ignore" });
} catch {
  hasCurl = false;
}

interface Got {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Buffer;
}
let got: Got[] = [];
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    got.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) });
    res.end("ok");
  });
});
let port = 0;
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => server.close());

const id = { ip: "127.0.0.1", port: 0, name: null, namespace: null, pod: null, service: null, workload: null, node: null };

function entry(over: Partial<FullEntry>): FullEntry {
  return {
    id: "X",
    ts: "",
    ts_us: 0,
    protocol: "http",
    method: "POST",
    path: "/a/../b/[x]?q='1'&r=$(id)",
    status: 200,
    status_text: "OK",
    elapsed_us: 1,
    node: null,
    capture: "pcap",
    request_size: 0,
    response_size: 0,
    src: id,
    dst: { ...id, port },
    request_headers: [],
    response_headers: [],
    request_body: null,
    response_body: null,
    request: {},
    response: {},
    ...over,
  };
}

// Async: the server answers on this process's event loop.
async function run(cmd: string): Promise<Got> {
  got = [];
  await promisify(execFile)("bash", ["-c", `${cmd} -sS -o /dev/null --max-time 5`]);
  expect(got).toHaveLength(1);
  return got[0];
}

describe.skipIf(!hasCurl)("copy as curl, run by bash", () => {
  it("sends the exact method, path, headers and text body", async () => {
    const body = `{"it's": "a \\"quote\\"", "cmd": "$(rm -rf /) \`x\`", "nl": "a\nb"}`;
    const e = entry({
      request_headers: [
        { name: "Host", value: `127.0.0.1:${port}` },
        { name: "Authorization", value: "Token tk_live_4f9a'; echo pwned" },
        { name: "X-Dollar", value: "$HOME !x" },
      ],
      request_body: { encoding: "utf8", data: body, truncated: false, size: body.length },
    });
    const g = await run(curlCommand(e));
    expect(g.method).toBe("POST");
    expect(g.url).toBe("/a/../b/[x]?q='1'&r=$(id)");
    expect(g.headers.authorization).toBe("Token tk_live_4f9a'; echo pwned");
    expect(g.headers["x-dollar"]).toBe("$HOME !x");
    expect(g.body.toString("utf8")).toBe(body);
  });

  it("sends a binary body byte for byte", async () => {
    const bytes = Buffer.from([0, 1, 2, 0x27, 0x25, 0x5c, 0x7f, 0x80, 0xff, 0x0a, 0x41]);
    const e = entry({
      method: "PUT",
      path: "/bin",
      request_headers: [{ name: "Host", value: `127.0.0.1:${port}` }],
      request_body: { encoding: "base64", data: bytes.toString("base64"), truncated: false, size: bytes.length },
    });
    const g = await run(curlCommand(e));
    expect(g.method).toBe("PUT");
    expect([...g.body]).toEqual([...bytes]);
  });
});
