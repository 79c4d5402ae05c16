//! Test helpers shared by the Linux metric tests: a reader for gmond's XML feed lines.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// One `<METRIC>` element of a gmond XML dump with its EXTRA_ELEMENTs.
#[derive(Debug, Clone)]
pub struct XmlMetric {
    pub attrs: BTreeMap<String, String>,
    pub extras: BTreeMap<String, String>,
}

impl XmlMetric {
    pub fn attr(&self, k: &str) -> &str {
        self.attrs
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {k} in {self:?}"))
    }
    pub fn extra(&self, k: &str) -> &str {
        self.extras
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no extra {k} in {self:?}"))
    }
}

/// Attributes of one XML start tag line (`<TAG A="x" B="y">`); gmond never escapes quotes
/// inside the attributes these tests read.
pub fn attrs(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].rsplit(' ').next().unwrap_or("").to_string();
        let after = &rest[eq + 2..];
        let end = after.find('"').expect("unterminated attribute");
        out.insert(key, after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// The metrics of host `host` (all hosts if `None`) in an XML dump, keyed by name.
pub fn host_metrics(xml: &str, host: Option<&str>) -> BTreeMap<String, XmlMetric> {
    let mut out = BTreeMap::new();
    let mut in_host = false;
    let mut cur: Option<XmlMetric> = None;
    for line in xml.lines() {
        if line.starts_with("<HOST ") {
            let a = attrs(line);
            in_host = match host {
                None => true,
                Some(h) => a.get("NAME").map(String::as_str) == Some(h),
            };
        } else if line.starts_with("</HOST>") {
            in_host = false;
        } else if in_host && line.starts_with("<METRIC ") {
            cur = Some(XmlMetric {
                attrs: attrs(line),
                extras: BTreeMap::new(),
            });
        } else if in_host && line.starts_with("<EXTRA_ELEMENT ") {
            let a = attrs(line);
            if let (Some(m), Some(n), Some(v)) = (cur.as_mut(), a.get("NAME"), a.get("VAL")) {
                m.extras.insert(n.clone(), v.clone());
            }
        } else if line.starts_with("</METRIC>") {
            if let Some(m) = cur.take() {
                out.insert(m.attr("NAME").to_string(), m);
            }
        }
    }
    out
}

/// Path of a file in the repository's copy of the Ganglia 3.7.2 fixtures.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ganglia-3.7.2")
        .join(rel)
}
