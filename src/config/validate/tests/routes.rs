use super::{PROVIDER, UPSTREAM, route};
use crate::config::test_support::{ok, one_error};
use crate::config::{AuthMode, CredentialKind, Csrf, HostPattern, OnUnauthenticated};

#[test]
fn route_paths() {
    for (path, fragment) in [
        ("api", "start with"),
        ("/a/../b", "segments"),
        ("/a/./b", "segments"),
        ("/..", "segments"),
        ("/a//b", "//"),
        ("/a%2Fb", "%"),
        ("/a?x", "?"),
        ("/a#x", "#"),
    ] {
        one_error(
            &route(&format!("path = \"{path}\"")),
            "routes[0].path",
            fragment,
        );
    }
    assert_eq!(ok(&route("path = \"/api/\"")).routes[0].path, "/api");
    assert_eq!(ok(&route("path = \"/\"")).routes[0].path, "/");
    assert_eq!(ok(&route("path = \"/api/v1\"")).routes[0].name, "/api/v1");
}

#[test]
fn route_hosts_names_and_methods() {
    for (host, fragment) in [
        ("*", "\"*\" only"),
        ("a.*.com", "\"*\" only"),
        ("*.*.com", "\"*\" only"),
        ("app.example.com:8080", "port"),
        ("", "must not be empty"),
        ("a..b", "host name"),
    ] {
        one_error(
            &route(&format!("host = \"{host}\"")),
            "routes[0].host",
            fragment,
        );
    }
    let c = ok(&route("host = \"*.Example.COM\"\npath = \"/x\""));
    assert_eq!(
        c.routes[0].host,
        Some(HostPattern::Wildcard(".example.com".into()))
    );
    assert_eq!(c.routes[0].name, "*.example.com/x");
    let c = ok(&route("host = \"App.Example.com\""));
    assert_eq!(
        c.routes[0].host,
        Some(HostPattern::Exact("app.example.com".into()))
    );
    assert_eq!(c.routes[0].name, "app.example.com/");

    one_error(&route("name = \"\""), "routes[0].name", "must not be empty");
    one_error(
        &format!(
            "{}[[routes]]\nname = \"x\"\npath = \"/b\"\nupstream = \"app\"\n",
            route("name = \"x\"")
        ),
        "routes[1].name",
        "duplicate route name \"x\"",
    );
    // Same default name, different place: "a.com" + "/b" vs "a.com/b" can't clash, but
    // two routes can be named like another's default.
    one_error(
        &format!(
            "{}[[routes]]\npath = \"/api\"\nupstream = \"app\"\n",
            route("name = \"/api\"\npath = \"/other\"")
        ),
        "routes[1].name",
        "default name \"/api\"",
    );
    one_error(
        &format!(
            "{}[[routes]]\nname = \"b\"\npath = \"/api/\"\nupstream = \"app\"\n",
            route("path = \"/api\"")
        ),
        "routes[1].path",
        "same host and path as routes[0]",
    );
    ok(&format!(
        "{}[[routes]]\nhost = \"a.com\"\nupstream = \"app\"\n",
        route("")
    ));

    let c = ok(&route("methods = [\"get\", \"POST\", \"PROPFIND\"]"));
    let m: Vec<&str> = c.routes[0].methods.iter().map(|m| m.as_str()).collect();
    assert_eq!(m, vec!["GET", "POST", "PROPFIND"]);
    one_error(
        &route("methods = [\"GET\", \"get\"]"),
        "routes[0].methods[1]",
        "duplicate method",
    );
    one_error(
        &route("methods = [\"G ET\"]"),
        "routes[0].methods[0]",
        "not a valid HTTP method",
    );
    one_error(
        &route("methods = [\"\"]"),
        "routes[0].methods[0]",
        "not a valid HTTP method",
    );
}

#[test]
fn route_upstream_auth_and_accept() {
    one_error(
        &format!("{UPSTREAM}[[routes]]\npath = \"/\"\n"),
        "routes[0].upstream",
        "required",
    );
    one_error(
        &format!("{UPSTREAM}[[routes]]\nupstream = \"nope\"\n"),
        "routes[0].upstream",
        "no upstream named \"nope\"",
    );
    let two = "[[upstreams]]\nname = \"b\"\ntargets = [\"http://h:1\"]\n";
    let c = ok(&format!("{two}{}", route("")));
    assert_eq!(c.routes[0].upstream, Some(1));
    assert_eq!(c.upstreams[1].name, "app");

    one_error(
        &route("auth = \"maybe\""),
        "routes[0].auth",
        "\"required\" or \"optional\" or \"public\"",
    );
    assert_eq!(
        ok(&route("auth = \"optional\"")).routes[0].auth,
        AuthMode::Optional
    );

    // Default accept: the configured kinds, jwt first.
    assert!(ok(&route("")).routes[0].accept.is_empty());
    assert_eq!(
        ok(&format!("[sessions]\n{}", route(""))).routes[0].accept,
        vec![CredentialKind::Session]
    );
    assert_eq!(
        ok(&format!("{PROVIDER}{}", route(""))).routes[0].accept,
        vec![CredentialKind::Jwt]
    );
    let both = format!("[sessions]\n{PROVIDER}");
    assert_eq!(
        ok(&format!(
            "{both}{}",
            route("accept = [\"session\", \"jwt\"]")
        ))
        .routes[0]
            .accept,
        vec![CredentialKind::Session, CredentialKind::Jwt]
    );
    one_error(
        &format!("{PROVIDER}{}", route("accept = [\"session\"]")),
        "routes[0].accept[0]",
        "not configured",
    );
    one_error(
        &format!("[sessions]\n{}", route("accept = [\"jwt\"]")),
        "routes[0].accept[0]",
        "not configured",
    );
    one_error(
        &format!("{both}{}", route("accept = [\"basic\"]")),
        "routes[0].accept[0]",
        "\"jwt\" or \"session\"",
    );
    one_error(
        &format!("{both}{}", route("accept = [\"jwt\", \"jwt\"]")),
        "routes[0].accept[1]",
        "duplicate",
    );
    one_error(
        &format!("{both}{}", route("accept = []")),
        "routes[0].accept",
        "must not be empty",
    );
    let c = ok(&format!(
        "{both}{}",
        route("accept = []\nauth = \"public\"")
    ));
    assert!(c.routes[0].accept.is_empty());
}

#[test]
fn route_require_redirect_and_csrf() {
    let c = ok(&route(
        "require = { roles = [\"admin\", \"ops\"], token_use = \"access\" }",
    ));
    assert_eq!(c.routes[0].require["roles"], vec!["admin", "ops"]);
    assert_eq!(c.routes[0].require["token_use"], vec!["access"]);
    one_error(
        &route("require = { roles = [] }"),
        "routes[0].require.roles",
        "at least one value",
    );
    one_error(
        &route("require = { roles = [\"\"] }"),
        "routes[0].require.roles[0]",
        "must not be empty",
    );
    one_error(
        &route("require = { roles = 3 }"),
        "routes[0].require.roles",
        "invalid type",
    );
    one_error(
        &route("require = { roles = \"a\" }\nauth = \"public\""),
        "routes[0].require",
        "no effect",
    );

    one_error(
        &route("on_unauthenticated = \"login\""),
        "routes[0].on_unauthenticated",
        "\"login\" needs a [login] section",
    );
    one_error(
        &route("on_unauthenticated = \"sso\""),
        "routes[0].on_unauthenticated",
        "\"deny\" or \"redirect\" or \"login\"",
    );
    one_error(
        &route("on_unauthenticated = \"redirect\""),
        "routes[0].login_url",
        "needs login_url",
    );
    one_error(
        &route("on_unauthenticated = \"redirect\"\nlogin_url = \"\""),
        "routes[0].login_url",
        "needs login_url",
    );
    one_error(
        &route("on_unauthenticated = \"redirect\"\nlogin_url = \"/login?rd={url}\""),
        "routes[0].login_url",
        "absolute",
    );
    one_error(
        &route("on_unauthenticated = \"redirect\"\nlogin_url = \"ftp://login/\""),
        "routes[0].login_url",
        "absolute http",
    );
    let c = ok(&route(
        "on_unauthenticated = \"redirect\"\nlogin_url = \"https://login.example.com/?rd={url}\"",
    ));
    assert_eq!(
        c.routes[0].on_unauthenticated,
        OnUnauthenticated::Redirect("https://login.example.com/?rd={url}".into())
    );
    // login_url without redirect is allowed (and unused).
    assert_eq!(
        ok(&route("login_url = \"https://l/\"")).routes[0].on_unauthenticated,
        OnUnauthenticated::Deny
    );

    one_error(
        &route("csrf = \"strict\""),
        "routes[0].csrf",
        "\"off\" or \"origin\"",
    );
    assert_eq!(ok(&route("csrf = \"origin\"")).routes[0].csrf, Csrf::Origin);
}

#[test]
fn route_paths_without_spaces_or_control_characters() {
    for path in ["/a b", "/a\\\\b", "/a\\tb"] {
        one_error(
            &route(&format!("path = \"{path}\"")),
            "routes[0].path",
            "spaces, \"\\\" or control characters",
        );
    }
}

#[test]
fn route_hosts_may_be_ipv6_literals() {
    let c = ok(&route("host = \"[::1]\""));
    assert_eq!(c.routes[0].host, Some(HostPattern::Exact("[::1]".into())));
    one_error(
        &route("host = \"[zz]\""),
        "routes[0].host",
        "not a valid IPv6 address",
    );
}

#[test]
fn two_unnamed_routes_on_one_place_are_one_error_at_the_path() {
    one_error(
        &format!("{}[[routes]]\nupstream = \"app\"\n", route("")),
        "routes[1].path",
        "same host and path as routes[0]",
    );
}

#[test]
fn a_required_claim_needs_a_name() {
    one_error(
        &route("require = { \"\" = \"x\" }"),
        "routes[0].require.\"\"",
        "claim name must not be empty",
    );
}

#[test]
fn a_login_url_must_parse() {
    one_error(
        &route("on_unauthenticated = \"redirect\"\nlogin_url = \"ht tp://x\""),
        "routes[0].login_url",
        "is not a valid URL",
    );
}
