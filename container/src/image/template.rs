//! The part of Go's text/template that `docker inspect --format` is used
//! with, over a JSON value: `{{.Config.Cmd}}`, `{{json .Config}}`,
//! `{{.RootFS.Layers}}`, `{{index .Config.Labels "k"}}`,
//! `{{join .Config.Env ","}}`, `{{len .RootFS.Layers}}`. Values print as Go
//! prints them: a list as `[a b]`, a map as `map[k:v]`.

use serde_json::Value;

use super::ImageError;

/// Renders `template` against `value`.
pub fn render(template: &str, value: &Value) -> Result<String, ImageError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| err(template, "a `{{` without its `}}`"))?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        out.push_str(&action_value(template, action, value)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks that `template` is well formed (every action closed and of a
/// known form), before there is any value to render it with.
pub fn check(template: &str) -> Result<(), ImageError> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| err(template, "a `{{` without its `}}`"))?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let words = split_words(action).map_err(|r| err(template, &r))?;
        let known = match words.as_slice() {
            [path] => path.starts_with('.'),
            [f, path] => (f == "json" || f == "len") && path.starts_with('.'),
            [f, path, _] => (f == "index" || f == "join") && path.starts_with('.'),
            _ => false,
        };
        if !known {
            return Err(err(template, &format!("`{action}` is not understood")));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

fn err(template: &str, reason: &str) -> ImageError {
    ImageError::Template(format!(
        "cannot use the format {template:?}: {reason} (supported: {{{{.Field.Field}}}}, {{{{json .Field}}}}, {{{{index .Field \"key\"}}}}, {{{{join .Field \",\"}}}}, {{{{len .Field}}}})"
    ))
}

fn action_value(template: &str, action: &str, root: &Value) -> Result<String, ImageError> {
    let words = split_words(action).map_err(|r| err(template, &r))?;
    match words.as_slice() {
        [path] if path.starts_with('.') => Ok(go_string(&lookup(root, path).map_err(|r| err(template, &r))?)),
        [f, path] if f == "json" => {
            let v = lookup(root, path).map_err(|r| err(template, &r))?;
            Ok(serde_json::to_string(&v).unwrap_or_default())
        }
        [f, path] if f == "len" => match lookup(root, path).map_err(|r| err(template, &r))? {
            Value::Array(a) => Ok(a.len().to_string()),
            Value::Object(o) => Ok(o.len().to_string()),
            Value::String(s) => Ok(s.len().to_string()),
            Value::Null => Ok("0".into()),
            _ => Err(err(template, &format!("len of {path}, which has no length"))),
        },
        [f, path, key] if f == "index" => {
            let v = lookup(root, path).map_err(|r| err(template, &r))?;
            let key = unquote(key).ok_or_else(|| err(template, "index takes a quoted key or a number"))?;
            let found = match &v {
                Value::Object(o) => o.get(&key).cloned(),
                Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i).cloned()),
                _ => None,
            };
            Ok(found.map_or_else(|| "<no value>".into(), |v| go_string(&v)))
        }
        [f, path, sep] if f == "join" => {
            let v = lookup(root, path).map_err(|r| err(template, &r))?;
            let sep = unquote(sep).ok_or_else(|| err(template, "join takes a quoted separator"))?;
            match v {
                Value::Array(a) => Ok(a.iter().map(go_string).collect::<Vec<_>>().join(&sep)),
                Value::Null => Ok(String::new()),
                _ => Err(err(template, &format!("join of {path}, which is not a list"))),
            }
        }
        _ => Err(err(template, &format!("`{action}` is not understood"))),
    }
}

fn split_words(action: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut w = String::from('"');
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => w.extend(chars.next().map(|c| match c {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    })),
                    Some('"') => break,
                    Some(c) => w.push(c),
                    None => return Err("a string without its closing quote".into()),
                }
            }
            w.push('"');
            words.push(w);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            words.push(w);
        }
    }
    Ok(words)
}

fn unquote(word: &str) -> Option<String> {
    if let Some(inner) = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        return Some(inner.to_string());
    }
    word.parse::<i64>().ok().map(|n| n.to_string())
}

fn lookup(root: &Value, path: &str) -> Result<Value, String> {
    if path == "." {
        return Ok(root.clone());
    }
    let mut v = root;
    for field in path.strip_prefix('.').ok_or_else(|| format!("`{path}` does not start with ."))?.split('.') {
        v = match v {
            Value::Object(o) => match o.get(field) {
                Some(x) => x,
                None => return Err(format!("there is no field {field} here ({path})")),
            },
            Value::Null => return Ok(Value::Null),
            _ => return Err(format!("{field} in {path} is a field of something that has none")),
        };
    }
    Ok(v.clone())
}

/// A value as Go's fmt prints it with `%v`.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_string).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut keys: Vec<_> = o.keys().collect();
            keys.sort();
            format!("map[{}]", keys.iter().map(|k| format!("{k}:{}", go_string(&o[*k]))).collect::<Vec<_>>().join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_inspect_formats() {
        let v = json!({"Id": "sha256:ab", "Config": {"Cmd": ["/bin/sh", "-c", "x"], "Env": ["A=1", "B=2"], "Labels": {"b": "2", "a": "1"}}, "RootFS": {"Type": "layers", "Layers": ["sha256:1", "sha256:2"]}, "Size": 42});
        let r = |t: &str| render(t, &v).unwrap_or_else(|e| format!("error: {e}"));
        assert_eq!(r("{{.Config.Cmd}}"), "[/bin/sh -c x]");
        assert_eq!(r("{{json .Config.Cmd}}"), r#"["/bin/sh","-c","x"]"#);
        assert_eq!(r("{{.RootFS.Layers}}"), "[sha256:1 sha256:2]");
        assert_eq!(r("id={{ .Id }} size={{.Size}}"), "id=sha256:ab size=42");
        assert_eq!(r("{{.Config.Labels}}"), "map[a:1 b:2]");
        assert_eq!(r(r#"{{index .Config.Labels "b"}}"#), "2");
        assert_eq!(r(r#"{{join .Config.Env ","}}"#), "A=1,B=2");
        assert_eq!(r("{{len .RootFS.Layers}}"), "2");
        assert_eq!(r("{{json .RootFS}}"), r#"{"Layers":["sha256:1","sha256:2"],"Type":"layers"}"#);
        assert!(r("{{.Nope}}").contains("no field Nope"));
        assert_eq!(r(r#"{{join .Config.Env "\n"}}"#), "A=1\nB=2");
        assert_eq!(render("{{.Config.Cmd}}", &json!({"Config": {"Cmd": null}})).unwrap_or_default(), "<no value>");
        assert!(r("{{range .Config.Env}}").contains("not understood"));
        assert!(r("{{.Id").contains("without its"));
        assert!(
            check("{{.Id").is_err()
                && check("{{range .X}}").is_err()
                && check("a {{json .X}} {{index .L \"k\"}}").is_ok()
        );
    }
}
