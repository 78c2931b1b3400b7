//! HTTP route matching as Spin does it.
//!
//! Routes are exact paths, paths with `:name` segments, or prefixes ending in `/...`.
//! An exact route beats a wildcard; among wildcards the longest prefix wins. Spin uses
//! the `routefinder` crate for this; so do we, with Spin's reading of its results.

use anyhow::{anyhow, Result};

#[derive(Debug, Clone)]
struct Handler {
    component: String,
    based_route: String,
    raw_route: String,
}

pub struct Router {
    inner: routefinder::Router<Handler>,
}

/// What the guest learns about the matched route, through Spin's headers.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub component: String,
    /// The route as written, with the application base (`spin-matched-route`).
    pub based_route: String,
    /// The route as written (`spin-raw-component-route`).
    pub raw_route: String,
    /// The route without a trailing `/...` (`spin-component-route`).
    pub component_route: String,
    /// The part of the path the trailing wildcard matched (`spin-path-info`).
    pub path_info: String,
    /// `:name` captures (`spin-path-match-<name>`).
    pub named: Vec<(String, String)>,
}

impl Router {
    pub fn build<'a>(
        base: &str,
        routes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut inner = routefinder::Router::new();
        let mut seen = std::collections::HashSet::new();
        for (component, raw_route) in routes {
            if !seen.insert(raw_route.to_string()) {
                return Err(anyhow!("duplicate route {raw_route:?}"));
            }
            let based_route = format!(
                "{}{}",
                strip_one_slash(base),
                strip_one_slash(&absolutize(raw_route))
            );
            let spec = match based_route.strip_suffix("/...") {
                Some(prefix) => format!("{prefix}/*"),
                None => based_route.clone(),
            };
            let spec = if spec.is_empty() {
                "/".to_string()
            } else {
                spec
            };
            inner
                .add(
                    spec.as_str(),
                    Handler {
                        component: component.to_string(),
                        based_route,
                        raw_route: raw_route.to_string(),
                    },
                )
                .map_err(|e| anyhow!("route {raw_route:?}: {e}"))?;
        }
        Ok(Self { inner })
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let m = self.inner.best_match(path)?;
        let handler = m.handler().clone();
        let captures = m.captures();
        let path_info = captures
            .wildcard()
            .map(|s| match (s.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{s}"),
                (false, true) => format!("/{s}/"),
            })
            .unwrap_or_default();
        let named = captures
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(RouteMatch {
            component_route: handler
                .raw_route
                .strip_suffix("/...")
                .unwrap_or(&handler.raw_route)
                .to_string(),
            component: handler.component,
            based_route: handler.based_route,
            raw_route: handler.raw_route,
            path_info,
            named,
        })
    }
}

fn absolutize(s: &str) -> String {
    if s.starts_with('/') {
        s.to_string()
    } else {
        format!("/{s}")
    }
}

fn strip_one_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::build(
            "/",
            [
                ("health", "/health"),
                ("all", "/..."),
                ("api", "/api/..."),
                ("deep", "/api/chat/..."),
                ("user", "/users/:id"),
            ],
        )
        .unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r = router();
        assert_eq!(r.route("/health").unwrap().component, "health");
        assert_eq!(r.route("/healthz").unwrap().component, "all");
        assert_eq!(r.route("/api/profile").unwrap().component, "api");
        assert_eq!(r.route("/api/chat/history").unwrap().component, "deep");
        assert_eq!(r.route("/").unwrap().component, "all");
    }

    #[test]
    fn path_info_and_routes_as_spin_reports_them() {
        let r = router();
        let m = r.route("/api/chat/history/").unwrap();
        assert_eq!(m.path_info, "/history/");
        assert_eq!(m.raw_route, "/api/chat/...");
        assert_eq!(m.component_route, "/api/chat");
        let m = r.route("/api").unwrap();
        assert_eq!(m.component, "api");
        assert_eq!(m.path_info, "");
        let m = r.route("/health").unwrap();
        assert_eq!(m.path_info, "");
        assert_eq!(m.component_route, "/health");
        let m = r.route("/users/42").unwrap();
        assert_eq!(m.named, vec![("id".to_string(), "42".to_string())]);
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::build("/", [("health", "/health")]).unwrap();
        assert!(r.route("/nope").is_none());
        assert!(Router::build("/", [("a", "/x"), ("b", "/x")]).is_err());
    }
}
