//! Syntax of the names and strings a spec carries: DNS labels and
//! subdomains, label keys and values, S3 bucket names, and the advertised
//! host template.

/// Replace `{placeholder}`s; unknown placeholders and stray braces are errors.
pub(super) fn expand_template(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("{template:?} has a '}}' without a matching '{{'"));
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{template:?} has a '{{' without a matching '}}'"))?;
        let key = &after[..close];
        let value = values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                format!(
                    "{template:?} uses an unknown placeholder {{{key}}}; known: {}",
                    values
                        .iter()
                        .map(|(k, _)| format!("{{{k}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(super) fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("it must have 3 to 63 characters");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("use only lowercase letters, digits, '.' and '-'");
    }
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(bucket.as_bytes().first()) || !alnum(bucket.as_bytes().last()) {
        return Err("it must start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Err("it must not contain '..'");
    }
    Ok(())
}

/// RFC 1123 label: lowercase alphanumerics and '-', at most 63 characters.
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub(super) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Label/annotation key: `[prefix/]name`, the prefix a DNS subdomain.
pub(super) fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Label value: empty, or at most 63 alphanumerics, '-', '_', '.', starting
/// and ending alphanumeric.
pub(super) fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_known_placeholders_only() {
        let v = [("pod", "p-0"), ("namespace", "ns")];
        assert_eq!(
            expand_template("{pod}.x.{namespace}", &v).unwrap(),
            "p-0.x.ns"
        );
        assert_eq!(expand_template("plain", &v).unwrap(), "plain");
        assert!(expand_template("{zone}.x", &v)
            .unwrap_err()
            .contains("unknown placeholder {zone}"));
        assert!(expand_template("{pod.x", &v).is_err());
        assert!(expand_template("pod}.x", &v).is_err());
    }

    #[test]
    fn names_and_labels_follow_kubernetes_syntax() {
        assert!(is_dns_label("events-1"));
        assert!(!is_dns_label("Events"));
        assert!(!is_dns_label("-a"));
        assert!(is_dns_subdomain("broker-0.kafka.example.com"));
        assert!(!is_dns_subdomain("broker_0.example.com"));
        assert!(is_label_key("karpenter.sh/capacity-type"));
        assert!(is_label_key("team"));
        assert!(!is_label_key("a/b/c"));
        assert!(!is_label_key("/x"));
        assert!(is_label_value(""));
        assert!(is_label_value("SPOT"));
        assert!(!is_label_value("-x"));
        assert!(check_bucket("floe-data").is_ok());
        assert!(check_bucket("Floe").is_err());
        assert!(check_bucket("ab").is_err());
        assert!(check_bucket("a..b").is_err());
    }
}
