//! File pruning by the catalog's per-hour tag index: a filter that requires `protocol`, `node`,
//! a namespace or a service to be one of a few values only needs the files whose tags hold one
//! of them, before DataFusion opens any footer.

use std::collections::BTreeSet;

use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use wiretrail_ingest::Snapshot;
use wiretrail_storage::{Catalog, StorageError, TagKind};

fn tag_of(column: &str) -> Option<TagKind> {
    Some(match column {
        "protocol" => TagKind::Protocol,
        "node" => TagKind::Node,
        "src_namespace" | "dst_namespace" => TagKind::Namespace,
        "src_service" | "dst_service" => TagKind::Service,
        _ => return None,
    })
}

fn string_lit(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => {
            Some(s.clone())
        }
        Expr::Literal(ScalarValue::Dictionary(_, v), _) => {
            string_lit(&Expr::Literal(v.as_ref().clone(), None))
        }
        Expr::Cast(c) => string_lit(&c.expr),
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        _ => None,
    }
}

/// `(tag, values)` when `e` holds only if the tag is one of `values`.
fn required(e: &Expr) -> Option<(TagKind, BTreeSet<String>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Eq => {
                let (c, v) = match (column_name(left), column_name(right)) {
                    (Some(c), None) => (c, string_lit(right)?),
                    (None, Some(c)) => (c, string_lit(left)?),
                    _ => return None,
                };
                Some((tag_of(c)?, [v].into()))
            }
            Operator::Or => {
                let (k1, mut v1) = required(left)?;
                let (k2, v2) = required(right)?;
                (k1 == k2).then(|| {
                    v1.extend(v2);
                    (k1, v1)
                })
            }
            _ => None,
        },
        Expr::InList(l) if !l.negated => {
            let kind = tag_of(column_name(&l.expr)?)?;
            let values = l.list.iter().map(string_lit).collect::<Option<_>>()?;
            Some((kind, values))
        }
        _ => None,
    }
}

/// Removes from `snap.files` the files the tag index rules out for `filter`; returns how many.
pub fn prune_by_tags(
    catalog: &Catalog,
    snap: &mut Snapshot,
    filter: Option<&Expr>,
) -> Result<usize, StorageError> {
    let (Some(filter), Some(first), Some(last)) = (
        filter,
        snap.files.iter().map(|f| f.min_ts).min(),
        snap.files.iter().map(|f| f.max_ts).max(),
    ) else {
        return Ok(0);
    };
    let before = snap.files.len();
    for conjunct in split_conjunction(filter) {
        if let Some((kind, values)) = required(conjunct) {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let keep = catalog.files_with_tag(kind, &values, first, last.saturating_add(1))?;
            snap.files.retain(|f| keep.contains(&f.file_id));
        }
    }
    Ok(before - snap.files.len())
}
