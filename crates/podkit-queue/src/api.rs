//! The work-queue source API, exactly as chapter 10 defines it:
//!
//! - `GET /api/v1/items` → `{"kind":"ItemList","apiVersion":"v1","items":["item-1",...]}`
//! - `GET /api/v1/items/<name>` → `{"kind":"Item","apiVersion":"v1","data":{...}}`
//!
//! Parsing validates `kind`, `apiVersion` and the types, so a malformed source is reported
//! for what it is. Item names travel percent-escaped in the item URL.

use serde_json::{json, Value};

/// The path of the item list.
pub const ITEMS_PATH: &str = "/api/v1/items";

/// What is wrong with a source's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("\"kind\" is {found}, expected \"{expected}\"")]
    Kind {
        expected: &'static str,
        found: String,
    },
    #[error("\"apiVersion\" is {0}, expected \"v1\"")]
    Version(String),
    #[error("{0}")]
    Shape(String),
}

fn envelope(bytes: &[u8], kind: &'static str) -> Result<serde_json::Map<String, Value>, ApiError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::NotJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(ApiError::Shape("expected a JSON object".into()));
    };
    match object.get("kind") {
        Some(Value::String(k)) if k == kind => {}
        other => {
            return Err(ApiError::Kind {
                expected: kind,
                found: other.map_or("missing".into(), Value::to_string),
            })
        }
    }
    match object.get("apiVersion") {
        Some(Value::String(v)) if v == "v1" => {}
        other => {
            return Err(ApiError::Version(
                other.map_or("missing".into(), Value::to_string),
            ))
        }
    }
    Ok(object)
}

/// Reads an `ItemList` and returns its item names.
pub fn parse_item_list(bytes: &[u8]) -> Result<Vec<String>, ApiError> {
    let object = envelope(bytes, "ItemList")?;
    let Some(Value::Array(items)) = object.get("items") else {
        return Err(ApiError::Shape(
            "\"items\" must be an array of strings".into(),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(name) if !name.is_empty() => Ok(name.clone()),
            other => Err(ApiError::Shape(format!(
                "items[{i}] must be a non-empty string, found {other}"
            ))),
        })
        .collect()
}

/// Reads an `Item` and returns its `data`.
pub fn parse_item(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut object = envelope(bytes, "Item")?;
    object
        .remove("data")
        .ok_or_else(|| ApiError::Shape("\"data\" is missing".into()))
}

/// The `ItemList` document for `names`.
pub fn item_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Value {
    let items: Vec<&str> = names.into_iter().collect();
    json!({"kind": "ItemList", "apiVersion": "v1", "items": items})
}

/// The `Item` document for `data`.
pub fn item(data: Value) -> Value {
    json!({"kind": "Item", "apiVersion": "v1", "data": data})
}

/// What a request to a source asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/items`.
    List,
    /// `GET /api/v1/items/<name>`, the name unescaped.
    Item(String),
    /// Any other path.
    NotFound,
    /// An item path whose escaping is bad.
    BadName,
    /// A method other than GET or HEAD.
    MethodNotAllowed,
}

/// Routes a request of the source API by its method and path.
pub fn route(method: &http::Method, path: &str) -> Route {
    if method != http::Method::GET && method != http::Method::HEAD {
        return Route::MethodNotAllowed;
    }
    let path = path.trim_end_matches('/');
    if path == ITEMS_PATH {
        return Route::List;
    }
    match path
        .strip_prefix(ITEMS_PATH)
        .and_then(|p| p.strip_prefix('/'))
    {
        None => Route::NotFound,
        Some(segment) => unescape_name(segment).map_or(Route::BadName, Route::Item),
    }
}

/// Escapes an item name for a URL path segment: everything but unreserved characters
/// (RFC 3986) as `%XX`.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes [`escape_name`] (and any other `%XX` escaping); `None` for a bad escape or a
/// name that is not UTF-8.
pub fn unescape_name(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_lists_are_validated() {
        assert_eq!(
            parse_item_list(br#"{"kind":"ItemList","apiVersion":"v1","items":["a","b c"]}"#),
            Ok(vec!["a".to_string(), "b c".to_string()])
        );
        assert_eq!(
            parse_item_list(br#"{"kind":"Item","apiVersion":"v1","items":[]}"#),
            Err(ApiError::Kind {
                expected: "ItemList",
                found: "\"Item\"".into()
            })
        );
        assert_eq!(
            parse_item_list(br#"{"kind":"ItemList","apiVersion":"v2","items":[]}"#),
            Err(ApiError::Version("\"v2\"".into()))
        );
        assert!(matches!(
            parse_item_list(br#"{"kind":"ItemList","apiVersion":"v1","items":[1]}"#),
            Err(ApiError::Shape(m)) if m.contains("items[0]")
        ));
        assert!(matches!(
            parse_item_list(b"<html>"),
            Err(ApiError::NotJson(_))
        ));
    }

    #[test]
    fn items_give_their_data() {
        assert_eq!(
            parse_item(br#"{"kind":"Item","apiVersion":"v1","data":{"x":1}}"#),
            Ok(json!({"x": 1}))
        );
        assert!(matches!(
            parse_item(br#"{"kind":"Item","apiVersion":"v1"}"#),
            Err(ApiError::Shape(_))
        ));
        assert_eq!(
            parse_item_list(&serde_json::to_vec(&item_list(["x"])).unwrap()),
            Ok(vec!["x".into()])
        );
        assert_eq!(
            parse_item(&serde_json::to_vec(&item(json!([1]))).unwrap()),
            Ok(json!([1]))
        );
    }

    #[test]
    fn requests_route() {
        use http::Method;
        assert_eq!(route(&Method::GET, "/api/v1/items/"), Route::List);
        assert_eq!(
            route(&Method::GET, "/api/v1/items/a%20b"),
            Route::Item("a b".into())
        );
        assert_eq!(
            route(&Method::HEAD, "/api/v1/items/x"),
            Route::Item("x".into())
        );
        assert_eq!(route(&Method::GET, "/api/v1/itemsx"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/api/v1/items/%G0"), Route::BadName);
        assert_eq!(
            route(&Method::POST, "/api/v1/items"),
            Route::MethodNotAllowed
        );
    }

    #[test]
    fn names_escape_and_come_back() {
        for name in ["plain", "with space", "a/b?c#d%e", "vidéo.mp4", "+plus"] {
            let escaped = escape_name(name);
            assert!(!escaped.contains(['/', ' ', '?', '#']), "{escaped}");
            assert_eq!(unescape_name(&escaped).as_deref(), Some(name));
        }
        assert_eq!(unescape_name("%zz"), None);
        assert_eq!(unescape_name("a%2"), None);
    }
}
