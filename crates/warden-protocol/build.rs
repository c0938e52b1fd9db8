//! Turns `data/contact-id-codes.tsv` (a verbatim copy of the shared protocol vectors' code
//! table) into a sorted static array, so the table has one source and lookups are a binary
//! search with no start-up cost.

use std::fmt::Write as _;
use std::{env, fs, path::Path};

fn main() {
    let src = "data/contact-id-codes.tsv";
    println!("cargo::rerun-if-changed={src}");
    let text = fs::read_to_string(src).expect("read data/contact-id-codes.tsv");
    let mut rows: Vec<(u16, String)> = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols.len() >= 4,
            "{src}:{}: expected at least 4 columns",
            n + 1
        );
        let code: u16 = cols[0]
            .parse()
            .unwrap_or_else(|_| panic!("{src}:{}: bad code", n + 1));
        let data = match cols[2] {
            "user" => "DataField::User",
            "zone" => "DataField::Zone",
            "" => "DataField::Unspecified",
            other => panic!("{src}:{}: unknown data field {other:?}", n + 1),
        };
        let (mut sia_new, mut sia_restore) = (None, None);
        for part in cols[3].split_whitespace() {
            match part.split_once("->") {
                Some(("1", c)) => sia_new = Some(c.to_owned()),
                Some(("3", c)) => sia_restore = Some(c.to_owned()),
                _ => panic!("{src}:{}: bad SIA mapping {part:?}", n + 1),
            }
        }
        let mut row = String::new();
        write!(
            row,
            "CidCode {{ code: {code}, description: {:?}, data: {data}, sia_new: {:?}, sia_restore: {:?} }}",
            cols[1], sia_new, sia_restore
        )
        .expect("write to string");
        rows.push((code, row));
    }
    rows.sort_by_key(|r| r.0);
    for w in rows.windows(2) {
        assert!(w[0].0 != w[1].0, "{src}: duplicate code {}", w[0].0);
    }
    let mut out = String::from("pub(crate) static CID_CODES: &[CidCode] = &[\n");
    for (_, row) in rows {
        writeln!(out, "    {row},").expect("write to string");
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("cid_codes.rs");
    fs::write(dest, out).expect("write cid_codes.rs");
}
