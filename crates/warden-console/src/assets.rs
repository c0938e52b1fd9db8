//! The web UI and the OpenAPI document (generated from the handlers' types, see `openapi`),
//! compiled into the binary: no separate web server.
//!
//! The UI is native ES modules loaded by `<script type="module">` with no build step: the
//! browser fetches `js/main.js` and follows its imports, all from `/assets/` (the CSP allows
//! scripts from 'self' only, none inline). `FILES` is the one list of what is served; a test
//! checks it against the `assets/` folder both ways.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

const INDEX: &str = include_str!("../assets/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A module under `assets/js/`: its path, the JavaScript content type, its text.
macro_rules! js {
    ($name:literal) => {
        (
            concat!("js/", $name),
            JS,
            include_str!(concat!("../assets/js/", $name)),
        )
    };
}

/// Every file under `/assets/`: path below `assets/`, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("../assets/app.css")),
    js!("main.js"),
    js!("state.js"),
    js!("types.js"),
    js!("dom.js"),
    js!("api.js"),
    js!("live.js"),
    js!("sound.js"),
    js!("queue.js"),
    js!("incident.js"),
    js!("clients.js"),
    js!("ooh.js"),
    js!("admin.js"),
    js!("users.js"),
    js!("devices.js"),
    js!("audit.js"),
    js!("rejected.js"),
    js!("pages.js"),
    js!("account.js"),
    js!("oncall.js"),
];

/// Files in `assets/` that are not served under `/assets/`: the page itself (served at `/`),
/// the OpenAPI document's introduction (compiled into the generated document) and
/// documentation for people.
#[cfg(test)]
const NOT_UNDER_ASSETS: &[&str] = &["index.html", "openapi-intro.md", "TESTIDS.md"];

fn typed(ct: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}

fn served(path: &str) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, ct, body)) => typed(ct, body),
        None => ApiError::not_found(format!("asset {path:?}")).into_response(),
    }
}

/// `GET /`.
pub async fn index() -> Response {
    typed("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    served(&name)
}

/// `GET /assets/js/{file}`: the UI's modules.
pub async fn module(Path(name): Path<String>) -> Response {
    served(&format!("js/{name}"))
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "Meta", operation_id = "getOpenApi",
    summary = "This OpenAPI document",
    description = "Roles: none (no session needed).",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = Object),
    )
)]
pub async fn openapi() -> Response {
    typed("application/json", crate::openapi::document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path as FsPath;

    use super::{FILES, NOT_UNDER_ASSETS};

    fn walk(dir: &FsPath, base: &FsPath, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read assets dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("under assets");
                out.insert(rel.to_str().expect("utf-8 name").replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_in_the_assets_folder_is_served_and_every_served_file_is_in_it() {
        let base = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = BTreeSet::new();
        walk(&base, &base, &mut on_disk);
        let mut listed: BTreeSet<String> = FILES.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        assert_eq!(listed.len(), FILES.len(), "a file is listed twice");
        listed.extend(NOT_UNDER_ASSETS.iter().map(|n| (*n).to_owned()));
        assert_eq!(on_disk, listed);
    }

    /// types.js names every schema of the OpenAPI document, so the UI's JSDoc types cannot
    /// silently fall behind the API (regenerate the typedefs when a schema is added).
    #[test]
    fn the_ui_has_a_typedef_for_every_openapi_schema() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::openapi::document()).expect("the OpenAPI document");
        let types = FILES
            .iter()
            .find(|(n, _, _)| *n == "js/types.js")
            .map(|(_, _, body)| *body)
            .expect("types.js is served");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let missing: Vec<&String> = schemas
            .keys()
            .filter(|name| {
                !types
                    .lines()
                    .any(|l| l.contains("@typedef {") && l.ends_with(&format!("}} {name}")))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "types.js has no typedef for {missing:?}"
        );
    }

    #[test]
    fn modules_are_served_as_javascript_and_import_only_served_modules() {
        for (name, ct, body) in FILES {
            if !name.starts_with("js/") {
                continue;
            }
            assert!(ct.starts_with("text/javascript"), "{name}: {ct}");
            assert!(
                body.starts_with("// @ts-check\n"),
                "{name} is not type-checked"
            );
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .rsplit_once(" from \"./")
                    .and_then(|(_, rest)| rest.strip_suffix("\";"))
                    .unwrap_or_else(|| panic!("{name}: unexpected import form: {line}"));
                let path = format!("js/{target}");
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == path),
                    "{name} imports {path}, which is not served"
                );
            }
        }
    }
}
