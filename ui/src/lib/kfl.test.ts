import { describe, expect, it } from "vitest";
import {
  appendClause,
  applyCompletion,
  caretContext,
  charToUtf16,
  eqClause,
  hasTopLevelLowPrecedence,
  headerField,
  kflLiteral,
  kflString,
  nameSuggestions,
} from "./kfl";

describe("KFL strings and clauses", () => {
  it("escapes backslashes and quotes", () => {
    expect(kflString("plain")).toBe('"plain"');
    expect(kflString('say "hi"')).toBe('"say \\"hi\\""');
    expect(kflString("C:\\dir\\")).toBe('"C:\\\\dir\\\\"');
    expect(kflString("a\\\"b")).toBe('"a\\\\\\"b"');
    expect(kflString("ünï 'x'")).toBe("\"ünï 'x'\"");
  });

  it("builds header clauses", () => {
    expect(eqClause(headerField(false, "Authorization"), "Token tk_live_4f9a")).toBe(
      'request.headers["Authorization"] == "Token tk_live_4f9a"',
    );
    expect(eqClause(headerField(true, 'X-"odd"'), 'v"1')).toBe('response.headers["X-\\"odd\\""] == "v\\"1"');
    expect(eqClause("response.status", 503)).toBe("response.status == 503");
    expect(eqClause("src.pod", null)).toBe("src.pod == nil");
    expect(kflLiteral(true)).toBe("true");
  });

  it("appends include and exclude clauses", () => {
    expect(appendClause("", 'src.pod == "a"')).toBe('src.pod == "a"');
    expect(appendClause("  ", 'src.pod == "a"', true)).toBe('!(src.pod == "a")');
    expect(appendClause("http", "response.status == 500")).toBe("http and response.status == 500");
    expect(appendClause("http", "response.status == 500", true)).toBe("http and !(response.status == 500)");
    expect(appendClause("http or dns", "node == \"n\"")).toBe('(http or dns) and node == "n"');
    expect(appendClause("http || dns", "x == 1")).toBe("(http || dns) and x == 1");
    expect(appendClause('path == "a or b"', "x == 1")).toBe('path == "a or b" and x == 1');
    expect(appendClause("(http or dns) and tls", "x == 1")).toBe("(http or dns) and tls and x == 1");
    expect(appendClause("color == 1", "x == 1")).toBe("color == 1 and x == 1");
  });

  it("finds low-precedence operators only at the top level", () => {
    expect(hasTopLevelLowPrecedence("a and (b or c)")).toBe(false);
    expect(hasTopLevelLowPrecedence("a or b")).toBe(true);
    expect(hasTopLevelLowPrecedence("a ? b : c")).toBe(true);
    expect(hasTopLevelLowPrecedence("path == 'x || y'")).toBe(false);
    expect(hasTopLevelLowPrecedence('path == "\\" or "')).toBe(false);
  });

  it("maps character positions to UTF-16 indexes", () => {
    expect(charToUtf16("abc", 2)).toBe(2);
    expect(charToUtf16('"😀" ==', 3)).toBe(4);
    expect(charToUtf16("ab", 9)).toBe(2);
  });
});

describe("autocomplete", () => {
  it("completes names", () => {
    const ctx = caretContext("http and src.po", 15);
    expect(ctx).toMatchObject({ kind: "field", start: 9, end: 15, prefix: "src.po" });
    expect(nameSuggestions("src.po")).toContain("src.pod");
    const r = applyCompletion("http and src.po", ctx, "src.pod");
    expect(r).toEqual({ text: "http and src.pod", caret: 16 });
  });

  it("completes values after a comparison, quoting them", () => {
    const t = 'src.namespace == "sh';
    const ctx = caretContext(t, t.length);
    expect(ctx).toMatchObject({ kind: "value", field: "src.namespace", prefix: "sh", quoted: true });
    expect(applyCompletion(t, ctx, 'sh"op').text).toBe('src.namespace == "sh\\"op"');
    const t2 = "protocol == ";
    expect(caretContext(t2, t2.length)).toMatchObject({ kind: "value", field: "protocol", prefix: "" });
  });

  it("does not complete inside a string", () => {
    const t = 'path == "/api/users and src';
    expect(caretContext(t, t.length).kind).toBe("none");
  });

  it("puts the caret inside header templates", () => {
    const ctx = caretContext("request.hea", 11);
    const r = applyCompletion("request.hea", ctx, 'request.headers["…"]');
    expect(r.text).toBe('request.headers[""]');
    expect(r.caret).toBe(17);
  });
});
