import { describe, expect, it } from "vitest";
import { diffMaps, edgeKfl, foldTop, nodeKfl, scoped, sideClause } from "./mapkfl";
import { parseProm, metricSum } from "./prom";
import type { MapEdge, MapNode } from "./types";

const n = (id: string, name: string, namespace: string, kind: string, count = 1): MapNode => ({ id, name, namespace, kind, count, bytes: 0 });
const e = (source: string, target: string, count: number, errors = 0, p99: number | null = 100): MapEdge => ({
  source,
  target,
  protocol: "http",
  count,
  errors,
  bytes: 0,
  p50_us: 10,
  p99_us: p99,
});

describe("service map → KFL", () => {
  it("selects a service by name and namespace", () => {
    expect(sideClause("src", n("shop/api", "api", "shop", "service"), "service")).toBe('src.service == "api" and src.namespace == "shop"');
  });
  it("selects fallbacks exactly: a workload without a service, a kubelet on a node, an address", () => {
    expect(sideClause("src", n("shop/reports", "reports", "shop", "workload"), "service")).toBe(
      '!(src.service != "") and src.workload == "reports" and src.namespace == "shop"',
    );
    expect(sideClause("src", n("kubelet@node-a", "kubelet", "", "workload"), "service")).toBe(
      '!(src.service != "") and src.workload == "kubelet" and !(src.namespace != "") and src.node == "node-a"',
    );
    expect(sideClause("dst", n("10.9.8.7", "10.9.8.7", "", "external"), "pod")).toBe(
      '!(dst.pod != "") and dst.name == "10.9.8.7" and !(dst.node != "")',
    );
    expect(sideClause("dst", n("shop", "shop", "", "namespace"), "namespace")).toBe('dst.namespace == "shop"');
    expect(sideClause("dst", n("node-a", "node-a", "", "node"), "node")).toBe('dst.node == "node-a"');
  });
  it("builds edge and node filters and scopes them", () => {
    const nodes = [n("shop/frontend", "frontend", "shop", "service"), n("shop/api", "api", "shop", "service")];
    const k = edgeKfl({ source: "shop/frontend", target: "shop/api", protocol: "http" }, nodes, "service");
    expect(k).toBe('src.service == "frontend" and src.namespace == "shop" and dst.service == "api" and dst.namespace == "shop" and protocol == "http"');
    const nk = nodeKfl("shop/api", nodes, "service");
    expect(nk).toBe('(src.service == "api" and src.namespace == "shop") or (dst.service == "api" and dst.namespace == "shop")');
    expect(scoped("http or dns", nk)).toBe(`(http or dns) and (${nk})`);
    expect(scoped("", k)).toBe(k);
  });
});

describe("top-N and compare", () => {
  it("folds the quiet nodes into (other)", () => {
    const nodes = [n("a", "a", "", "external", 10), n("b", "b", "", "external", 5), n("c", "c", "", "external", 2), n("d", "d", "", "external", 1)];
    const edges = [e("a", "b", 5), e("a", "c", 2, 1, 300), e("a", "d", 1, 0, 500)];
    const f = foldTop(nodes, edges, 3);
    expect(f.folded).toBe(2);
    expect(f.nodes.map((x) => x.id)).toEqual(["a", "b", "(other)"]);
    const other = f.edges.find((x) => x.target === "(other)")!;
    expect(other).toMatchObject({ count: 3, errors: 1, p99_us: 500 });
    expect(foldTop(nodes, edges, 10).nodes).toBe(nodes);
  });

  it("diffs two windows", () => {
    const rows = diffMaps([e("a", "b", 5), e("a", "c", 3, 2), e("x", "y", 1)], [e("a", "b", 5), e("a", "c", 3, 0), e("r", "s", 4)]);
    const by = Object.fromEntries(rows.map((r) => [`${r.edge.source}-${r.edge.target}`, r]));
    expect(by["a-b"].change).toBe("same");
    expect(by["a-c"]).toMatchObject({ change: "changed", dErrors: 2, dCount: 0 });
    expect(by["x-y"]).toMatchObject({ change: "added", dCount: 1 });
    expect(by["r-s"]).toMatchObject({ change: "removed", dCount: -4 });
  });
});

describe("Prometheus text", () => {
  it("parses samples with labels and sums them", () => {
    const s = parseProm(
      '# HELP x y\n# TYPE x counter\nwiretrail_ingest_rows_total 42\nwiretrail_capture_enabled{reason="no_capture"} 0\nwiretrail_agent_kernel_drops_total 3\nwiretrail_agent_kernel_drops_total{if="eth0"} 4\nh_bucket{le="+Inf"} 7\n',
    );
    expect(metricSum(s, "wiretrail_ingest_rows_total")).toBe(42);
    expect(metricSum(s, "wiretrail_agent_kernel_drops_total")).toBe(7);
    expect(s.find((x) => x.name === "wiretrail_capture_enabled")!.labels).toEqual({ reason: "no_capture" });
    expect(metricSum(s, "missing")).toBeNull();
  });
});
