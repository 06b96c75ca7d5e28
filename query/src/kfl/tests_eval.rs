#[allow(clippy::too_many_arguments)]
fn entry(
    i: u32,
    proto: &str,
    method: Option<&str>,
    path: &str,
    status: Option<i32>,
    headers: &[(&str, &str)],
    src: &str,
    ns: Option<&str>,
) -> Entry {
    let ts = 1_795_576_364_000_000 + i64::from(i) * 1_000_000;
    let mut e = Entry::new(
        EntryId::new(ts, "node-a", i),
        ts,
        if i.is_multiple_of(2) {
            "node-a"
        } else {
            "node-b"
        },
        proto,
        "pcap",
    );
    e.method = method.map(str::to_string);
    e.path = Some(path.to_string());
    e.status = status;
    e.elapsed_us = status.map(|_| i64::from(i) * 100_000);
    e.request_headers = (!headers.is_empty()).then(|| {
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    e.src = Endpoint {
        ip: format!("10.0.0.{i}"),
        port: 40000 + i as u16,
        identity: Identity {
            name: src.into(),
            namespace: ns.map(str::to_string),
            ..Default::default()
        },
    };
    e.dst = Endpoint {
        ip: "10.0.1.1".into(),
        port: 8080,
        identity: Identity {
            name: "api".into(),
            namespace: Some("shop".into()),
            ..Default::default()
        },
    };
    e
}

async fn ctx() -> SessionContext {
    let rows = [
        entry(
            0,
            "http",
            Some("GET"),
            "/api/v1/products/1",
            Some(200),
            &[("User-Agent", "curl/7.88"), ("Authorization", "Bearer abc")],
            "frontend",
            Some("shop"),
        ),
        entry(
            1,
            "http",
            Some("POST"),
            "/api/v1/orders",
            Some(201),
            &[
                ("user-agent", "python-requests"),
                ("authorization", "Token tk_live_1"),
            ],
            "reports",
            Some("shop"),
        ),
        entry(
            2,
            "http",
            Some("GET"),
            "/healthz",
            Some(404),
            &[],
            "kubelet",
            None,
        ),
        entry(
            3,
            "dns",
            Some("A"),
            "api.shop.svc.cluster.local",
            Some(0),
            &[],
            "frontend",
            Some("shop"),
        ),
        entry(
            4,
            "dns",
            Some("AAAA"),
            "redis.infra.shop.svc.cluster.local",
            Some(3),
            &[],
            "api",
            Some("shop"),
        ),
        entry(
            5,
            "http",
            Some("GET"),
            "/api/v1/orders/export?page=2",
            None,
            &[("Authorization", "Token tk_live_2")],
            "frontend",
            Some("shop"),
        ),
        entry(
            6,
            "http",
            Some("DELETE"),
            "/api/v1/cart/9",
            Some(503),
            &[("X-Fault-Abort", "503")],
            "frontend",
            Some("shop"),
        ),
    ];
    let mut b = EntryBatchBuilder::new();
    for r in &rows {
        b.push(r);
    }
    let batch = b.finish().unwrap();
    let ctx = SessionContext::new();
    for u in udfs() {
        ctx.register_udf(u);
    }
    ctx.register_table(
        "entries",
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    ctx
}

async fn matching(ctx: &SessionContext, q: &str) -> Vec<u32> {
    let c = compile(q, &opts()).unwrap_or_else(|e| panic!("{}", e.render(q)));
    let mut df = ctx.table("entries").await.unwrap();
    if let Some(f) = c.filter {
        df = df.filter(f).unwrap();
    }
    let batches = df
        .select_columns(&["src_port"])
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out: Vec<u32> = batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::UInt16Array>()
                .unwrap()
                .clone();
            (0..a.len())
                .map(move |i| u32::from(a.value(i)) - 40000)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn queries_select_the_right_rows() {
    let ctx = ctx().await;
    for (q, want) in [
        ("", vec![0, 1, 2, 3, 4, 5, 6]),
        ("http", vec![0, 1, 2, 5, 6]),
        ("!http", vec![3, 4]),
        ("dns", vec![3, 4]),
        ("http and response.status >= 400", vec![2, 6]),
        ("response.status >= 400", vec![2, 6]),
        ("response.status == \"200\"", vec![0]),
        ("response.status == 200", vec![0]),
        ("!(response.status == 200)", vec![1, 2, 3, 4, 5, 6]),
        ("response.status != 200", vec![1, 2, 3, 4, 6]),
        (
            "request.headers[\"Authorization\"] == r\"Token.*\"",
            vec![1, 5],
        ),
        (
            "request.headers[\"AUTHORIZATION\"] == r\"^Bearer \"",
            vec![0],
        ),
        ("request.headers[\"User-Agent\"] == r\"curl.*\"", vec![0]),
        ("request.headers[\"user-agent\"] == r\"requests\"", vec![1]),
        ("request.headers[\"Authorization\"] != r\"Token\"", vec![0]),
        (
            "!(request.headers[\"Authorization\"] == r\"Token\")",
            vec![2, 3, 4, 6, 0]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        ),
        ("request.headers[\"X-Fault-Abort\"]", vec![6]),
        (
            "dns and request.path.endsWith(\".cluster.local\")",
            vec![3, 4],
        ),
        ("dns and response.status == 3", vec![4]),
        ("request.path.startsWith(\"/api/v1/orders\")", vec![1, 5]),
        ("request.path.contains(\"cart\")", vec![6]),
        ("path.matches(\"^/api/v1/(orders|cart)\")", vec![1, 5, 6]),
        ("request.path == r\"orders\"", vec![1, 5]),
        (
            "http or dns and response.status == 3",
            vec![0, 1, 2, 4, 5, 6],
        ),
        ("(http or dns) and response.status == 3", vec![4]),
        (
            "http and request.method == \"GET\" or dns and request.method == \"AAAA\"",
            vec![0, 2, 4, 5],
        ),
        (
            "src.name == \"frontend\" and dst.namespace == \"shop\"",
            vec![0, 3, 5, 6],
        ),
        ("src.namespace == \"shop\"", vec![0, 1, 3, 4, 5, 6]),
        ("src.namespace != \"shop\"", vec![]),
        ("src.namespace == nil", vec![2]),
        ("src.namespace == dst.namespace", vec![0, 1, 3, 4, 5, 6]),
        ("node.name == \"node-b\"", vec![1, 3, 5]),
        (
            "protocol in [\"dns\"] or response.status in [503]",
            vec![3, 4, 6],
        ),
        ("elapsedTime >= 300", vec![3, 4, 6]),
        ("elapsedTime < 300", vec![0, 1, 2]),
        ("src.port >= 40005", vec![5, 6]),
        (
            "timestamp >= 1795576366000 and timestamp < \"2026-11-25T03:12:48Z\"",
            vec![2, 3],
        ),
        (
            "timestamp >= datetime(\"11/25/2026, 3:12:49.000 AM\")",
            vec![5, 6],
        ),
        ("timestamp > minutes(1)", vec![0, 1, 2, 3, 4, 5, 6]),
        ("timestamp < minutes(1)", vec![]),
        (
            "request.method == \"POST\" && !request.path.startsWith(\"/healthz\")",
            vec![1],
        ),
        ("method == r\"^(PUT|DELETE)$\"", vec![6]),
    ] {
        assert_eq!(matching(&ctx, q).await, want, "{q}");
    }
}

